"""Fused attention on CPUs: softmax(scale * Q K^T + mask) V, flash-style.

One task per (batch, head, block of QB queries). The block walks the keys in tiles of TK; each
key tile is taken by the block's micro-tiles of TQ rows in turn (`flash_cpu.flash_step`: scores
in registers, online softmax, P.V in registers), so a tile of K and V is read from memory once
per QB rows and then served from L1/L2 (a task of TQ rows alone would stream all of K and V
for every TQ rows, and be bound by memory). K comes packed per key tile, KP[B, Hkv, Skv'/TK,
D, TK]: a tile is one contiguous block, whose rows cannot collide in L1 sets as K^T[D, Skv]
rows can (a stride of Skv floats; 4352 floats, a multiple of 1 KiB, at the video-DiT shape).

Rows whose every key is masked with -inf give 0 (as the exporters' `Where(IsNaN(p), 0, p)`
guard after Softmax does). Keys past the end of a tile that the key count does not fill are
masked; query rows past Sq are computed on the last row and not stored.
"""

from __future__ import annotations

import dataclasses
import math

from sparsecc.backends.tvm.kernels import loop_kind
from sparsecc.backends.tvm.kernels.flash_cpu import (
    NEG_INF,
    Work,
    finish_rows,
    flash_step,
    init_rows,
    normalised,
    scratch_shapes,
    stats_shape,
)


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


# TK of the default tiles: up to 256 keys per softmax step. At 4 x 1024 + 226 tokens, 12 heads,
# d = 64 (2 threads, Xeon AVX-512, one interleaved run at load 1.3) 256-key steps took 420 ms
# against 476 ms with 128 (QB 132), and 404 against 435 ms with QB 546; onnxruntime 670 ms in that
# run. Sequences up to 256 keys are one tile either way.
LONG_KEY_TILE = 256

# TQ: rows of a register tile. 6 x 4 accumulators and 4 loaded vectors of K^T or V fill 28 of
# AVX-512's (and NEON's) 32 registers, 6 x 2 + 2 fill 14 of AVX2's 16; Q and P are broadcast
# from memory, into the FMA.
QUERY_ROWS = 6


def query_block(q_len: int, tq: int, longest: int = 128) -> int:
    """QB: whole TQ tiles, as few blocks of about `longest` rows as cover q_len."""
    blocks = max(1, round(q_len / longest))
    return -(-q_len // (blocks * tq)) * tq


def default_tiles(shape: AttentionShape, lanes: int, registers: int) -> dict[str, int]:
    """TQ rows and KR keys / DV value columns of a register tile, TK keys per softmax step,
    QB query rows sharing each key tile (see the module docstring)."""
    vectors = 2 if registers <= 16 else 4
    tk = key_tile(shape.kv_len, lanes, LONG_KEY_TILE)
    kr = next(v * lanes for v in range(vectors, 0, -1) if tk % (v * lanes) == 0)
    dv = next(v * lanes for v in range(vectors, 0, -1) if shape.value_dim % (v * lanes) == 0)
    tq = min(QUERY_ROWS, shape.q_len)
    return {"TQ": tq, "QB": query_block(shape.q_len, tq), "TK": tk, "KR": kr, "DV": dv}


def tile_space(shape: AttentionShape, lanes: int, registers: int) -> list[dict[str, int]]:
    """Grid-search candidates, the default first: register tiles within the register file
    (TQ x vectors accumulators, one loaded vector), key tiles and query blocks varied."""
    base = default_tiles(shape, lanes, registers)
    space = [base]

    def fits(tq: int, columns: int) -> bool:
        return tq * (columns // lanes) + columns // lanes <= registers

    for tq in (4, 6, 8, 12):
        for vectors in (2, 3, 4):
            kr, dv = vectors * lanes, vectors * lanes
            if tq > max(shape.q_len, 1) or base["TK"] % kr or shape.value_dim % dv:
                continue
            if fits(tq, kr) and fits(tq, dv):
                space.append({**base, "TQ": tq, "QB": query_block(shape.q_len, tq), "KR": kr, "DV": dv})
    for longest in (64, 256):
        tk = key_tile(shape.kv_len, lanes, longest)
        if tk % base["KR"] == 0:
            space.append({**base, "TK": tk})
    for longest in (48, 256):
        space.append({**base, "QB": query_block(shape.q_len, base["TQ"], longest)})
    unique = []
    for tiles in space:
        if tiles not in unique:
            unique.append(tiles)
    return unique


def random_operands(shape: AttentionShape, tiles: dict[str, int], seed: int = 0) -> list:
    """Arguments of the kernel for timing: random Q, packed K, V, a zero mask and the output."""
    import numpy as np

    rng = np.random.default_rng(seed)
    k = rng.standard_normal((shape.batch, shape.kv_heads, shape.kv_len, shape.head_dim)).astype(np.float32)
    mask = shape.mask_shape or (1, 1, 1, 1)
    if mask[3] > 1:
        mask = (*mask[:3], padded_keys(shape, tiles))
    return [
        rng.standard_normal((shape.batch, shape.heads, shape.q_len, shape.head_dim)).astype(np.float32),
        pack_keys(k, tiles["TK"]),
        rng.standard_normal((shape.batch, shape.kv_heads, shape.kv_len, shape.value_dim)).astype(np.float32),
        np.zeros(mask, np.float32),
        np.zeros((shape.batch, shape.heads, shape.q_len, shape.value_dim), np.float32),
    ]


def pack_keys(k, tk: int):
    """K[B, Hkv, Skv, D] as the kernel reads it, KP[B, Hkv, Skv'/TK, D, TK], zero-padded
    (numpy; the Relax lowering does the same with `permute_dims`)."""
    import numpy as np

    b, h, n, d = k.shape
    tiles = -(-n // tk)
    padded = np.zeros((b, h, tiles * tk, d), np.float32)
    padded[:, :, :n] = k
    return np.ascontiguousarray(padded.reshape(b, h, tiles, tk, d).transpose(0, 1, 2, 4, 3))


def padded_keys(shape: AttentionShape, tiles: dict[str, int]) -> int:
    return -(-shape.kv_len // tiles["TK"]) * tiles["TK"]


def fits(shape: AttentionShape, lanes: int) -> bool:
    """The kernel needs value columns in whole vectors."""
    return shape.value_dim % lanes == 0


def attention_kernel(shape: AttentionShape, lanes: int, tiles: dict[str, int]):
    """PrimFunc (Q[B,H,Sq,D], KP[B,Hkv,Skv'/TK,D,TK], V[B,Hkv,Skv,Dv], mask, Y[B,H,Sq,Dv]), scheduled.

    K comes packed per key tile and zero-padded to Skv' (whole key tiles; `pack_keys`,
    `padded_keys`), the mask's key axis padded to Skv'; the mask is [1, 1, 1, 1] zeros when
    there is none.
    """
    from tvm import tirx
    from tvm.script import tirx as T

    b_, h_, hk_, sq, skv = shape.batch, shape.heads, shape.kv_heads, shape.q_len, shape.kv_len
    d_, dv_ = shape.head_dim, shape.value_dim
    tq, tk, kr, dvc = tiles["TQ"], tiles["TK"], tiles["KR"], tiles["DV"]
    qb = tiles.get("QB") or query_block(sq, tq)  # tiles tuned before query blocks existed lack it
    if tk % kr or kr % lanes or dv_ % dvc or dvc % lanes or qb % tq:
        raise ValueError(
            f"attention tiles {tiles} invalid: KR must divide TK, DV the value columns, in vectors "
            f"of {lanes}; TQ must divide QB"
        )
    group = h_ // hk_
    q_blocks, k_tiles = -(-sq // qb), -(-skv // tk)
    scale = shape.softmax_scale
    shift = skv - sq  # causal: query i sees keys <= i + shift
    mask_shape = shape.mask_shape or (1, 1, 1, 1)
    if mask_shape[3] > 1:  # its key axis comes padded like K
        mask_shape = (*mask_shape[:3], k_tiles * tk)
    has_mask, causal = shape.mask_shape is not None, shape.causal
    f32 = "float32"
    init, step = init_rows(qb, dv_, lanes), flash_step(tiles, d_, dv_, lanes)
    finish = finish_rows(lanes)
    scratch = scratch_shapes(tiles, lanes)

    # the task's coordinates, as expressions (TVMScript assignments would allocate memory)
    def batch(task):
        return task // (h_ * q_blocks)

    def head(task):
        return task // q_blocks % h_

    def first_row(task):
        return task % q_blocks * qb

    class View:
        """Micro-tile `m` of the task's block over key tile `kt` (see `flash_cpu.flash_step`)."""

        def __init__(self, Q, KP, V, M, task, m, kt):
            self.Q, self.KP, self.V, self.M = Q, KP, V, M
            self.b, self.h, self.kv = batch(task), head(task), head(task) // group
            self.row, self.kt = first_row(task) + m * tq, kt

        def query_index(self, q):
            return tirx.min(self.row + q, sq - 1)

        def query(self, q, d):
            return self.Q[self.b, self.h, self.query_index(q), d]

        def key(self, d, j):
            return self.KP[self.b, self.kv, self.kt, d, j]

        def value(self, j, c):
            return self.V[self.b, self.kv, self.kt * tk + j, c]

        def score(self, s, q, j):
            """Scaled, with the mask (broadcast over its axes of length 1), the causal cut and
            the key padding applied."""
            value, k = s * tirx.const(scale, f32), self.kt * tk + j
            if has_mask:
                at = [self.b, self.h, self.query_index(q), k]
                value = value + tirx.BufferLoad(self.M, [i if n > 1 else 0 for i, n in zip(at, mask_shape)])
            keep = None if skv % tk == 0 else k < skv
            if causal:
                cut = k <= self.query_index(q) + shift
                keep = cut if keep is None else tirx.all(keep, cut)
            return value if keep is None else tirx.Select(keep, value, tirx.const(NEG_INF, f32))

    outer = loop_kind(shape.flops // 2)

    @T.prim_func
    def kernel(
        Q: T.Buffer((b_, h_, sq, d_), "float32"),
        KP: T.Buffer((b_, hk_, k_tiles, d_, tk), "float32"),
        V: T.Buffer((b_, hk_, skv, dv_), "float32"),
        M: T.Buffer(mask_shape, "float32"),
        Y: T.Buffer((b_, h_, sq, dv_), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main", "tirx.is_scheduled": True})
        for task in outer(b_ * h_ * q_blocks):
            stats = T.alloc_buffer(stats_shape(qb, lanes), f32)
            acc = T.alloc_buffer((qb, dv_), f32)
            s = T.alloc_buffer(scratch["s"], f32)
            reg = T.alloc_buffer(scratch["reg"], f32)
            chunk = T.alloc_buffer(scratch["chunk"], f32)
            top = T.alloc_buffer(scratch["top"], f32)
            part = T.alloc_buffer(scratch["part"], f32)
            init(stats, acc)
            for kt in T.serial(k_tiles):
                for m in T.serial((T.min(qb, sq - first_row(task)) + (tq - 1)) // tq):
                    step(
                        Work(stats, acc, s, reg, chunk, top, part),
                        m * tq,
                        T.min(tk, skv - kt * tk),
                        View(Q, KP, V, M, task, m, kt),
                    )
            finish(stats, T.min(qb, sq - first_row(task)))
            for r in T.serial(T.min(qb, sq - first_row(task))):
                for j in T.vectorized(dv_):
                    Y[batch(task), head(task), first_row(task) + r, j] = normalised(acc, stats, r, j)

    return kernel
