"""Fused attention on CPUs: softmax(scale * Q K^T + mask) V, flash-style.

One task per (batch, head, tile of TQ queries). The keys are visited in tiles of TK
with an online softmax (a running row max and row sum; the partial output is rescaled
when the max grows), so no score matrix larger than TQ x TK is ever written:
  S   = scale * Q[tile] K[keys]^T (+ mask)   TQ x TK/lanes accumulators in registers,
                                             vectorised over keys (K comes transposed, K^T[D, S])
  P   = exp(S - m_new)                       a vectorised polynomial exp (no libm calls)
  acc = acc * exp(m_old - m_new) + P V[keys] vectorised over the value features, the
                                             accumulator visited in register-sized column chunks
Rows whose every key is masked with -inf give 0 (as the exporters' `Where(IsNaN(p), 0, p)`
guard after Softmax does). Keys past the end of a tile that the key count does not fill are
masked; query rows past Sq are computed on the last row and not stored.

The pattern-attention issue reuses this kernel with block lists of keys.
"""

from __future__ import annotations

import dataclasses
import math

from sparsecc.backends.tvm.kernels import loop_kind

# exp(x) = 2^n * p(r), x = n ln2 + r, |r| <= ln2 / 2: Cody-Waite split of ln2 and the degree-6
# minimax polynomial of Cephes' expf (relative error ~1e-7 over float32's range).
EXP_HI, EXP_LO = 88.3762626647950, -88.3762626647949
LOG2E = 1.44269504088896341
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4
EXP_POLY = (
    1.9875691500e-4,
    1.3981999507e-3,
    8.3334519073e-3,
    4.1665795894e-2,
    1.6666665459e-1,
    5.0000001201e-1,
)
NEG_INF = float("-inf")


def fast_exp(x):
    """exp of a float32 PrimExpr as arithmetic that vectorises; exp(-inf) = 0."""
    from tvm import tirx

    f32 = "float32"
    x = tirx.max(tirx.min(x, tirx.const(EXP_HI, f32)), tirx.const(EXP_LO, f32))
    n = tirx.floor(x * tirx.const(LOG2E, f32) + tirx.const(0.5, f32))
    r = x - n * tirx.const(LN2_HI, f32) - n * tirx.const(LN2_LO, f32)
    p = tirx.const(EXP_POLY[0], f32)
    for c in EXP_POLY[1:]:
        p = p * r + tirx.const(c, f32)
    p = p * r * r + r + tirx.const(1.0, f32)
    bits = tirx.shift_left(tirx.Cast("int32", n) + tirx.const(127, "int32"), tirx.const(23, "int32"))
    return p * tirx.reinterpret(f32, bits)


@dataclasses.dataclass(frozen=True)
class AttentionShape:
    """Static shapes of one attention call (4-D, heads second); K and V heads divide Q's."""

    batch: int
    heads: int
    kv_heads: int
    q_len: int
    kv_len: int
    head_dim: int
    value_dim: int
    mask_shape: tuple[int, int, int, int] | None  # additive float mask, broadcast to [B, H, Sq, Skv]
    causal: bool = False
    scale: float | None = None  # None: 1 / sqrt(head_dim)

    @property
    def softmax_scale(self) -> float:
        return self.scale if self.scale is not None else 1.0 / math.sqrt(self.head_dim)

    @property
    def flops(self) -> int:
        return 2 * self.batch * self.heads * self.q_len * self.kv_len * (self.head_dim + self.value_dim)


def key_tile(kv_len: int, lanes: int, longest: int = 128) -> int:
    """TK: whole vectors, as few tiles of at most `longest` keys as cover kv_len, little padding."""
    tiles = -(-kv_len // longest)
    return -(-kv_len // (tiles * lanes)) * lanes


def default_tiles(shape: AttentionShape, lanes: int, registers: int) -> dict[str, int]:
    """TQ query rows, TK keys per softmax step, KR keys and DV value columns per register tile.

    Scores take TQ x KR/lanes accumulators, P.V takes TQ x DV/lanes: 8 of 16 AVX2 registers
    (one vector of K^T or V and a broadcast besides), 16 of 32 with AVX-512 or NEON.
    """
    vectors = 2 if registers <= 16 else 4
    tk = key_tile(shape.kv_len, lanes)
    kr = next(v * lanes for v in range(vectors, 0, -1) if tk % (v * lanes) == 0)
    dv = next(v * lanes for v in range(vectors, 0, -1) if shape.value_dim % (v * lanes) == 0)
    return {"TQ": 4 if shape.q_len >= 4 else shape.q_len, "TK": tk, "KR": kr, "DV": dv}


def tile_space(shape: AttentionShape, lanes: int, registers: int) -> list[dict[str, int]]:
    """Grid-search candidates, the default first: query rows, register tiles and key tiles varied
    within the register file (TQ x vectors accumulators, one loaded vector and one broadcast)."""
    base = default_tiles(shape, lanes, registers)
    space = [base]

    def fits(tq: int, columns: int) -> bool:
        return tq * (columns // lanes) + columns // lanes + 1 <= registers

    for tq in (2, 4, 6, 8):
        for vectors in (1, 2, 3, 4):
            kr, dv = vectors * lanes, vectors * lanes
            if tq > max(shape.q_len, 1) or base["TK"] % kr or shape.value_dim % dv:
                continue
            if fits(tq, kr) and fits(tq, dv):
                space.append({**base, "TQ": tq, "KR": kr, "DV": dv})
    for longest in (64, 256):
        tk = key_tile(shape.kv_len, lanes, longest)
        if tk % base["KR"] == 0:
            space.append({**base, "TK": tk})
    unique = []
    for tiles in space:
        if tiles not in unique:
            unique.append(tiles)
    return unique


def random_operands(shape: AttentionShape, tiles: dict[str, int], seed: int = 0) -> list:
    """Arguments of the kernel for timing: random Q, K^T, V, a zero mask and the output."""
    import numpy as np

    rng = np.random.default_rng(seed)
    keys = padded_keys(shape, tiles)
    mask = shape.mask_shape or (1, 1, 1, 1)
    if mask[3] > 1:
        mask = (*mask[:3], keys)
    return [
        rng.standard_normal((shape.batch, shape.heads, shape.q_len, shape.head_dim)).astype(np.float32),
        rng.standard_normal((shape.batch, shape.kv_heads, shape.head_dim, keys)).astype(np.float32),
        rng.standard_normal((shape.batch, shape.kv_heads, shape.kv_len, shape.value_dim)).astype(np.float32),
        np.zeros(mask, np.float32),
        np.zeros((shape.batch, shape.heads, shape.q_len, shape.value_dim), np.float32),
    ]


def padded_keys(shape: AttentionShape, tiles: dict[str, int]) -> int:
    return -(-shape.kv_len // tiles["TK"]) * tiles["TK"]


def fits(shape: AttentionShape, lanes: int) -> bool:
    """The kernel needs value columns in whole vectors."""
    return shape.value_dim % lanes == 0


def attention_kernel(shape: AttentionShape, lanes: int, tiles: dict[str, int]):
    """PrimFunc (Q[B,H,Sq,D], KT[B,Hkv,D,Skv'], V[B,Hkv,Skv,Dv], mask, Y[B,H,Sq,Dv]), scheduled.

    K^T and the mask's key axis come zero-padded to Skv' (whole key tiles; `padded_keys`), so
    the score loop loads full vectors; the mask is [1, 1, 1, 1] zeros when there is none.
    """
    from tvm import tirx
    from tvm.script import tirx as T

    b_, h_, hk_, sq, skv = shape.batch, shape.heads, shape.kv_heads, shape.q_len, shape.kv_len
    d_, dv_ = shape.head_dim, shape.value_dim
    tq, tk, kr, dvc = tiles["TQ"], tiles["TK"], tiles["KR"], tiles["DV"]
    if tk % kr or kr % lanes or dv_ % dvc or dvc % lanes:
        raise ValueError(
            f"attention tiles {tiles} invalid: KR must divide TK, DV the value columns, in vectors of {lanes}"
        )
    group = h_ // hk_
    q_tiles, k_tiles = -(-sq // tq), -(-skv // tk)
    scale = shape.softmax_scale
    shift = skv - sq  # causal: query i sees keys <= i + shift
    mask_shape = shape.mask_shape or (1, 1, 1, 1)
    if mask_shape[3] > 1:  # its key axis comes padded like K^T
        mask_shape = (*mask_shape[:3], k_tiles * tk)
    has_mask, causal = shape.mask_shape is not None, shape.causal
    f32 = "float32"
    zero, neg_inf = tirx.const(0.0, f32), tirx.const(NEG_INF, f32)

    # the task's coordinates, as expressions (TVMScript assignments would allocate memory)
    def batch(task):
        return task // (h_ * q_tiles)

    def head(task):
        return task // q_tiles % h_

    def kv_head(task):
        return task // q_tiles % h_ // group

    def query(task, q):
        return tirx.min(task % q_tiles * tq + q, sq - 1)

    def score(s, mask, task, q, k):
        """Scaled score with the mask (broadcast over its axes of length 1), the causal cut and
        the key padding applied."""
        value = s * tirx.const(scale, f32)
        if has_mask:
            at = [batch(task), head(task), query(task, q), k]
            value = value + tirx.BufferLoad(mask, [i if n > 1 else 0 for i, n in zip(at, mask_shape)])
        keep = None if skv % tk == 0 else k < skv
        if causal:
            cut = k <= query(task, q) + shift
            keep = cut if keep is None else tirx.all(keep, cut)
        return value if keep is None else tirx.Select(keep, value, neg_inf)

    def safe(row_max):
        """A row masked so far keeps max -inf; its exponents use 0 instead (exp(-inf) = 0, not NaN)."""
        return tirx.Select(row_max == neg_inf, zero, row_max)

    outer = loop_kind(shape.flops // 2)

    @T.prim_func
    def kernel(
        Q: T.Buffer((b_, h_, sq, d_), "float32"),
        KT: T.Buffer((b_, hk_, d_, k_tiles * tk), "float32"),
        V: T.Buffer((b_, hk_, skv, dv_), "float32"),
        M: T.Buffer(mask_shape, "float32"),
        Y: T.Buffer((b_, h_, sq, dv_), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main", "tirx.is_scheduled": True})
        for task in outer(b_ * h_ * q_tiles):
            # per row: 0 running max, 1 running sum, 2 this tile's max, 3 rescale of the partial output
            stats = T.alloc_buffer((tq, 4), f32)
            part = T.alloc_buffer((lanes,), f32)
            acc = T.alloc_buffer((tq, dv_), f32)
            s = T.alloc_buffer((tq, tk), f32)
            for q in T.serial(tq):
                stats[q, 0] = neg_inf
                stats[q, 1] = zero
                for j in T.vectorized(dv_):
                    acc[q, j] = zero
            for kt in T.serial(k_tiles):
                # S = Q K^T, KR keys at a time: TQ x KR/lanes accumulators (unrolled indices only,
                # so LLVM keeps them in registers)
                for kc in T.serial(tk // kr):
                    tile = T.alloc_buffer((tq, kr), f32)
                    for q in T.unroll(tq):
                        for j in T.vectorized(kr):
                            tile[q, j] = zero
                    for d in T.serial(d_):
                        for q in T.unroll(tq):
                            for jv in T.unroll(kr // lanes):
                                for lane in T.vectorized(lanes):
                                    tile[q, jv * lanes + lane] = (
                                        tile[q, jv * lanes + lane]
                                        + Q[batch(task), head(task), query(task, q), d]
                                        * KT[
                                            batch(task),
                                            kv_head(task),
                                            d,
                                            kt * tk + kc * kr + jv * lanes + lane,
                                        ]
                                    )
                    for q in T.unroll(tq):
                        for j in T.vectorized(kr):
                            s[q, kc * kr + j] = score(tile[q, j], M, task, q, kt * tk + kc * kr + j)
                # online softmax over the tile
                for q in T.serial(tq):
                    for lane in T.vectorized(lanes):
                        part[lane] = stats[q, 0]
                    for jv in T.serial(tk // lanes):
                        for lane in T.vectorized(lanes):
                            part[lane] = T.max(part[lane], s[q, jv * lanes + lane])
                    stats[q, 2] = stats[q, 0]
                    for lane in T.serial(lanes):
                        stats[q, 2] = T.max(stats[q, 2], part[lane])
                    stats[q, 3] = fast_exp(stats[q, 0] - safe(stats[q, 2]))
                    for lane in T.vectorized(lanes):
                        part[lane] = zero
                    for jv in T.serial(tk // lanes):
                        for lane in T.vectorized(lanes):
                            s[q, jv * lanes + lane] = fast_exp(s[q, jv * lanes + lane] - safe(stats[q, 2]))
                            part[lane] = part[lane] + s[q, jv * lanes + lane]
                    stats[q, 1] = stats[q, 1] * stats[q, 3]
                    for lane in T.serial(lanes):
                        stats[q, 1] = stats[q, 1] + part[lane]
                    stats[q, 0] = stats[q, 2]
                # acc = acc * rescale + P V, DV columns at a time held in registers
                for c in T.serial(dv_ // dvc):
                    chunk = T.alloc_buffer((tq, dvc), f32)
                    for q in T.unroll(tq):
                        for j in T.vectorized(dvc):
                            chunk[q, j] = acc[q, c * dvc + j] * stats[q, 3]
                    for kk in T.serial(T.min(tk, skv - kt * tk)):
                        for q in T.unroll(tq):
                            for jv in T.unroll(dvc // lanes):
                                for lane in T.vectorized(lanes):
                                    chunk[q, jv * lanes + lane] = (
                                        chunk[q, jv * lanes + lane]
                                        + s[q, kk]
                                        * V[
                                            batch(task),
                                            kv_head(task),
                                            kt * tk + kk,
                                            c * dvc + jv * lanes + lane,
                                        ]
                                    )
                    for q in T.unroll(tq):
                        for j in T.vectorized(dvc):
                            acc[q, c * dvc + j] = chunk[q, j]
            for q in T.serial(T.min(tq, sq - task % q_tiles * tq)):
                for j in T.vectorized(dv_):
                    Y[batch(task), head(task), task % q_tiles * tq + q, j] = T.Select(
                        stats[q, 1] > zero, acc[q, j] / stats[q, 1], zero
                    )

    return kernel
