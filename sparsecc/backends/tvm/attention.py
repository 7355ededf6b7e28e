"""ONNX `Attention` (opset 23, no past key/value) lowered to Relax.

On CPUs it becomes one call of the fused flash-style kernel (`kernels/attention_cpu.py`):
K is handed over zero-padded to whole key tiles and packed per tile, [B, Hkv, tiles, D, TK]
(one injective function that TVM fuses with the head transpose before it), a boolean mask
becomes an additive one,
and a mask of lower rank gets leading axes of 1. Elsewhere (CUDA, value columns that are
not whole vectors) it is spelled out as matmul, softmax, matmul for dlight's rules.
"""

from __future__ import annotations

import math

import numpy as np

from sparsecc.backends.tvm.kernels.attention_cpu import (
    AttentionShape,
    attention_kernel,
    default_tiles,
    fits,
    padded_keys,
)
from sparsecc.errors import UnsupportedOpError

KERNEL_NAME = "attention_cpu"


def lower_attention(bb, inputs, attrs, target=None, choose_tiles=None):
    """The Relax expression for one Attention node; `target` (TargetInfo) None: decomposed.

    `choose_tiles(shape, lanes, registers)` picks the fused kernel's tiles (the tuner's
    measured choice under tune=N); default: `default_tiles`.
    """
    q, k, v = inputs[0], inputs[1], inputs[2]
    mask = inputs[3] if len(inputs) > 3 else None
    if len(inputs) > 4 and any(i is not None for i in inputs[4:]):
        raise UnsupportedOpError("Attention with past key/value inputs is not supported by the TVM backend")
    if attrs.get("softcap", 0.0) or attrs.get("qk_matmul_output_mode", 0):
        raise UnsupportedOpError(
            "Attention with softcap or qk_matmul_output_mode is not supported by the TVM backend"
        )
    three_d = len(q.ty.shape) == 3
    if three_d:  # [B, S, H*D] -> [B, H, S, D]
        q = _split_heads(bb, q, int(attrs["q_num_heads"]))
        k = _split_heads(bb, k, int(attrs["kv_num_heads"]))
        v = _split_heads(bb, v, int(attrs["kv_num_heads"]))
    head_dim = int(q.ty.shape[-1])
    scale = float(attrs.get("scale", 1.0 / math.sqrt(head_dim)))
    causal = bool(attrs.get("is_causal", 0))
    if mask is not None and mask.ty.dtype == "bool":
        mask = _additive(bb, mask)
    if mask is not None and len(mask.ty.shape) < 4:
        mask = bb.emit(_leading_ones(mask, 4))
    if not all(_is_static(x) for x in (q, k, v, mask) if x is not None):
        out = _symbolic(bb, q, k, v, mask, scale, causal)
        return _merge_heads(bb, out) if three_d else out
    (b, h, s_q, _), (_, h_kv, s_kv, _), dv = _dims(q), _dims(k), _dims(v)[3]
    shape = AttentionShape(
        b,
        h,
        h_kv,
        s_q,
        s_kv,
        head_dim,
        dv,
        None if mask is None else tuple(_dims(mask)),
        causal,
        scale,
    )
    if target is not None and target.family in ("x86", "aarch64") and fits(shape, target.lanes):
        out = _fused(bb, shape, q, k, v, mask, target, choose_tiles or default_tiles)
    else:
        out = decomposed(bb, shape, q, k, v, mask)
    return _merge_heads(bb, out) if three_d else out


def _fused(bb, shape: AttentionShape, q, k, v, mask, target, choose_tiles):
    from tvm import relax

    tiles = choose_tiles(shape, target.lanes, target.vector_registers)
    keys = padded_keys(shape, tiles)
    pad = keys - shape.kv_len
    if pad:
        k = relax.op.nn.pad(k, [0, 0, 0, 0, 0, pad, 0, 0])
    tiled = relax.op.reshape(
        k, (shape.batch, shape.kv_heads, keys // tiles["TK"], tiles["TK"], shape.head_dim)
    )
    kp = bb.emit(relax.op.permute_dims(tiled, [0, 1, 2, 4, 3]))
    if mask is None:
        mask = relax.const(np.zeros((1, 1, 1, 1), np.float32))
    elif shape.mask_shape[3] > 1 and pad:
        mask = bb.emit(relax.op.nn.pad(mask, [0, 0, 0, 0, 0, 0, 0, pad]))
    func = bb.add_func(
        attention_kernel(shape, target.lanes, tiles).without_attr("global_symbol"), KERNEL_NAME
    )
    out_shape = (shape.batch, shape.heads, shape.q_len, shape.value_dim)
    return bb.emit(relax.call_tir(func, [q, kp, v, mask], out_ty=relax.TensorType(out_shape, "float32")))


def decomposed(bb, shape: AttentionShape, q, k, v, mask):
    """softmax(Q K^T * scale + mask) V as Relax ops (GQA heads repeated)."""
    from tvm import relax

    cut = None
    if shape.causal:
        s_q, s_kv = shape.q_len, shape.kv_len
        cut = relax.const(np.triu(np.full((s_q, s_kv), -np.inf, np.float32), k=1 + s_kv - s_q))
    return _softmax_attention(bb, q, k, v, mask, shape.heads // shape.kv_heads, shape.softmax_scale, cut)


def _symbolic(bb, q, k, v, mask, scale: float, causal: bool):
    """Decomposed attention where a length is symbolic (a decoder's cache): the fused kernel is built
    for static shapes. Decode steps attend over a short query block, so this is not the hot path."""
    if causal:
        raise UnsupportedOpError(
            "the TVM backend cannot compile a causal Attention (is_causal=1) with a symbolic length; "
            "export the causal mask as an input (transformers does) or use `sparsecc sparsify`"
        )
    heads, kv_heads = int(q.ty.shape[1]), int(k.ty.shape[1])
    return _softmax_attention(bb, q, k, v, mask, heads // kv_heads, scale, None)


def _softmax_attention(bb, q, k, v, mask, repeat: int, scale: float, cut):
    """softmax(Q K^T * scale + cut + mask) V, K and V heads repeated `repeat` times (GQA)."""
    from tvm import relax

    if repeat > 1:
        k = bb.emit(relax.op.repeat(k, repeat, axis=1))
        v = bb.emit(relax.op.repeat(v, repeat, axis=1))
    # Scale Q, not the scores: the multiply then fuses into the matmul as a prologue.
    q = bb.emit(relax.op.multiply(q, relax.const(scale, "float32")))
    scores = bb.emit(relax.op.matmul(q, relax.op.permute_dims(k, [0, 1, 3, 2])))
    if cut is not None:
        scores = bb.emit(relax.op.add(scores, cut))
    if mask is not None:
        scores = bb.emit(relax.op.add(scores, mask))
    probs = bb.emit(relax.op.nn.softmax(scores, axis=-1))
    return bb.emit(relax.op.matmul(probs, v))


def _is_static(x) -> bool:
    from tvm import tirx

    return all(isinstance(d, tirx.IntImm) for d in x.ty.shape)


def _dims(x) -> list[int]:
    return [int(d) for d in x.ty.shape]


def _additive(bb, mask):
    """A boolean mask (True: attend) as 0 / -inf to add to the scores."""
    from tvm import relax

    zero, blocked = relax.const(0.0, "float32"), relax.const(-np.inf, "float32")
    return bb.emit(relax.op.where(mask, zero, blocked))


def _leading_ones(x, rank: int):
    from tvm import relax

    dims = list(x.ty.shape)
    return relax.op.reshape(x, [1] * (rank - len(dims)) + dims)


def _split_heads(bb, x, heads: int):
    from tvm import relax

    b, s, hidden = x.ty.shape
    return bb.emit(
        relax.op.permute_dims(relax.op.reshape(x, (b, s, heads, int(hidden) // heads)), [0, 2, 1, 3])
    )


def _merge_heads(bb, x):
    """[B, H, S, D] -> [B, S, H*D]."""
    from tvm import relax

    b, h, s, d = x.ty.shape
    return bb.emit(relax.op.reshape(relax.op.permute_dims(x, [0, 2, 1, 3]), (b, s, int(h) * int(d))))
