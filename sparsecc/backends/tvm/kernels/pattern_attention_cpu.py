"""PatternAttention on CPUs: the flash-style step of `flash_cpu.py` over static key lists.

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
  - *groups* of consecutive tiles (at most GROUP_ROWS rows) whose segments are the same key
    ranges (their `hi` may differ): a group is one task, which takes each segment with all its
    tiles in turn, so the segment's K and V are read from memory once per group and then served
    from L1/L2, as the dense kernel's query blocks do.
The masks come from `attention_patterns.pattern_mask` itself, so the plan keeps exactly what
the op's reference keeps (text rows and columns included).

The kernel visits, for one (batch, head, tile group), its segments in turn, each tile of the
group taking one step of the online softmax that the dense kernel runs (`flash_cpu.flash_step`):
scores in KR-key register tiles (a segment costs ceil(len/KR) of them), P.V over the segment's
exact keys. K^T and V come in plan order, K^T padded by KR columns so the last register tile of
a segment never reads past the end.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparsecc.backends.tvm.kernels import loop_kind
from sparsecc.backends.tvm.kernels.attention_cpu import AttentionShape, default_tiles
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
from sparsecc.sparsity.attention_patterns import HeadPattern, TokenLayout, pattern_mask

LONGEST_SEGMENT = 128  # TK: keys per online-softmax step (as the dense kernel's key tile)
GROUP_ROWS = 128  # query rows of a tile group at most (as the dense kernel's query block)


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
    group_ptr: np.ndarray  # [G + 1] int32: group g is tiles group_ptr[g] .. group_ptr[g+1]
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
    def groups(self) -> int:
        return len(self.group_ptr) - 1

    @property
    def permutes_keys(self) -> bool:
        return bool(np.any(self.key_order != np.arange(len(self.key_order))))

    def constants(self) -> list[np.ndarray]:
        """The kernel's table arguments, in parameter order (after Q, KT, V)."""
        return [self.query_order, self.group_ptr, self.seg_ptr, self.seg_start, self.seg_len, self.seg_hi]


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


def plan_keys(
    pattern: HeadPattern, layout: TokenLayout, tq: int, tk: int, kr: int, group_rows: int = GROUP_ROWS
) -> KeyPlan:
    """The key plan of `pattern` over `layout` for query tiles of `tq` rows, segments of at most
    `tk` keys (a multiple of `kr`, the score register tile), groups of at most `group_rows` rows."""
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
    groups = _groups(ptr, starts, lens, max(1, group_rows // tq))
    lens_arr = np.asarray(lens, dtype=np.int32)
    return KeyPlan(
        query_order=rows,
        key_order=k_order.astype(np.int32),
        group_ptr=np.asarray(groups, dtype=np.int32),
        seg_ptr=np.asarray(ptr, dtype=np.int32),
        seg_start=np.asarray(starts, dtype=np.int32),
        seg_len=lens_arr,
        seg_hi=np.asarray(his, dtype=np.int32).reshape(-1, tq),
        tq=tq,
        tk=tk,
        kept=int(keep[:n].sum()),
        computed=int((-(-lens_arr // kr) * kr).sum() * tq),
    )


def _groups(ptr: list[int], starts: list[int], lens: list[int], most: int) -> list[int]:
    """Group pointers: runs of at most `most` consecutive tiles with the same key ranges."""

    def ranges(t):
        return starts[ptr[t] : ptr[t + 1]], lens[ptr[t] : ptr[t + 1]]

    bounds = [0]
    for t in range(1, len(ptr) - 1):
        if t - bounds[-1] >= most or ranges(t) != ranges(bounds[-1]):
            bounds.append(t)
    return [*bounds, len(ptr) - 1]


def pattern_tiles(shape: PatternShape, lanes: int, registers: int) -> dict[str, int]:
    """TQ, KR, DV as the dense kernel's defaults; TK the longest segment. (The plan's tile groups
    take the place of the dense kernel's query blocks.)"""
    dense = default_tiles(shape.dense(), lanes, registers)
    tk = -(-LONGEST_SEGMENT // dense["KR"]) * dense["KR"]
    return {"TQ": dense["TQ"], "TK": tk, "KR": dense["KR"], "DV": dense["DV"]}


def padded_key_columns(tokens: int, tiles: dict[str, int]) -> int:
    """Columns of the K^T argument: the tokens plus one register tile (segments read up to it)."""
    return tokens + tiles["KR"]


def pattern_attention_kernel(shape: PatternShape, plan: KeyPlan, lanes: int, tiles: dict[str, int]):
    """PrimFunc (Q[B,H,N,d], KT[B,H,d,N+KR], V[B,H,N,dv], query_order, group_ptr, seg_ptr, seg_start,
    seg_len, seg_hi, Y[B,H,N,dv]); K^T and V in the plan's key order, zero past N."""
    from tvm import tirx
    from tvm.script import tirx as T

    b_, h_, n_, d_, dv_ = shape.batch, shape.heads, shape.tokens, shape.head_dim, shape.value_dim
    tq, tk, kr, dvc = tiles["TQ"], tiles["TK"], tiles["KR"], tiles["DV"]
    if tq != plan.tq or tk != plan.tk or tk % kr or kr % lanes or dv_ % dvc or dvc % lanes:
        raise ValueError(
            f"pattern attention tiles {tiles} invalid for a plan of TQ={plan.tq}, TK={plan.tk}: KR must "
            f"divide TK, DV the value columns, in vectors of {lanes}"
        )
    q_tiles, groups, segments = plan.query_tiles, plan.groups, len(plan.seg_start)
    group_rows = int(np.diff(plan.group_ptr).max()) * tq
    keys = padded_key_columns(n_, tiles)
    scale = shape.scale
    f32 = "float32"
    init, step = init_rows(group_rows, dv_, lanes), flash_step(tiles, d_, dv_, lanes)
    finish = finish_rows(lanes)
    scratch = scratch_shapes(tiles, lanes)

    # coordinates as expressions (TVMScript assignments would allocate memory)
    def batch(task):
        return task // (h_ * groups)

    def head(task):
        return task // groups % h_

    def group(task):
        return task % groups

    class View:
        """Segment `i` of tile `m` of the task's group (see `flash_cpu.flash_step`)."""

        def __init__(self, Q, KT, V, QO, GP, PTR, START, HI, task, m, i):
            self.Q, self.KT, self.V, self.QO, self.HI = Q, KT, V, QO, HI
            self.b, self.h, self.tile = batch(task), head(task), GP[group(task)] + m
            self.segment = PTR[self.tile] + i
            self.start = START[self.segment]

        def query(self, q, d):
            return self.Q[self.b, self.h, self.QO[self.tile * tq + q], d]

        def key(self, d, j):
            return self.KT[self.b, self.h, d, self.start + j]

        def value(self, j, c):
            return self.V[self.b, self.h, self.start + j, c]

        def score(self, s, q, j):
            """Scaled; -inf for the keys row q drops (all or none of the segment, and those past it)."""
            return tirx.Select(
                j < self.HI[self.segment, q], s * tirx.const(scale, f32), tirx.const(NEG_INF, f32)
            )

    outer = loop_kind(plan.computed * b_ * h_ * d_)

    @T.prim_func
    def kernel(
        Q: T.Buffer((b_, h_, n_, d_), "float32"),
        KT: T.Buffer((b_, h_, d_, keys), "float32"),
        V: T.Buffer((b_, h_, n_, dv_), "float32"),
        QO: T.Buffer((q_tiles * tq,), "int32"),
        GP: T.Buffer((groups + 1,), "int32"),
        PTR: T.Buffer((q_tiles + 1,), "int32"),
        START: T.Buffer((segments,), "int32"),
        LEN: T.Buffer((segments,), "int32"),
        HI: T.Buffer((segments, tq), "int32"),
        Y: T.Buffer((b_, h_, n_, dv_), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main", "tirx.is_scheduled": True})
        for task in outer(b_ * h_ * groups):
            stats = T.alloc_buffer(stats_shape(group_rows, lanes), f32)
            acc = T.alloc_buffer((group_rows, dv_), f32)
            s = T.alloc_buffer(scratch["s"], f32)
            reg = T.alloc_buffer(scratch["reg"], f32)
            chunk = T.alloc_buffer(scratch["chunk"], f32)
            top = T.alloc_buffer(scratch["top"], f32)
            part = T.alloc_buffer(scratch["part"], f32)
            init(stats, acc)
            # the group's tiles share their segments' key ranges: each segment with every tile
            for i in T.serial(PTR[GP[group(task)] + 1] - PTR[GP[group(task)]]):
                for m in T.serial(GP[group(task) + 1] - GP[group(task)]):
                    step(
                        Work(stats, acc, s, reg, chunk, top, part),
                        m * tq,
                        LEN[PTR[GP[group(task)]] + i],
                        View(Q, KT, V, QO, GP, PTR, START, HI, task, m, i),
                    )
            finish(stats, T.min((GP[group(task) + 1] - GP[group(task)]) * tq, n_ - GP[group(task)] * tq))
            for r in T.serial(T.min((GP[group(task) + 1] - GP[group(task)]) * tq, n_ - GP[group(task)] * tq)):
                for j in T.vectorized(dv_):
                    Y[batch(task), head(task), QO[GP[group(task)] * tq + r], j] = normalised(acc, stats, r, j)

    return kernel
