"""fuse-heads: PatternAttention groups, exact against the masked-dense model in onnxruntime."""

import numpy as np
import onnx_ir as ir
import pytest

from sparsecc import ops
from sparsecc.backends.ort import session
from sparsecc.compiler import api
from sparsecc.compiler.pipeline import pipeline_for
from sparsecc.errors import SpecError
from sparsecc.models.video_dit import calibration_batch
from sparsecc.passes.attention_heads import apply_masks, attention_layers
from sparsecc.passes.fuse_heads import FuseHeadsPass
from sparsecc.sparsity.attention_patterns import HeadPattern
from sparsecc.sparsity.head_table import HeadTable, LayerHeads
from sparsecc.sparsity.spec import SparsitySpec
from tests.passes.video_dit_small import CONFIG, LAYOUT, batches, exported, planted


@pytest.fixture(scope="module")
def model():
    return exported()


def copy(model):
    return ir.serde.deserialize_model(ir.serde.serialize_model(model))


def planted_table() -> HeadTable:
    return HeadTable(LAYOUT, tuple(LayerHeads(tuple(layer)) for layer in planted()))


def run(model, x):
    return session.run(ir.serde.serialize_model(model), {"x": x})[0]


def test_fused_model_equals_the_masked_dense_model(model):
    table = planted_table()
    masked = copy(model)
    for layer, heads in zip(attention_layers(masked, LAYOUT), table.layers):
        apply_masks(masked, layer.node, list(heads.patterns), LAYOUT)
    fused = copy(model)
    assert FuseHeadsPass(table)(fused).modified
    ops.verify_model(fused)
    kinds = [n.op_type for n in fused.graph]
    assert "Attention" not in kinds
    groups = [len({p for p in layer.patterns if p.mode != "skip"}) for layer in table.layers]
    assert kinds.count("PatternAttention") == sum(groups)  # one per group of equal patterns
    x = calibration_batch(CONFIG, 1, seed=11)
    np.testing.assert_allclose(run(fused, x), run(masked, x), rtol=1e-4, atol=1e-4)


def test_all_full_table_and_no_table_change_nothing(model):
    full = HeadTable(LAYOUT, (LayerHeads((HeadPattern("full"),) * CONFIG.heads),) * CONFIG.depth)
    assert not FuseHeadsPass(full)(copy(model)).modified
    assert not FuseHeadsPass()(copy(model)).modified


def test_table_of_the_wrong_size_is_a_spec_error(model):
    table = planted_table()
    short = HeadTable(table.layout, table.layers[:1])
    with pytest.raises(SpecError, match="has 1 layers, the model 2"):
        FuseHeadsPass(short)(copy(model))


def test_spec_pipeline_searches_and_fuses(model):
    spec = SparsitySpec.parse({"attention": {"layout": CONFIG.layout, "heads": "search"}})
    assert pipeline_for(spec).startswith("canonicalize,fuse-attention,search-heads,fuse-heads,")
    result = api.sparsify_ir(copy(model), spec, calibration=batches(count=2), backend="onnxruntime")
    kinds = [n.op_type for n in result.model.graph]
    assert "PatternAttention" in kinds and "Attention" not in kinds
    x = calibration_batch(CONFIG, 1, seed=12)
    dense = run(model, x)
    np.testing.assert_allclose(run(result.model, x), dense, atol=0.05 * np.abs(dense).max())
