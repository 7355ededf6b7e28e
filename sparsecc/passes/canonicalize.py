"""canonicalize: bring every linear layer with a constant weight into one form.

The form is `MatMul(X, Wt) [+ Add(b)]` (see `linear.py`). Rules, in order:
  Gemm(A, B, C)                -> MatMul(A, B') + Add(C)   # B' = B^T if transB, scaled by alpha
  Gemm(A, B)                   -> MatMul(A, B')
  MatMul(X, Transpose(W))      -> MatMul(X, W^T)           # fold the constant transpose
Constant nodes are lifted to initializers first, so weights are found either way, and
every linear weight is tagged with its names (user-facing and initializer) for the spec's selectors.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass
from onnxscript.rewriter import MatchResult, RewriteRuleClassBase, RewriteRuleSet

from sparsecc.ops.metadata import INITIALIZER_NAME, WEIGHT_NAME
from sparsecc.passes.linear import constant_of, copy_names, find_linears


def _gemm_weight(node: ir.Node, b: ir.Value, check: MatchResult) -> np.ndarray | None:
    """B as [in, out] with alpha folded in, or None (with the reason on `check`)."""
    tensor = constant_of(b)
    if tensor is None or tensor.dtype != ir.DataType.FLOAT or len(tensor.shape) != 2:
        check.fail("Gemm's B is not a constant float32 matrix", b)
        return None
    if node.attributes.get_int("transA", 0):
        check.fail("Gemm with transA is not a linear layer over rows of A", node)
        return None
    w = tensor.numpy()
    if node.attributes.get_int("transB", 0):
        w = w.T
    return np.ascontiguousarray(w * np.float32(node.attributes.get_float("alpha", 1.0)), dtype=np.float32)


def _new_weight(op, source: ir.Value, array: np.ndarray, suffix: str) -> ir.Value:
    value = op.initializer(ir.tensor(array, name=f"{source.name}{suffix}"))
    copy_names(source, value)
    return value


class GemmBiasToMatMulAdd(RewriteRuleClassBase):
    """Gemm(A, B, C) with constant B and 1-D C -> MatMul(A, B') + Add(C')."""

    def pattern(self, op, a, b, c):
        return op.Gemm(a, b, c, _outputs=["out"])

    def check(self, context, a, b, c, out, **_) -> MatchResult:
        check = MatchResult()
        if _gemm_weight(out.producer(), b, check) is None:
            return check
        bias = constant_of(c)
        if bias is None or len(bias.shape) != 1:
            return check.fail("Gemm's C is not a constant 1-D bias", c)
        return check

    def rewrite(self, op, a, b, c, out, **_):
        node = out.producer()
        w = _gemm_weight(node, b, MatchResult())
        bias = c.const_value.numpy() * np.float32(node.attributes.get_float("beta", 1.0))
        bias_value = _new_weight(op, c, np.ascontiguousarray(bias, dtype=np.float32), ".canon")
        return op.Add(op.MatMul(a, _new_weight(op, b, w, ".canon")), bias_value)


class GemmToMatMul(RewriteRuleClassBase):
    """Gemm(A, B) with constant B -> MatMul(A, B')."""

    def pattern(self, op, a, b):
        return op.Gemm(a, b, _outputs=["out"])

    def check(self, context, a, b, out, **_) -> MatchResult:
        check = MatchResult()
        _gemm_weight(out.producer(), b, check)
        return check

    def rewrite(self, op, a, b, out, **_):
        return op.MatMul(a, _new_weight(op, b, _gemm_weight(out.producer(), b, MatchResult()), ".canon"))


class FoldWeightTranspose(RewriteRuleClassBase):
    """MatMul(X, Transpose(W)) with constant 2-D W -> MatMul(X, W^T)."""

    def pattern(self, op, x, w):
        return op.MatMul(x, op.Transpose(w, _outputs=["wt"]))

    def check(self, context, x, w, wt, **_) -> MatchResult:
        check = MatchResult()
        tensor = constant_of(w)
        if tensor is None or len(tensor.shape) != 2 or tensor.dtype != ir.DataType.FLOAT:
            return check.fail("transposed operand is not a constant float32 matrix", w)
        perm = wt.producer().attributes.get_ints("perm", [1, 0])
        if list(perm) != [1, 0]:
            return check.fail(f"transpose perm {list(perm)} is not [1, 0]", wt)
        return check

    def rewrite(self, op, x, w, **_):
        return op.MatMul(x, _new_weight(op, w, np.ascontiguousarray(w.const_value.numpy().T), ".T"))


RULES = RewriteRuleSet([GemmBiasToMatMulAdd.rule(), GemmToMatMul.rule(), FoldWeightTranspose.rule()])


class CanonicalizePass(ir.passes.InPlacePass):
    """Rewrite MatMul/Gemm linears into the canonical `MatMul(X, Wt) [+ Add(b)]` form."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = LiftConstantsToInitializersPass(size_limit=2)(model).modified
        modified |= RULES.apply_to_model(model) > 0
        for match in find_linears(model.graph):
            for key in (WEIGHT_NAME, INITIALIZER_NAME):
                if key not in match.weight.metadata_props:
                    match.weight.metadata_props[key] = match.weight.name
                    modified = True
        if modified:
            ir.passes.common.RemoveUnusedNodesPass()(model)
        return ir.passes.PassResult(model, modified)

    def ensures(self, model: ir.Model) -> None:
        untagged = [
            m.weight.name for m in find_linears(model.graph) if WEIGHT_NAME not in m.weight.metadata_props
        ]
        if untagged:
            raise ir.passes.PostconditionError(f"linear weights without a user-facing name: {untagged}")
