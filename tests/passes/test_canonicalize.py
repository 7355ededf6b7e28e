import numpy as np
import pytest

from sparsecc.ops.metadata import WEIGHT_NAME
from sparsecc.passes.canonicalize import CanonicalizePass
from sparsecc.passes.linear import find_linears
from tests.onnx_text import apply, linear_model, model_from_text, run

RNG = np.random.default_rng(0)
W = RNG.standard_normal((6, 8)).astype(np.float32)
B = RNG.standard_normal(6).astype(np.float32)
X = RNG.standard_normal((4, 8)).astype(np.float32)


@pytest.mark.parametrize(("bias", "trans_b"), [(None, True), (B, True), (B, False), (None, False)])
def test_gemm_becomes_matmul_add(bias, trans_b):
    model = linear_model(W, bias, gemm=True, trans_b=trans_b)
    want = run(model, {"X": X})[0]
    assert apply(CanonicalizePass(), model).modified
    assert [n.op_type for n in model.graph] == (["MatMul", "Add"] if bias is not None else ["MatMul"])
    (match,) = find_linears(model.graph)
    assert match.name == "W" and match.weight.metadata_props[WEIGHT_NAME] == "W"
    np.testing.assert_array_equal(match.w(), W)
    np.testing.assert_allclose(run(model, {"X": X})[0], want, rtol=1e-6, atol=1e-6)


def test_gemm_alpha_beta_are_folded():
    model = model_from_text(
        """<ir_version: 10, opset_import: ["" : 23]>
        g (float[4, 8] X) => (float[4, 6] Y) { Y = Gemm<transB=1, alpha=0.5, beta=2.0>(X, W, B) }""",
        {"W": W, "B": B},
    )
    want = run(model, {"X": X})[0]
    assert apply(CanonicalizePass(), model).modified
    np.testing.assert_allclose(run(model, {"X": X})[0], want, rtol=1e-6, atol=1e-6)


def test_constant_transpose_is_folded():
    model = model_from_text(
        """<ir_version: 10, opset_import: ["" : 23]>
        g (float[2, 4, 8] X) => (float[2, 4, 6] Y) { Wt = Transpose<perm=[1, 0]>(W)
         Y = MatMul(X, Wt) }""",
        {"W": W},
    )
    x = RNG.standard_normal((2, 4, 8)).astype(np.float32)
    want = run(model, {"X": x})[0]
    assert apply(CanonicalizePass(), model).modified
    assert [n.op_type for n in model.graph] == ["MatMul"]
    (match,) = find_linears(model.graph)
    assert match.name == "W" and match.shape == (6, 8)
    np.testing.assert_allclose(run(model, {"X": x})[0], want, rtol=1e-6, atol=1e-6)


def test_already_canonical_model_is_not_modified():
    model = linear_model(W, B)
    assert apply(CanonicalizePass(), model).modified  # first run tags the weight name
    assert not apply(CanonicalizePass(), model).modified


def test_gemm_with_input_weight_is_left_alone():
    model = model_from_text(
        """<ir_version: 10, opset_import: ["" : 23]>
        g (float[4, 8] X, float[6, 8] W) => (float[4, 6] Y) { Y = Gemm<transB=1>(X, W) }"""
    )
    assert not apply(CanonicalizePass(), model).modified
    assert [n.op_type for n in model.graph] == ["Gemm"]
