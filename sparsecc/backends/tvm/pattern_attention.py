"""`sparsecc::PatternAttention` lowered to Relax: which kernel runs a group of heads.

  full              the dense fused attention kernel (`attention.py`, `kernels/attention_cpu.py`)
  diag, mdiag,      on x86 and aarch64: the block-list kernel (`kernels/pattern_attention_cpu.py`);
  vstripe, blocks   K and V gathered into the plan's key order (a Relax `take`, only where the
                    plan reorders keys), K transposed and padded by one register tile
  elsewhere         (CUDA, no target, value columns not in whole vectors): dense attention
                    with the pattern as a constant 0 / -inf bias, spelled out as Relax ops

The pattern is read from the node (`ops.pattern_attention.pattern_of`) before the graph goes
to TVM's importer, whose attribute parser refuses the empty `stripes` list.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np
import onnx
import onnx_ir as ir

from sparsecc.backends.tvm import attention
from sparsecc.backends.tvm.kernels.attention_cpu import AttentionShape
from sparsecc.backends.tvm.kernels.pattern_attention_cpu import (
    KeyPlan,
    PatternShape,
    padded_key_columns,
    pattern_attention_kernel,
    pattern_tiles,
    plan_keys,
)
from sparsecc.errors import UnsupportedOpError
from sparsecc.ops import pattern_attention as op
from sparsecc.passes.context import AttentionGroup
from sparsecc.sparsity.attention_patterns import HeadPattern, TokenLayout, pattern_mask

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PatternCall:
    """What one PatternAttention node computes (read from its attributes)."""

    pattern: HeadPattern
    layout: TokenLayout
    scale: float


def pattern_calls(model: onnx.ModelProto) -> dict[str, PatternCall]:
    """PatternAttention node name -> its pattern, for every such node of the main graph."""
    calls = {}
    for node in model.graph.node:
        if node.domain == op.DOMAIN and node.op_type == op.OP_TYPE:
            attributes_only = onnx.NodeProto(op_type=node.op_type, domain=node.domain, name=node.name)
            attributes_only.attribute.extend(node.attribute)  # its inputs live in a graph not at hand
            calls[pattern_node_name(node)] = PatternCall(
                *op.pattern_of(ir.serde.deserialize_node(attributes_only))
            )
    return calls


def pattern_node_name(node: onnx.NodeProto) -> str:
    """The node's name, or one made from its output (the lowering finds its pattern by name)."""
    return node.name or f"PatternAttention_{node.output[0]}"


@functools.lru_cache(maxsize=32)
def _plan(pattern: HeadPattern, layout: TokenLayout, tq: int, tk: int, kr: int) -> KeyPlan:
    # layers of one model repeat patterns: plan each once
    return plan_keys(pattern, layout, tq, tk, kr)


def lower_pattern_attention(bb, inputs, call: PatternCall, target=None, name: str = ""):
    """(Relax expression, kernel label) of one PatternAttention node; `target` None: decomposed."""
    q, k, v = inputs[:3]
    (b, h, n, d), dv = _dims(q), _dims(v)[3]
    if n != call.layout.tokens:
        raise UnsupportedOpError(
            f"PatternAttention '{name}' sees {n} tokens, its layout {call.layout.tokens}"
        )
    shape = PatternShape(b, h, n, d, dv, call.scale)
    label = kernel_label(call, shape, target)
    if call.pattern.mode == "full":
        return attention.lower_attention(bb, [q, k, v], {"scale": call.scale}, target), label
    if label == "pattern_attention_decomposed":
        return _decomposed(bb, shape, call, q, k, v), label
    return _fused(bb, shape, call, q, k, v, target), label


def kernel_label(call: PatternCall, shape: PatternShape, target) -> str:
    """The kernel `lower_pattern_attention` runs a group of `shape` with on `target` (None: none)."""
    cpu = target is not None and target.family in ("x86", "aarch64")
    if call.pattern.mode == "full":
        fused = cpu and attention.fits(shape.dense(), target.lanes)
        return attention.KERNEL_NAME if fused else "attention_decomposed"
    if cpu and shape.value_dim % target.lanes == 0:
        return f"pattern_attention_{call.pattern.mode}_cpu"
    return "pattern_attention_decomposed"


def report_kernels(groups: list[AttentionGroup], model: ir.Model, target) -> None:
    """Fill in the kernel of each PatternAttention group of the report (`fuse_heads` made the rows)."""
    rows = {row.node: row for row in groups if row.node}
    for node in model.graph:
        row = rows.get(node.name)
        if row is None or node.domain != op.DOMAIN or node.op_type != op.OP_TYPE:
            continue
        (b, h, n, d), dv = node.inputs[0].shape, node.inputs[2].shape[3]
        pattern, layout, scale = op.pattern_of(node)
        row.kernel = kernel_label(
            PatternCall(pattern, layout, scale), PatternShape(b, h, n, d, dv, scale), target
        )


def _fused(bb, shape: PatternShape, call: PatternCall, q, k, v, target):
    from tvm import relax

    tiles = pattern_tiles(shape, target.lanes, target.vector_registers)
    plan = _plan(call.pattern, call.layout, tiles["TQ"], tiles["TK"], tiles["KR"])
    if plan.permutes_keys:
        order = relax.const(plan.key_order)
        # "fast" (unchecked) gather: the order is a permutation of the tokens, built here
        k = bb.emit(relax.op.take(k, order, axis=2, mode="fast"))
        v = bb.emit(relax.op.take(v, order, axis=2, mode="fast"))
    pad = padded_key_columns(shape.tokens, tiles) - shape.tokens
    kt = bb.emit(relax.op.nn.pad(relax.op.permute_dims(k, [0, 1, 3, 2]), [0, 0, 0, 0, 0, 0, 0, pad]))
    kernel = pattern_attention_kernel(shape, plan, target.lanes, tiles)
    func = bb.add_func(kernel.without_attr("global_symbol"), f"pattern_attention_{call.pattern.mode}_cpu")
    out_ty = relax.TensorType((shape.batch, shape.heads, shape.tokens, shape.value_dim), "float32")
    constants = [relax.const(c) for c in plan.constants()]
    logger.info(
        "PatternAttention %s: %d heads, density %.3f, %d segments, computes %.3f of dense",
        call.pattern.mode,
        shape.heads,
        plan.kept / shape.tokens**2,
        len(plan.seg_start),
        plan.computed / shape.tokens**2,
    )
    return bb.emit(relax.call_tir(func, [q, kt, v, *constants], out_ty=out_ty))


def _decomposed(bb, shape: PatternShape, call: PatternCall, q, k, v):
    from tvm import relax

    n = shape.tokens
    bias = np.where(pattern_mask(call.pattern, call.layout), 0.0, -np.inf).astype(np.float32)
    dense = AttentionShape(
        shape.batch,
        shape.heads,
        shape.heads,
        n,
        n,
        shape.head_dim,
        shape.value_dim,
        (1, 1, n, n),
        scale=call.scale,
    )
    return attention.decomposed(bb, dense, q, k, v, relax.const(bias.reshape(1, 1, n, n)))


def _dims(x) -> list[int]:
    return [int(d) for d in x.ty.shape]
