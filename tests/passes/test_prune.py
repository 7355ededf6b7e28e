import numpy as np
import pytest

from sparsecc.compiler.calibration import load_calibration
from sparsecc.errors import SpecError
from sparsecc.passes.canonicalize import CanonicalizePass
from sparsecc.passes.context import CompileContext
from sparsecc.passes.linear import find_linears
from sparsecc.passes.prune import PrunePass
from sparsecc.sparsity.detect import conforms_nm
from sparsecc.sparsity.methods import prune_weight
from sparsecc.sparsity.patterns import parse_pattern
from sparsecc.sparsity.spec import SparsitySpec
from tests.onnx_text import apply, linear_model, model_from_text

W = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)


def pruned(spec: str, w=W):
    model = linear_model(w)
    apply(CanonicalizePass(), model)
    context = CompileContext(spec=SparsitySpec.parse(spec))
    result = apply(PrunePass(context), model)
    return result.modified, find_linears(model.graph)[0].w(), context


def test_unstructured_hits_the_exact_sparsity():
    modified, w, context = pruned("unstructured@0.9")
    assert modified
    assert np.count_nonzero(w) == W.size - round(0.9 * W.size)
    assert context.weights["W"].pattern == "unstructured@0.9"


def test_block_prunes_whole_blocks():
    modified, w, _ = pruned("W=block(1,16)@0.75")
    assert modified
    present = np.any(w.reshape(32, 1, 4, 16) != 0, axis=(1, 3))
    assert present.sum() == 32 * 4 // 4


def test_two_four_conforms():
    modified, w, _ = pruned("*=2:4")
    assert modified and conforms_nm(w, 2, 4) and np.count_nonzero(w) == W.size // 2


def test_not_modified_when_already_conforming_or_not_selected():
    w24 = pruned("2:4")[1]
    assert pruned("2:4", w24)[0] is False
    assert pruned("other*=2:4")[0] is False
    assert pruned("existing")[0] is False
    assert pruned("dense")[0] is False


def test_block_that_does_not_divide_is_a_spec_error():
    with pytest.raises(SpecError, match="does not divide"):
        pruned("block(3,16)@0.5")


# -- methods that need data ---------------------------------------------------------------------------
X = np.random.default_rng(1).standard_normal((3, 8, 64)).astype(np.float32)


def calibrated(spec: str, w=W, batches=X):
    model = linear_model(w, batch="N")
    apply(CanonicalizePass(), model)
    calibration = load_calibration([(b,) for b in batches], ["X"])
    context = CompileContext(spec=SparsitySpec.parse(spec), calibration=calibration)
    result = apply(PrunePass(context), model)
    return result.modified, find_linears(model.graph)[0].w(), context


def test_methods_without_calibration_are_one_clear_error():
    with pytest.raises(SpecError) as info:
        pruned("W=2:4/wanda")
    message = str(info.value)
    assert "spec rule 1 ('W=2:4/wanda') uses method wanda, which needs calibration data" in message
    assert "--calibration FILE.npz" in message and "\n" not in message


def test_calibrated_prune_reports_method_and_error():
    rows = X.reshape(-1, 64).astype(np.float64)
    for spec, method in (
        ("2:4/sparsegpt", "sparsegpt"),
        ("unstructured@0.5/wanda", "wanda"),
        ("2:4", "magnitude"),
    ):
        modified, w, context = calibrated(spec)
        row = context.weights["W"]
        assert modified and row.method == method and row.pattern == spec
        want = np.linalg.norm(rows @ W.T - rows @ w.T) / np.linalg.norm(rows @ W.T)
        assert row.error == pytest.approx(want, rel=1e-4)
    np.testing.assert_array_equal(
        calibrated("2:4/wanda")[1], prune_weight(parse_pattern("2:4/wanda"), W, rows.T @ rows)
    )


def test_calibrated_modified_is_accurate_both_ways():
    w24 = pruned("2:4")[1]
    modified, _, context = calibrated("2:4", w24)  # magnitude: already conforms
    assert modified is False and context.weights["W"].error == 0.0
    assert calibrated("2:4/wanda", w24)[0] is False  # the zeros score lowest: same mask
    assert calibrated("2:4/sparsegpt", w24)[0] is False  # the dropped entries are zero: nothing to move
    assert calibrated("2:4/sparsegpt")[0] is True
    assert calibrated("other*=2:4/sparsegpt")[0] is False
    assert calibrated("existing")[0] is False


GROUPED = """<ir_version: 10, opset_import: ["" : 23]>
g (float[1, 4, 6, 6] X) => (float[1, 8, 6, 6] Y) { Y = Conv<pads=[1, 1, 1, 1], group=2>(X, W) }"""


def test_data_methods_refuse_grouped_convs():
    model = model_from_text(GROUPED, {"W": np.ones((8, 2, 3, 3), np.float32)})
    calibration = load_calibration([(np.ones((1, 4, 6, 6), np.float32),)], ["X"])
    context = CompileContext(spec=SparsitySpec.parse("*=unstructured@0.5/wanda"), calibration=calibration)
    with pytest.raises(SpecError, match="does not handle grouped convolutions .* use magnitude"):
        PrunePass(context)(model)
    context = CompileContext(spec=SparsitySpec.parse("*=unstructured@0.5"), calibration=calibration)
    assert apply(PrunePass(context), model).modified  # magnitude prunes it, without an error figure
    assert context.weights["W"].error is None and context.weights["W"].method == "magnitude"
