"""canonicalize: bring every linear layer with a constant weight into one form.

The form is `MatMul(X, Wt) [+ Add(b)]` (see `linear.py`). Rules, in order:
  Gemm(A, B, C)                -> MatMul(A, B') + Add(C)   # B' = B^T if transB, scaled by alpha
  Gemm(A, B)                   -> MatMul(A, B')
  MatMul(X, Transpose(W))      -> MatMul(X, W^T)           # fold the constant transpose
  Conv(X, W[, b]) -> BatchNormalization      -> Conv(X, W', b')          # BN folded (onnxscript's rule)
  Conv(X, W[, b]), stride = kernel > 1 -> patches of X: MatMul(patches, W') [+ Add(b)]  # ViT patch embedding
Other Convs stay Convs: their weight [O, C/g, kh, kw] is the matrix [O, C/g*kh*kw] to the
sparsity passes (`conv.py`); activations after them are fused by the backend, not here (standard
ONNX has no Conv with an activation).
Constant nodes are lifted to initializers and Identity nodes removed first, so weights are found
either way, and
every linear weight is tagged with its names (user-facing and initializer) for the spec's selectors.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import IdentityEliminationPass, LiftConstantsToInitializersPass
from onnxscript.rewriter import MatchResult, RewriteRuleClassBase, RewriteRuleSet
from onnxscript.rewriter.rules.common._fuse_batchnorm import FuseBatchNormIntoConv

from sparsecc.ops.metadata import INITIALIZER_NAME, WEIGHT_NAME
from sparsecc.passes.conv import find_weighted
from sparsecc.passes.linear import constant_of, copy_names


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


def _new_weight(op, source: ir.Value, array: np.ndarray, suffix: str, out: ir.Value) -> ir.Value:
    """A new initializer from `source`, named after it: per user (`out`) when others still use it."""
    name = f"{source.name}{suffix}"
    if len(source.uses()) > 1:  # a shared initializer (equal biases, tied weights): a copy per user
        name = f"{name}.{out.name}"
    value = op.initializer(ir.tensor(array, name=name))
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
        bias_value = _new_weight(op, c, np.ascontiguousarray(bias, dtype=np.float32), ".canon", out)
        return op.Add(op.MatMul(a, _new_weight(op, b, w, ".canon", out)), bias_value)


class GemmToMatMul(RewriteRuleClassBase):
    """Gemm(A, B) with constant B -> MatMul(A, B')."""

    def pattern(self, op, a, b):
        return op.Gemm(a, b, _outputs=["out"])

    def check(self, context, a, b, out, **_) -> MatchResult:
        check = MatchResult()
        _gemm_weight(out.producer(), b, check)
        return check

    def rewrite(self, op, a, b, out, **_):
        return op.MatMul(a, _new_weight(op, b, _gemm_weight(out.producer(), b, MatchResult()), ".canon", out))


class FoldWeightTranspose(RewriteRuleClassBase):
    """MatMul(X, Transpose(W)) with constant 2-D W -> MatMul(X, W^T)."""

    def pattern(self, op, x, w):
        return op.MatMul(x, op.Transpose(w, _outputs=["wt"]), _outputs=["out"])

    def check(self, context, x, w, wt, **_) -> MatchResult:
        check = MatchResult()
        tensor = constant_of(w)
        if tensor is None or len(tensor.shape) != 2 or tensor.dtype != ir.DataType.FLOAT:
            return check.fail("transposed operand is not a constant float32 matrix", w)
        perm = wt.producer().attributes.get_ints("perm", [1, 0])
        if list(perm) != [1, 0]:
            return check.fail(f"transpose perm {list(perm)} is not [1, 0]", wt)
        return check

    def rewrite(self, op, x, w, out, **_):
        return op.MatMul(x, _new_weight(op, w, np.ascontiguousarray(w.const_value.numpy().T), ".T", out))


def _patch_conv(node: ir.Node, x: ir.Value, w: ir.Value, check: MatchResult) -> tuple | None:
    """(N, C, H, W, kh, kw) when `node` is a patch convolution (stride = kernel, no padding,
    overlap or groups) of a statically shaped input, else None (with the reason on `check`)."""
    weight = constant_of(w)
    if weight is None or weight.dtype != ir.DataType.FLOAT or len(weight.shape) != 4:
        check.fail("Conv's weight is not a constant float32 [O, C, kh, kw] tensor", w)
        return None
    kh, kw = weight.shape[2], weight.shape[3]
    attrs = node.attributes
    if kh * kw == 1:
        check.fail("a 1x1 convolution stays a Conv (a GEMM over NCHW positions in the Conv kernel)", node)
        return None
    if (
        list(attrs.get_ints("strides", [1, 1])) != [kh, kw]
        or any(attrs.get_ints("pads", [0, 0, 0, 0]))
        or any(d != 1 for d in attrs.get_ints("dilations", [1, 1]))
        or attrs.get_int("group", 1) != 1
        or attrs.get_string("auto_pad", "NOTSET") not in ("NOTSET", "VALID")
    ):
        check.fail("not a patch convolution (stride = kernel, no padding, dilation or groups)", node)
        return None
    shape = x.shape
    if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape):
        check.fail("Conv's input has no static [N, C, H, W] shape", x)
        return None
    n, c, h, width = shape
    if h % kh or width % kw or c != weight.shape[1]:
        check.fail(f"input {list(shape)} does not tile into {kh}x{kw} patches", x)
        return None
    return n, c, h, width, kh, kw


def _shape(op, *dims: int) -> ir.Value:
    """A Reshape's shape as a Constant tensor (TVM's importer reads `value`, not `value_ints`)."""
    return op.Constant(value=ir.tensor(np.array(dims, dtype=np.int64)))


class PatchConvToMatMul(RewriteRuleClassBase):
    """Conv with stride = kernel (a ViT's patch embedding) -> patches x MatMul [+ Add(bias)].

    Each output pixel is one patch times the weight, so the Conv is a linear layer over
    patches: it gets the linear kernels, and the spec can sparsify it like any linear.
    """

    def pattern(self, op, x, w, b):
        return op.Conv(x, w, b, _allow_other_inputs=False, _outputs=["out"])

    def check(self, context, x, w, b, out, **_) -> MatchResult:
        check = MatchResult()
        if _patch_conv(out.producer(), x, w, check) is None:
            return check
        if b is not None and (constant_of(b) is None or len(constant_of(b).shape) != 1):
            return check.fail("Conv's bias is not a constant 1-D tensor", b)
        return check

    def rewrite(self, op, x, w, b, out, **_):
        n, c, h, width, kh, kw = _patch_conv(out.producer(), x, w, MatchResult())
        weight = w.const_value.numpy()
        rows, cols = h // kh, width // kw
        patches = op.Reshape(
            op.Transpose(op.Reshape(x, _shape(op, n, c, rows, kh, cols, kw)), perm=[0, 2, 4, 1, 3, 5]),
            _shape(op, n, rows * cols, c * kh * kw),
        )
        wt = np.ascontiguousarray(weight.reshape(weight.shape[0], -1).T, dtype=np.float32)
        y = op.MatMul(patches, _new_weight(op, w, wt, ".patches", out))
        if b is not None:
            y = op.Add(y, b)
        image = op.Reshape(y, _shape(op, n, rows, cols, weight.shape[0]))
        return op.Transpose(image, perm=[0, 3, 1, 2])


class PatchConvNoBiasToMatMul(PatchConvToMatMul):
    def pattern(self, op, x, w):
        return op.Conv(x, w, _outputs=["out"])

    def check(self, context, x, w, out, **_) -> MatchResult:
        return super().check(context, x, w, None, out)

    def rewrite(self, op, x, w, out, **_):
        return super().rewrite(op, x, w, None, out)


def rules() -> RewriteRuleSet:
    """A new rule set per run: onnxscript's matchers keep the last node they looked at, and
    module-level rules kept the last model compiled alive (its weights too) until the next."""
    return RewriteRuleSet(
        [
            FuseBatchNormIntoConv().rule(),  # Conv -> BatchNormalization (inference) -> Conv with W, b scaled
            GemmBiasToMatMulAdd.rule(),
            GemmToMatMul.rule(),
            FoldWeightTranspose.rule(),
            PatchConvToMatMul.rule(),
            PatchConvNoBiasToMatMul.rule(),
        ]
    )


class CanonicalizePass(ir.passes.InPlacePass):
    """Rewrite MatMul/Gemm linears into the canonical `MatMul(X, Wt) [+ Add(b)]` form."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = LiftConstantsToInitializersPass(size_limit=2)(model).modified
        # the TorchScript exporter shares equal initializers (all-zero biases, tied weights) and
        # hands the copies out through Identity nodes: a linear must see the initializer itself
        modified |= IdentityEliminationPass()(model).modified
        modified |= rules().apply_to_model(model) > 0
        for match in find_weighted(model.graph):
            for key in (WEIGHT_NAME, INITIALIZER_NAME):
                if key not in match.weight.metadata_props:
                    match.weight.metadata_props[key] = match.weight.name
                    modified = True
        if modified:
            ir.passes.common.RemoveUnusedNodesPass()(model)
        return ir.passes.PassResult(model, modified)

    def ensures(self, model: ir.Model) -> None:
        untagged = [
            m.weight.name for m in find_weighted(model.graph) if WEIGHT_NAME not in m.weight.metadata_props
        ]
        if untagged:
            raise ir.passes.PostconditionError(f"linear weights without a user-facing name: {untagged}")
