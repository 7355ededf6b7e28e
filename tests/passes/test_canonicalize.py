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


@pytest.mark.parametrize("bias", [True, False])
def test_patch_convolution_becomes_a_linear_over_patches(bias):
    """A ViT's patch embedding (stride = kernel) is a linear layer: same outputs, one MatMul."""
    w = RNG.standard_normal((5, 3, 4, 4)).astype(np.float32)
    b = RNG.standard_normal(5).astype(np.float32)
    conv = (
        "Y = Conv<kernel_shape=[4, 4], strides=[4, 4]>(X, W, B)"
        if bias
        else ("Y = Conv<kernel_shape=[4, 4], strides=[4, 4]>(X, W)")
    )
    model = model_from_text(
        f"""<ir_version: 10, opset_import: ["" : 23]>
        g (float[2, 3, 8, 12] X) => (float[2, 5, 2, 3] Y) {{ {conv} }}""",
        {"W": w, "B": b} if bias else {"W": w},
    )
    x = RNG.standard_normal((2, 3, 8, 12)).astype(np.float32)
    want = run(model, {"X": x})[0]
    assert apply(CanonicalizePass(), model).modified
    assert "Conv" not in [n.op_type for n in model.graph]
    (match,) = find_linears(model.graph)
    assert match.name == "W" and match.shape == (5, 48) and (match.bias is not None) == bias
    np.testing.assert_allclose(run(model, {"X": x})[0], want, rtol=1e-5, atol=1e-5)


def test_overlapping_convolution_stays_a_conv():
    w = RNG.standard_normal((5, 3, 3, 3)).astype(np.float32)
    model = model_from_text(
        """<ir_version: 10, opset_import: ["" : 23]>
        g (float[1, 3, 8, 8] X) => (float[1, 5, 6, 6] Y) { Y = Conv<kernel_shape=[3, 3]>(X, W) }""",
        {"W": w},
    )
    apply(CanonicalizePass(), model)
    assert [n.op_type for n in model.graph] == ["Conv"]


def test_gemms_sharing_a_bias_through_identity_are_all_linears():
    """The TorchScript exporter stores equal initializers once and hands out copies by Identity."""
    w2 = RNG.standard_normal((6, 6)).astype(np.float32)
    model = model_from_text(
        """<ir_version: 10, opset_import: ["" : 23]>
        g (float[4, 8] X) => (float[4, 6] Y) {
          B1 = Identity(B)
          B2 = Identity(B)
          H = Gemm<transB=1>(X, W, B1)
          Y = Gemm<transB=1>(H, W2, B2) }""",
        {"W": W, "W2": w2, "B": B},
    )
    want = run(model, {"X": X})[0]
    assert apply(CanonicalizePass(), model).modified
    assert sorted(m.name for m in find_linears(model.graph)) == ["W", "W2"]
    assert all(m.bias is not None for m in find_linears(model.graph))
    np.testing.assert_allclose(run(model, {"X": X})[0], want, rtol=1e-5, atol=1e-5)
