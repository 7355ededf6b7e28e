"""PatternAttention on CPUs: the flash-style kernel of `attention_cpu.py` over static key lists.

Every pattern becomes, at compile time, a *key plan* (`plan_keys`):
  - an order of the keys (K and V are gathered into it before the call) and of the queries
    (the kernel reads Q and writes Y through a row index table), chosen so that each row's
    kept keys are few contiguous runs:
        diag, blocks  the token order itself
        mdiag         latent tokens position-major (same spatial position, every frame, adjacent):
                      the band of a query becomes one range, and a tile of queries shares it
        vstripe       keys: the stripe columns moved next to the text columns (one range)
  - per tile of TQ queries, a list of *segments*: a key range [start, start + len), len <= TK,
    where every row of the tile keeps either all keys or none (`hi` = len or 0). Segment
    boundaries are the points where any row's kept/dropped state changes, so partial blocks are
    exact; rows that drop a segment only cost its (masked) score columns.
The masks come from `attention_patterns.pattern_mask` itself, so the plan keeps exactly what
the op's reference keeps (text rows and columns included).

The kernel visits, for one (batch, head, query tile), its segments in turn with the online
softmax of the dense kernel: scores in KR-key register tiles (a segment costs ceil(len/KR) of
them), P.V over the segment's exact keys. K^T and V come in plan order, K^T padded by KR
columns so the last register tile of a segment never reads past the end.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparsecc.backends.tvm.kernels import loop_kind
from sparsecc.backends.tvm.kernels.attention_cpu import NEG_INF, AttentionShape, default_tiles, fast_exp
from sparsecc.sparsity.attention_patterns import HeadPattern, TokenLayout, pattern_mask

LONGEST_SEGMENT = 128  # TK: keys per online-softmax step (as the dense kernel's key tile)


@dataclasses.dataclass(frozen=True)
class PatternShape:
    """Static shapes of one PatternAttention call: Q, K, V [B, H, N, d], Y [B, H, N, dv]."""

    batch: int
    heads: int
    tokens: int
    head_dim: int
    value_dim: int
    scale: float

    def dense(self) -> AttentionShape:
        return AttentionShape(
            self.batch,
            self.heads,
            self.heads,
            self.tokens,
            self.tokens,
            self.head_dim,
            self.value_dim,
            None,
            scale=self.scale,
        )


@dataclasses.dataclass(frozen=True)
class KeyPlan:
    """The static schedule of one pattern: orders, tiles, segments (see the module docstring)."""

    query_order: np.ndarray  # [QT * TQ] int32: original query row of each planned row (last repeated)
    key_order: np.ndarray  # [N] int32: original token of each planned key position
    seg_ptr: np.ndarray  # [QT + 1] int32: tile t's segments are seg_ptr[t] .. seg_ptr[t+1]
    seg_start: np.ndarray  # [S] int32: first planned key of the segment
    seg_len: np.ndarray  # [S] int32: keys in the segment (<= TK)
    seg_hi: np.ndarray  # [S, TQ] int32: keys row q of the tile keeps in the segment (len or 0)
    tq: int
    tk: int
    kept: int  # kept (query, key) pairs: the pattern's work
    computed: int  # score columns the kernel computes (register tiles included), for reports

    @property
    def query_tiles(self) -> int:
        return len(self.seg_ptr) - 1

    @property
    def permutes_keys(self) -> bool:
        return bool(np.any(self.key_order != np.arange(len(self.key_order))))

    def constants(self) -> list[np.ndarray]:
        """The kernel's table arguments, in parameter order (after Q, KT, V)."""
        return [self.query_order, self.seg_ptr, self.seg_start, self.seg_len, self.seg_hi]


def _orders(pattern: HeadPattern, layout: TokenLayout) -> tuple[np.ndarray, np.ndarray]:
    """(query order, key order) that make each row's kept keys few contiguous runs."""
    n = layout.tokens
    identity = np.arange(n)
    text = layout.is_text()
    if pattern.mode == "mdiag":
        latent = layout.latent_index()
        position, frame = latent % layout.frame_tokens, latent // layout.frame_tokens
        # text keeps its place (first or last); latent tokens sorted by (position, frame)
        order = np.lexsort((frame, position, ~text if layout.text_first else text))
        return order, order
    if pattern.mode == "vstripe":
        stripe = np.zeros(n, dtype=bool)
        stripe[layout.latent_start + np.asarray(pattern.stripes, dtype=np.int64)] = True
        # text first: text, stripes, the rest; text last: the rest, stripes, text
        rank = (
            np.where(text, 0, np.where(stripe, 1, 2))
            if layout.text_first
            else np.where(text, 2, np.where(stripe, 1, 0))
        )
        return identity, np.argsort(rank, kind="stable")
    return identity, identity


def plan_keys(pattern: HeadPattern, layout: TokenLayout, tq: int, tk: int, kr: int) -> KeyPlan:
    """The key plan of `pattern` over `layout` for query tiles of `tq` rows, segments of at most
    `tk` keys (a multiple of `kr`, the score register tile)."""
    if tk % kr:
        raise ValueError(f"the segment length {tk} must be a multiple of the register tile {kr}")
    n = layout.tokens
    q_order, k_order = _orders(pattern, layout)
    keep = pattern_mask(pattern, layout)[q_order][:, k_order]
    tiles = -(-n // tq)
    rows = np.concatenate([q_order, np.full(tiles * tq - n, q_order[-1])]).astype(np.int32)
    keep = np.concatenate([keep, np.repeat(keep[-1:], tiles * tq - n, axis=0)])
    # one code per (tile, key): which rows of the tile keep the key (bit q)
    codes = (keep.reshape(tiles, tq, n) * (1 << np.arange(tq))[None, :, None]).sum(axis=1)
    ptr, starts, lens, his = [0], [], [], []
    for t in range(tiles):
        row = codes[t]
        cuts = np.flatnonzero(row[1:] != row[:-1]) + 1
        bounds = np.concatenate([[0], cuts, [n]])
        for a, b in zip(bounds[:-1], bounds[1:]):
            code = int(row[a])
            if code == 0:
                continue
            for start in range(int(a), int(b), tk):
                length = min(tk, int(b) - start)
                starts.append(start)
                lens.append(length)
                his.append([length if code >> q & 1 else 0 for q in range(tq)])
        ptr.append(len(starts))
    lens_arr = np.asarray(lens, dtype=np.int32)
    return KeyPlan(
        query_order=rows,
        key_order=k_order.astype(np.int32),
        seg_ptr=np.asarray(ptr, dtype=np.int32),
        seg_start=np.asarray(starts, dtype=np.int32),
        seg_len=lens_arr,
        seg_hi=np.asarray(his, dtype=np.int32).reshape(-1, tq),
        tq=tq,
        tk=tk,
        kept=int(keep[:n].sum()),
        computed=int((-(-lens_arr // kr) * kr).sum() * tq),
    )


def pattern_tiles(shape: PatternShape, lanes: int, registers: int) -> dict[str, int]:
    """TQ, KR, DV as the dense kernel's defaults; TK the longest segment."""
    tiles = dict(default_tiles(shape.dense(), lanes, registers))
    tiles["TK"] = -(-LONGEST_SEGMENT // tiles["KR"]) * tiles["KR"]
    return tiles


def padded_key_columns(tokens: int, tiles: dict[str, int]) -> int:
    """Columns of the K^T argument: the tokens plus one register tile (segments read up to it)."""
    return tokens + tiles["KR"]


def pattern_attention_kernel(shape: PatternShape, plan: KeyPlan, lanes: int, tiles: dict[str, int]):
    """PrimFunc (Q[B,H,N,d], KT[B,H,d,N+KR], V[B,H,N,dv], query_order, seg_ptr, seg_start, seg_len,
    seg_hi, Y[B,H,N,dv]); K^T and V in the plan's key order, zero past N."""
    from tvm import tirx
    from tvm.script import tirx as T

    b_, h_, n_, d_, dv_ = shape.batch, shape.heads, shape.tokens, shape.head_dim, shape.value_dim
    tq, tk, kr, dvc = tiles["TQ"], tiles["TK"], tiles["KR"], tiles["DV"]
    if tq != plan.tq or tk != plan.tk or tk % kr or kr % lanes or dv_ % dvc or dvc % lanes:
        raise ValueError(
            f"pattern attention tiles {tiles} invalid for a plan of TQ={plan.tq}, TK={plan.tk}: KR must "
            f"divide TK, DV the value columns, in vectors of {lanes}"
        )
    q_tiles, segments = plan.query_tiles, len(plan.seg_start)
    rows = q_tiles * tq
    keys = padded_key_columns(n_, tiles)
    scale = shape.scale
    f32 = "float32"
    zero, neg_inf = tirx.const(0.0, f32), tirx.const(NEG_INF, f32)

    # coordinates as expressions (TVMScript assignments would allocate memory)
    def batch(task):
        return task // (h_ * q_tiles)

    def head(task):
        return task // q_tiles % h_

    def tile(task):
        return task % q_tiles

    def safe(row_max):
        return tirx.Select(row_max == neg_inf, zero, row_max)

    outer = loop_kind(plan.computed * b_ * h_ * d_)

    @T.prim_func
    def kernel(
        Q: T.Buffer((b_, h_, n_, d_), "float32"),
        KT: T.Buffer((b_, h_, d_, keys), "float32"),
        V: T.Buffer((b_, h_, n_, dv_), "float32"),
        QO: T.Buffer((rows,), "int32"),
        PTR: T.Buffer((q_tiles + 1,), "int32"),
        START: T.Buffer((segments,), "int32"),
        LEN: T.Buffer((segments,), "int32"),
        HI: T.Buffer((segments, tq), "int32"),
        Y: T.Buffer((b_, h_, n_, dv_), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main", "tirx.is_scheduled": True})
        for task in outer(b_ * h_ * q_tiles):
            # per row: 0 running max, 1 running sum, 2 this segment's max, 3 rescale of the output
            stats = T.alloc_buffer((tq, 4), f32)
            part = T.alloc_buffer((lanes,), f32)
            acc = T.alloc_buffer((tq, dv_), f32)
            s = T.alloc_buffer((tq, tk), f32)
            for q in T.serial(tq):
                stats[q, 0] = neg_inf
                stats[q, 1] = zero
                for j in T.vectorized(dv_):
                    acc[q, j] = zero
            for g in T.serial(PTR[tile(task) + 1] - PTR[tile(task)]):
                # S = Q K^T over the segment, KR keys at a time in registers
                for kc in T.serial((LEN[PTR[tile(task)] + g] + (kr - 1)) // kr):
                    reg = T.alloc_buffer((tq, kr), f32)
                    for q in T.unroll(tq):
                        for j in T.vectorized(kr):
                            reg[q, j] = zero
                    for d in T.serial(d_):
                        for q in T.unroll(tq):
                            for jv in T.unroll(kr // lanes):
                                for lane in T.vectorized(lanes):
                                    reg[q, jv * lanes + lane] = (
                                        reg[q, jv * lanes + lane]
                                        + Q[batch(task), head(task), QO[tile(task) * tq + q], d]
                                        * KT[
                                            batch(task),
                                            head(task),
                                            d,
                                            START[PTR[tile(task)] + g] + kc * kr + jv * lanes + lane,
                                        ]
                                    )
                    for q in T.unroll(tq):
                        for j in T.vectorized(kr):
                            s[q, kc * kr + j] = T.Select(
                                kc * kr + j < HI[PTR[tile(task)] + g, q],
                                reg[q, j] * T.float32(scale),
                                neg_inf,
                            )
                # online softmax over the segment's register tiles
                for q in T.serial(tq):
                    for lane in T.vectorized(lanes):
                        part[lane] = stats[q, 0]
                    for jv in T.serial((LEN[PTR[tile(task)] + g] + (kr - 1)) // kr * (kr // lanes)):
                        for lane in T.vectorized(lanes):
                            part[lane] = T.max(part[lane], s[q, jv * lanes + lane])
                    stats[q, 2] = stats[q, 0]
                    for lane in T.serial(lanes):
                        stats[q, 2] = T.max(stats[q, 2], part[lane])
                    stats[q, 3] = fast_exp(stats[q, 0] - safe(stats[q, 2]))
                    for lane in T.vectorized(lanes):
                        part[lane] = zero
                    for jv in T.serial((LEN[PTR[tile(task)] + g] + (kr - 1)) // kr * (kr // lanes)):
                        for lane in T.vectorized(lanes):
                            s[q, jv * lanes + lane] = fast_exp(s[q, jv * lanes + lane] - safe(stats[q, 2]))
                            part[lane] = part[lane] + s[q, jv * lanes + lane]
                    stats[q, 1] = stats[q, 1] * stats[q, 3]
                    for lane in T.serial(lanes):
                        stats[q, 1] = stats[q, 1] + part[lane]
                    stats[q, 0] = stats[q, 2]
                # acc = acc * rescale + P V over the segment's keys, DV columns in registers
                for c in T.serial(dv_ // dvc):
                    chunk = T.alloc_buffer((tq, dvc), f32)
                    for q in T.unroll(tq):
                        for j in T.vectorized(dvc):
                            chunk[q, j] = acc[q, c * dvc + j] * stats[q, 3]
                    for kk in T.serial(LEN[PTR[tile(task)] + g]):
                        for q in T.unroll(tq):
                            for jv in T.unroll(dvc // lanes):
                                for lane in T.vectorized(lanes):
                                    chunk[q, jv * lanes + lane] = (
                                        chunk[q, jv * lanes + lane]
                                        + s[q, kk]
                                        * V[
                                            batch(task),
                                            head(task),
                                            START[PTR[tile(task)] + g] + kk,
                                            c * dvc + jv * lanes + lane,
                                        ]
                                    )
                    for q in T.unroll(tq):
                        for j in T.vectorized(dvc):
                            acc[q, c * dvc + j] = chunk[q, j]
            for q in T.serial(T.min(tq, n_ - tile(task) * tq)):
                for j in T.vectorized(dv_):
                    Y[batch(task), head(task), QO[tile(task) * tq + q], j] = T.Select(
                        stats[q, 1] > zero, acc[q, j] / stats[q, 1], zero
                    )

    return kernel
