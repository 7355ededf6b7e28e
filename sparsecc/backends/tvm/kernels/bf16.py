"""bfloat16 pieces the CPU kernels share: the `vdpbf16ps` dot, bf16 -> float32 widening, X -> bf16.

Weights arrive rounded to bf16 (`ops/precision.py`) and are stored as their uint16 bits (numpy
has no bfloat16), or as int32 holding a pair of them (low half: the even reduction index).

Two ways to compute with them, both accumulating in float32:
- `dot` (AVX512-BF16): `vdpbf16ps acc, a, b` adds a[2i] * b[2i] + a[2i+1] * b[2i+1] to float32
  lane i: 32 products per instruction, against 16 for a float32 FMA. It multiplies bf16 by bf16,
  so X is rounded to bf16 too (`bf16_of`), as torch's bf16 `F.linear` does.
- `widen` (any CPU): a bf16 is the top half of a float32, so a 16-bit shift gives the exact
  float32; X stays float32 and the FMA is a float32 one. Half the weight bytes, no faster math.

The dot is reached through a small LLVM function linked into the kernel (`pragma_import_llvm`):
the intrinsic takes `<32 x bfloat>`, and TVM's BF16 legalisation rewrites any bfloat16 vector a
TIR call could pass into float32 arithmetic, so TIR passes int32 vectors and the helper bitcasts
them (apache-tvm 0.27.0.post1, LLVM 17+ signature; checked 2026-12-03 on this Xeon: the kernel's
assembly holds `vdpbf16ps` and the results match numpy exactly).
"""

from __future__ import annotations

import numpy as np

from sparsecc.ops.precision import bf16_bits

DOT = "sparsecc_dpbf16_512"
DOT_LLVM = f"""
define linkonce_odr <16 x float> @{DOT}(<16 x float> %acc, <16 x i32> %a, <16 x i32> %b) alwaysinline {{
  %x = bitcast <16 x i32> %a to <32 x bfloat>
  %y = bitcast <16 x i32> %b to <32 x bfloat>
  %r = call <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float> %acc, <32 x bfloat> %x, <32 x bfloat> %y)
  ret <16 x float> %r
}}
declare <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float>, <32 x bfloat>, <32 x bfloat>)
"""
DOT_LANES = 16  # float32 lanes of the dot (AVX-512 only)


def dot(acc, pairs_a, pairs_b):
    """acc (float32x16) + the 16 pair-products of two int32x16 vectors of bf16 pairs."""
    from tvm.script import tirx as T

    return T.call_pure_extern("float32x16", DOT, acc, pairs_a, pairs_b)


def widen(bits, lanes: int):
    """float32xL of a uint16xL vector of bf16 bits (exact); lanes 1: a scalar."""
    from tvm.script import tirx as T

    if lanes == 1:
        return T.reinterpret("float32", T.shift_left(T.Cast("uint32", bits), T.uint32(16)))
    wide = T.shift_left(T.Cast(f"uint32x{lanes}", bits), T.Broadcast(T.uint32(16), lanes))
    return T.reinterpret(f"float32x{lanes}", wide)


def bf16_of(x):
    """The uint16 bits of the bf16 nearest a float32 scalar expression (ties to even; NaN not kept)."""
    from tvm.script import tirx as T

    u = T.reinterpret("uint32", x)
    return T.Cast(
        "uint16",
        T.shift_right(
            u + T.uint32(0x7FFF) + T.bitwise_and(T.shift_right(u, T.uint32(16)), T.uint32(1)), T.uint32(16)
        ),
    )


def pairs(w: np.ndarray) -> np.ndarray:
    """W[..., k] float32 (bf16 values) -> int32[..., ceil(k/2)]: bf16 pairs along the last axis, zero-padded."""
    bits = bf16_bits(w)
    if bits.shape[-1] % 2:
        bits = np.concatenate([bits, np.zeros((*bits.shape[:-1], 1), np.uint16)], axis=-1)
    return np.ascontiguousarray(bits).view(np.int32)
