"""`costs: measured` in the attention section: the compile's search-heads prices modes by their
kernels' measured times on the TVM CPU target."""

import onnx_ir as ir
import pytest

pytest.importorskip("tvm")

from sparsecc.backends.tvm.target import resolve_target
from sparsecc.compiler import api
from sparsecc.compiler.pipeline import PASSES
from sparsecc.errors import PipelineError
from sparsecc.passes.attention_heads import attention_layers
from sparsecc.passes.context import CompileContext
from sparsecc.passes.search_heads import SearchHeadsPass
from sparsecc.sparsity.attention_patterns import HeadPattern, density
from sparsecc.sparsity.head_table import METADATA_KEY, HeadTable
from sparsecc.sparsity.spec import SparsitySpec
from tests.passes.video_dit_small import CONFIG, LAYOUT, batches, exported


@pytest.fixture(scope="module")
def model():
    return exported()


def copy(model):
    return ir.serde.deserialize_model(ir.serde.serialize_model(model))


SECTION = {"layout": CONFIG.layout, "modes": ["diag"], "costs": "measured", "eps": 100.0}  # no head kept full


def test_measured_costs_reach_the_search(model):
    spec = SparsitySpec.parse({"attention": SECTION})
    context = CompileContext(spec=spec, target=resolve_target("cpu"), calibration=batches(count=1))
    search = PASSES["search-heads"](context)
    layer = attention_layers(copy(model), LAYOUT)[0]
    costs = search.costs(layer)
    assert (
        costs["full"] == 1.0 and costs["diag"] > 0.0
    )  # (its size: tests/backends/tvm/test_pattern_costs.py)
    # the compile path prices diag by that measured cost: against a FLOP-priced search, each
    # diag head's loss of the first layer (which sees no earlier choice) moves by lambda x the gap
    result = api.sparsify_ir(
        copy(model), spec, pipeline="search-heads", calibration=batches(count=1), backend="tvm"
    )
    measured = HeadTable.from_yaml(result.model.metadata_props[METADATA_KEY]).layers[0]
    flops = SearchHeadsPass(spec.attention, batches(count=1))
    flops(copy(model))
    gap = spec.attention.lam * (costs["diag"] - density(HeadPattern("diag"), LAYOUT))
    pairs = [
        (a, b)
        for p, q, a, b in zip(
            measured.patterns, flops.table.layers[0].patterns, measured.loss, flops.table.layers[0].loss
        )
        if p.mode == q.mode == "diag"
    ]
    assert len(pairs) >= 4  # the planted diag heads at least
    for a, b in pairs:
        assert a - b == pytest.approx(gap, abs=1e-3)


def test_measured_costs_on_a_backend_that_times_nothing_is_a_one_line_error(model):
    spec = SparsitySpec.parse({"attention": SECTION})
    with pytest.raises(PipelineError, match="costs: measured needs the tvm backend") as error:
        api.sparsify_ir(
            copy(model), spec, pipeline="search-heads", calibration=batches(count=1), backend="onnxruntime"
        )
    assert "\n" not in str(error.value)
