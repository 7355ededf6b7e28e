"""ONNX `RotaryEmbedding` (opset 23) lowered to Relax: TVM's ONNX importer has no converter for it.

The dynamo exporter writes Llama-family RoPE as this op at opset 23. The rotation is spelled
out as slices, multiplies and a concat in the input's own layout (no transposes), with any
sequence length symbolic: [B, H, S, D] inputs take cos/sin [B, S, r/2] as [B, 1, S, r/2];
[B, S, H*D] inputs are viewed as [B, S, H, D] and take them as [B, S, 1, r/2]. `position_ids`,
when given, pick the rows of the cos/sin tables first. Only the first r = rotary_embedding_dim
features rotate (all by default); halves, or even/odd pairs when `interleaved`.
"""

from __future__ import annotations

from sparsecc.errors import UnsupportedOpError


def lower_rotary(bb, inputs, attrs):
    """The Relax expression of one RotaryEmbedding node."""
    from tvm import relax

    x, cos, sin = inputs[0], inputs[1], inputs[2]
    positions = inputs[3] if len(inputs) > 3 else None
    shape = list(x.ty.shape)
    if len(shape) not in (3, 4):
        raise UnsupportedOpError(f"RotaryEmbedding takes a 3-D or 4-D input, got rank {len(shape)}")
    if positions is not None:  # tables [max_positions, r/2] -> [B, S, r/2]
        cos = bb.emit(relax.op.take(cos, positions, axis=0))
        sin = bb.emit(relax.op.take(sin, positions, axis=0))
    if len(shape) == 3:
        heads = int(attrs.get("num_heads", 0))
        if heads <= 0:
            raise UnsupportedOpError("RotaryEmbedding of a 3-D input needs its num_heads attribute")
        b, s, hidden = shape
        x = bb.emit(relax.op.reshape(x, (b, s, heads, hidden // heads)))
        head_axis = 2
    else:
        head_axis = 1
    cos = bb.emit(relax.op.expand_dims(cos, head_axis))
    sin = bb.emit(relax.op.expand_dims(sin, head_axis))
    head_size = int(x.ty.shape[3])
    rotary = int(attrs.get("rotary_embedding_dim", 0)) or head_size
    half = rotary // 2
    rotate = bb.emit(_last(x, 0, rotary)) if rotary < head_size else x
    if attrs.get("interleaved", 0):
        pairs = bb.emit(relax.op.reshape(rotate, (*list(rotate.ty.shape)[:3], half, 2)))
        x1 = bb.emit(relax.op.squeeze(_last(pairs, 0, 1), [4]))
        x2 = bb.emit(relax.op.squeeze(_last(pairs, 1, 2), [4]))
    else:
        x1, x2 = bb.emit(_last(rotate, 0, half)), bb.emit(_last(rotate, half, rotary))
    real = bb.emit(relax.op.subtract(relax.op.multiply(cos, x1), relax.op.multiply(sin, x2)))
    imag = bb.emit(relax.op.add(relax.op.multiply(sin, x1), relax.op.multiply(cos, x2)))
    if attrs.get("interleaved", 0):
        stacked = relax.op.stack([real, imag], axis=4)
        rotated = bb.emit(relax.op.reshape(stacked, rotate.ty.shape))
    else:
        rotated = bb.emit(relax.op.concat([real, imag], axis=3))
    if rotary < head_size:
        rotated = bb.emit(relax.op.concat([rotated, _last(x, rotary, head_size)], axis=3))
    if len(shape) == 3:
        rotated = bb.emit(relax.op.reshape(rotated, shape))
    return rotated


def _last(x, begin: int, end: int):
    """x[..., begin:end] along the last axis."""
    from tvm import relax

    axis = len(x.ty.shape) - 1
    return relax.op.strided_slice(x, axes=[axis], begin=[begin], end=[end])
