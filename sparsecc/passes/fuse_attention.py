"""fuse-attention: attention spelled out in small ops -> one ONNX (opset 23) `Attention`.

Exporters write scaled dot-product attention as a subgraph: torch's dynamo exporter (its
SDPA decomposition), the TorchScript exporter (its SDPA symbolic) and models' own "eager"
attention code. One rewrite rule covers the forms they emit:

  MatMul(Q', K^T') -> scale? -> mask? -> Softmax(last axis) -> NaN guard? -> MatMul(., V)

  K^T       Transpose(K, [0,1,3,2]) of a [B,H,S,D] key, or Transpose(K, [0,2,3,1]) of [B,S,H,D]
  scaling   Mul or Div by a constant scalar on Q, on K^T or on the scores (any combination)
  mask      Add(scores, mask) (float), Where(keep, scores, -big) or Where(drop, -big, scores)
  NaN guard Where(IsNaN(p), 0, p), which the kernels' convention (a row masked everywhere
            gives 0) makes redundant

Backends then see one op: the TVM backend runs it as a fused flash-style kernel,
onnxruntime with its own Attention kernel. `check` says why a near miss was not fused.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRuleClassBase, RewriteRuleSet, pattern

MASK_FILL_LIMIT = -1e30  # a Where-mask must fill with -inf or a float32 minimum like -3.4e38


def _scalar(value: ir.Value | None) -> float | None:
    """The number a constant one-element tensor holds, or None."""
    if value is None or value.const_value is None:
        return None
    array = value.const_value.numpy()
    return float(array.reshape(-1)[0]) if array.size == 1 else None


def _scaled(op, x, factor, tag: str):
    return pattern.OrValue(
        [op.Mul(x, factor), op.Div(x, factor), x], tag_var=tag, tag_values=["mul", "div", None]
    )


def _rank(value: ir.Value) -> int | None:
    return None if value.shape is None else value.shape.rank()


class DecomposedAttention(RewriteRuleClassBase):
    """softmax(scale * Q K^T + mask) V in the exporters' forms -> Attention(Q, K, V, mask, scale)."""

    def pattern(self, op, query, key, value, mask, fill, nan_fill, q_factor, k_factor, s_factor):
        key_t = pattern.OrValue(
            [
                op.Transpose(key, perm=[0, 1, 3, 2]),
                op.Reshape(
                    op.Transpose(op.Reshape(key, pattern.ANY_VALUE, _outputs=["key_3d"]), perm=[0, 2, 1]),
                    pattern.ANY_VALUE,
                ),
                op.Transpose(key, perm=[0, 2, 3, 1]),
            ],
            tag_var="key_layout",
            tag_values=["BHSD", "BHSD", "BSHD"],
        )
        scores = op.MatMul(
            _scaled(op, query, q_factor, "q_scaling"), _scaled(op, key_t, k_factor, "k_scaling")
        )
        scores = _scaled(op, scores, s_factor, "s_scaling")
        masked = pattern.OrValue(
            [op.Add(scores, mask), op.Where(mask, scores, fill), op.Where(mask, fill, scores), scores],
            tag_var="mask_kind",
            tag_values=["add", "keep", "drop", None],
        )
        probs = op.Softmax(masked, _outputs=["probs"])
        probs = pattern.OrValue(
            [op.Where(op.IsNaN(probs), nan_fill, probs), probs], tag_var="nan_guard", tag_values=[True, False]
        )
        return op.MatMul(probs, value)

    def check(
        self,
        context,
        query,
        key,
        value,
        mask,
        fill,
        probs,
        key_layout,
        mask_kind,
        nan_guard,
        nan_fill=None,
        key_3d=None,
        **factors,
    ) -> MatchResult:
        check = MatchResult()
        if any(_rank(v) != 4 for v in (query, key, value)):
            return check.fail("query, key and value are not all 4-D with known shapes", query)
        if nan_guard and _scalar(nan_fill) != 0.0:
            return check.fail("the NaN guard after Softmax does not fill with 0", nan_fill)
        if key_3d is not None:  # K^T as Reshape -> Transpose(0, 2, 1) -> Reshape: heads folded into the batch
            s, d = key.shape[2], key.shape[3]
            if _rank(key_3d) != 3 or list(key_3d.shape)[1:] != [s, d]:
                return check.fail("the key's 3-D round trip does not keep [.., S, D]", key_3d)
            t_shape = key_3d.uses()[0][0].outputs[0].uses()[0][0].outputs[0].shape
            if t_shape is None or list(t_shape)[2:] != [d, s]:
                return check.fail("the transposed key is not [B, H, D, S]", key_3d)
        q_heads, k_heads = query.shape[1], key.shape[1 if key_layout == "BHSD" else 2]
        v_heads = value.shape[1]
        if all(isinstance(h, int) for h in (q_heads, k_heads, v_heads)) and (
            v_heads != k_heads or q_heads % k_heads
        ):
            return check.fail("key and value heads differ, or do not divide the query heads", value)
        axis = probs.producer().attributes.get_int("axis", -1)
        if axis not in (-1, 3):
            return check.fail(f"Softmax over axis {axis}, not the keys", probs)
        for tag, name in (("q_scaling", "q_factor"), ("k_scaling", "k_factor"), ("s_scaling", "s_factor")):
            if factors.get(tag) is not None and not _scalar(factors.get(name)):
                return check.fail(f"{name} is not a constant nonzero scalar", factors.get(name))
        if mask_kind == "add" and (mask.dtype not in (ir.DataType.FLOAT, None) or (_rank(mask) or 0) > 4):
            return check.fail("the additive mask is not float32 of rank <= 4", mask)
        if mask_kind in ("keep", "drop"):
            if mask.dtype != ir.DataType.BOOL:
                return check.fail("the Where mask is not boolean", mask)
            fill_value = _scalar(fill)
            if fill_value is None or fill_value > MASK_FILL_LIMIT:
                return check.fail("the Where mask does not fill with -inf (or a float32 minimum)", fill)
        return check

    def rewrite(self, op, query, key, value, mask, fill, key_layout, mask_kind, **factors):
        scale = 1.0
        for tag, name in (("q_scaling", "q_factor"), ("k_scaling", "k_factor"), ("s_scaling", "s_factor")):
            factor = _scalar(factors.get(name)) if factors.get(tag) else None
            if factor is not None:
                scale *= factor if factors[tag] == "mul" else 1.0 / factor
        if key_layout == "BSHD":
            key = op.Transpose(key, perm=[0, 2, 1, 3])
        inputs = [query, key, value]
        if mask_kind == "add":
            inputs.append(_full_rows(op, mask, query, value))
        elif mask_kind in ("keep", "drop"):
            zero = op.Constant(value=ir.tensor(np.array(0.0, np.float32)))
            big = op.Constant(value=ir.tensor(np.array(_scalar(fill), np.float32)))
            additive = op.Where(mask, zero, big) if mask_kind == "keep" else op.Where(mask, big, zero)
            inputs.append(_full_rows(op, additive, query, value, mask))
        return op.Attention(*inputs, scale=float(np.float32(scale)))


def _full_rows(op, mask, query, value, shaped_like=None):
    """The mask broadcast to [.., Sq, Skv] where it is narrower: Attention (and onnxruntime's
    kernel for it) takes a mask broadcast over batch and heads only."""
    shape = (shaped_like or mask).shape
    s_q, s_kv = query.shape[2], value.shape[2]
    if shape is not None and shape.rank() >= 2 and list(shape)[-2:] == [s_q, s_kv]:
        return mask
    if not (isinstance(s_q, int) and isinstance(s_kv, int)):
        return mask
    return op.Expand(mask, op.Constant(value=ir.tensor(np.array([s_q, s_kv], np.int64))))


def rules() -> RewriteRuleSet:
    """A new rule set per run (see canonicalize.rules: matchers keep the last node they saw)."""
    return RewriteRuleSet([DecomposedAttention.rule()])


class FuseAttentionPass(ir.passes.InPlacePass):
    """Rewrite decomposed scaled dot-product attention into opset-23 `Attention` nodes."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        if model.opset_imports.get("", 0) < 23:
            return ir.passes.PassResult(model, False)
        softmax_inputs = [n.inputs[0] for n in model.graph.all_nodes() if n.op_type == "Softmax"]
        inferred = False
        if any(v is None or v.shape is None for v in softmax_inputs):  # the checks read shapes
            inferred = ir.passes.common.ShapeInferencePass()(model).modified
        count = rules().apply_to_model(model)
        if count:
            ir.passes.common.RemoveUnusedNodesPass()(model)
        return ir.passes.PassResult(model, count > 0 or inferred)
