"""fuse-attention: each form the exporters write becomes one Attention, with the same outputs.

Small graphs in ONNX text, one per form, compared with onnxruntime before and after (the fused
graph runs onnxruntime's own Attention kernel); the exporters' real graphs are covered in
tests/compiler/test_real_models.py.
"""

import numpy as np
import pytest

from sparsecc.passes.fuse_attention import DecomposedAttention, FuseAttentionPass
from tests.onnx_text import apply, model_from_text, run

RNG = np.random.default_rng(3)
B, H, S, D = 2, 3, 8, 4
Q = RNG.standard_normal((B, H, S, D)).astype(np.float32)
K = RNG.standard_normal((B, H, S, D)).astype(np.float32)
V = RNG.standard_normal((B, H, S, D)).astype(np.float32)
MASK = np.where(RNG.random((B, 1, 1, S)) < 0.3, -3.4e38, 0.0).astype(np.float32)
KEEP = RNG.random((B, 1, S, S)) > 0.3
HEADER = '<ir_version: 10, opset_import: ["" : 23]>'
SIG = f"float[{B},{H},{S},{D}] Q, float[{B},{H},{S},{D}] K, float[{B},{H},{S},{D}] V"
OUT = f"float[{B},{H},{S},{D}] Y"


def graph(body: str, extra_inputs: str = "", key_shape: str | None = None) -> str:
    sig = SIG if key_shape is None else SIG.replace(f"float[{B},{H},{S},{D}] K", f"float[{key_shape}] K")
    return f"{HEADER}\ng ({sig}{extra_inputs}) => ({OUT}) {{\n{body}\n}}"


FORMS = {
    # dynamo: Q and K^T each scaled by sqrt(scale), additive mask, NaN guard
    "dynamo-sdpa": (
        graph(
            """
            c = Constant<value = float {0.70710677}>()
            kt = Transpose<perm = [0, 1, 3, 2]>(K)
            qs = Mul(Q, c)
            ks = Mul(kt, c)
            s = MatMul(qs, ks)
            m = Add(s, M)
            p = Softmax<axis = -1>(m)
            nan = IsNaN(p)
            z = Constant<value = float {0.0}>()
            g = Where(nan, z, p)
            Y = MatMul(g, V)""",
            f", float[{B},1,1,{S}] M",
        ),
        {"M": MASK},
    ),
    # TorchScript: K in [B, S, H, D] transposed with (0, 2, 3, 1); the guard's 0 is a 1-element tensor
    "torchscript-bshd": (
        graph(
            """
            c = Constant<value = float {0.70710677}>()
            kt = Transpose<perm = [0, 2, 3, 1]>(K)
            qs = Mul(Q, c)
            ks = Mul(kt, c)
            s = MatMul(qs, ks)
            m = Add(s, M)
            p = Softmax<axis = -1>(m)
            nan = IsNaN(p)
            z = Constant<value = float[1] {0.0}>()
            g = Where(nan, z, p)
            Y = MatMul(g, V)""",
            f", float[{B},1,1,{S}] M",
            key_shape=f"{B},{S},{H},{D}",
        ),
        {"M": MASK},
    ),
    # eager code: scores divided by sqrt(D), no mask
    "eager-div": (
        graph(
            """
            c = Constant<value = float {2.0}>()
            kt = Transpose<perm = [0, 1, 3, 2]>(K)
            s = MatMul(Q, kt)
            d = Div(s, c)
            p = Softmax<axis = 3>(d)
            Y = MatMul(p, V)"""
        ),
        {},
    ),
    # dynamo at some opsets: K^T through a 3-D round trip; a boolean keep-mask filled with -inf
    "reshape-transpose-where": (
        graph(
            f"""
            s3 = Constant<value = int64[3] {{{B * H}, {S}, {D}}}>()
            s4 = Constant<value = int64[4] {{{B}, {H}, {D}, {S}}}>()
            k3 = Reshape(K, s3)
            k3t = Transpose<perm = [0, 2, 1]>(k3)
            kt = Reshape(k3t, s4)
            s = MatMul(Q, kt)
            f = Constant<value = float {{-inf}}>()
            m = Where(KEEP, s, f)
            p = Softmax<axis = -1>(m)
            Y = MatMul(p, V)""",
            f", bool[{B},1,{S},{S}] KEEP",
        ),
        {"KEEP": KEEP},
    ),
    # masked_fill: a boolean drop-mask, scaled query
    "masked-fill": (
        graph(
            """
            c = Constant<value = float {0.25}>()
            qs = Mul(Q, c)
            kt = Transpose<perm = [0, 1, 3, 2]>(K)
            s = MatMul(qs, kt)
            f = Constant<value = float {-3.4e38}>()
            m = Where(DROP, f, s)
            p = Softmax<axis = -1>(m)
            Y = MatMul(p, V)""",
            f", bool[{B},1,{S},{S}] DROP",
        ),
        {"DROP": ~KEEP},
    ),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_each_form_becomes_one_attention_with_the_same_outputs(form):
    text, extra = FORMS[form]
    model = model_from_text(text)
    feeds = {
        "Q": Q,
        "K": K if form != "torchscript-bshd" else np.ascontiguousarray(K.transpose(0, 2, 1, 3)),
        "V": V,
        **extra,
    }
    want = run(model, feeds)[0]
    assert apply(FuseAttentionPass(), model).modified
    ops = [n.op_type for n in model.graph]
    assert ops.count("Attention") == 1 and "Softmax" not in ops and "IsNaN" not in ops
    np.testing.assert_allclose(run(model, feeds)[0], want, rtol=1e-5, atol=1e-5)


def test_a_softmax_over_another_axis_is_not_attention():
    model = model_from_text(
        graph(
            """
            kt = Transpose<perm = [0, 1, 3, 2]>(K)
            s = MatMul(Q, kt)
            p = Softmax<axis = 2>(s)
            Y = MatMul(p, V)"""
        )
    )
    apply(FuseAttentionPass(), model)  # (it may add inferred shapes)
    assert "Attention" not in [n.op_type for n in model.graph]


def test_a_scale_computed_at_run_time_is_refused_with_a_reason():
    model = model_from_text(
        graph(
            """
            kt = Transpose<perm = [0, 1, 3, 2]>(K)
            s = MatMul(Q, kt)
            d = Div(s, T)
            p = Softmax<axis = -1>(d)
            Y = MatMul(p, V)""",
            ", float T",
        )
    )
    FuseAttentionPass()(model)
    assert "Attention" not in [n.op_type for n in model.graph]
    from onnxscript.rewriter._basics import MatchingTracer

    tracer = MatchingTracer()
    DecomposedAttention.rule().apply_to_model(model, tracer=tracer)
    reasons = [str(r.match_result.reason) for results in tracer.best_matches_map.values() for r in results]
    assert any("s_factor is not a constant nonzero scalar" in reason for reason in reasons), reasons


def test_before_opset_23_nothing_changes():
    text, _ = FORMS["eager-div"]
    model = model_from_text(text.replace('"" : 23', '"" : 21'))
    assert not FuseAttentionPass()(model).modified
