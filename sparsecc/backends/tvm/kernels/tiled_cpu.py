"""The cache-tiled block-sparse CPU kernel: X^T walked in chunks that stay in L1.

The token-vectorised kernel (`blocked_cpu.py`) streams a whole X^T column (all tokens) from
L2 for every block it visits; with unstructured or 1xC sparsity a row shares few columns with
the next, so it runs at L2 bandwidth: 80% CSR at (768, 3072) took 3.9 ms, and 1.7 ms with the
same blocks pointed at 64 columns that fit L1 (2026-12-02, AVX2 EPYC, /tmp/exp/csr_bound.py).
Here the loops are tiled for the caches:

  parallel over (token slab of ST tokens, group of block rows)
    for each chunk of KC inputs          X^T[chunk, slab] (KC x ST floats) stays in L1
      for each block row of the group    its blocks inside the chunk (a range of its CSR row,
        for each tile of MT tokens       columns ascend, so `chunk_ptr` marks where chunks start)
          acc[R, MT] (registers) = Y^T (or bias), += X^T[col, tile] * value per block, -> Y^T

The partial sums go back to Y^T between chunks (an L1/L2 row of the group); that costs a few
vector loads and stores per row and chunk against tens of blocks of FMAs. Written as plain,
hand-scheduled TIR: the tiles (ST, MT, KC) are grid-searched when tuning (`tile_space`).
"""

from __future__ import annotations

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel, KernelRule, loop_kind
from sparsecc.backends.tvm.kernels.blocks import (
    RUN_ROWS,
    as_blocks,
    family_label,
    operands,
    split_rows,
    transpose_tile,
)
from sparsecc.ops import BsrFormat, BsrWeight, CsrFormat

L1_CHUNK_BYTES = 16 * 1024  # X^T bytes of one chunk of one slab: half an L1 data cache


def padded_tokens(m: int, quantum: int) -> int:
    """m rounded up to a multiple of `quantum` tokens (vector lanes, or the token tile MT)."""
    return -(-m // quantum) * quantum


# A wider token tile may pad the tokens by this much: 65 tokens (a ViT's 64 patches and its class
# token) in 1-vector tiles ran a ViT's linears at one FMA chain each, slower than onnxruntime dense
PAD_ALLOWANCE = 1.25


CHUNK_INPUTS = 256  # inputs per chunk: X^T[256, 128 tokens] is 128 KiB, read by every row in turn
MAX_SLAB = 128  # tokens per slab


def default_tiles(weight: BsrWeight, m: int, lanes: int, registers: int, cores: int) -> dict[str, int]:
    """ST, MT, KC (in block columns), G (row groups) and IL (accumulator sets) for one weight.

    Measured (2026-12-02, AVX2 EPYC, 2 threads, M=128, /tmp/exp/tiled.py, min of 5 rounds): for
    CSR and 1x16 at 80-90%, ST=128 / MT=32 / KC=256 inputs ran (768, 3072) in 0.64-0.80x the time
    of the token-vectorised kernel and 0.49-0.75x of onnxruntime dense; KC=128 or 512, ST=32 or
    64 and MT=16 or 64 were slower on most shapes.
    """
    rows, cols = weight.block
    # accumulators: 4 vectors of one row with 16 registers (8 with 32), fewer per row for taller blocks
    per_row = (4 if registers <= 16 else 8) // max(1, -(-rows // 2))
    tight = padded_tokens(m, lanes)
    v = next(
        v
        for v in (8, 4, 2, 1)
        if v <= max(per_row, 1) and (v == 1 or padded_tokens(m, v * lanes) <= PAD_ALLOWANCE * tight)
    )
    mt = v * lanes
    tiles = padded_tokens(m, mt) // mt
    st = max(s * mt for s in range(1, tiles + 1) if tiles % s == 0 and s * mt <= max(MAX_SLAB, mt))
    padded = tiles * mt
    kc = max(1, CHUNK_INPUTS // cols)
    groups = max(1, min(weight.shape[0] // rows, -(-2 * cores // (padded // st))))
    # IL=2 (alternate blocks into two accumulator sets, breaking the FMA latency chain) measured
    # within noise of IL=1 (2026-12-02, AVX2 EPYC, /tmp/exp/tiled.py); it stays a tuning choice
    return {"ST": st, "MT": mt, "KC": kc, "G": groups, "IL": 1}


def chunk_offsets(weight: BsrWeight, kc: int) -> np.ndarray:
    """chunk_ptr[row, c]: where the blocks of block row `row` with column >= c * kc start (absolute)."""
    n_rows = weight.row_ptr.size - 1
    n_chunks = -(-(weight.shape[1] // weight.block[1]) // kc)
    bounds = np.arange(n_chunks + 1) * kc
    out = np.empty((n_rows, n_chunks + 1), np.int32)
    for i in range(n_rows):
        start, end = int(weight.row_ptr[i]), int(weight.row_ptr[i + 1])
        out[i] = start + np.searchsorted(weight.col_indices[start:end], bounds)
    return out


def sorted_columns(weight: BsrWeight) -> BsrWeight:
    """The same weight with columns ascending inside every row (what chunk_offsets needs)."""
    order = np.concatenate(
        [
            weight.row_ptr[i]
            + np.argsort(weight.col_indices[weight.row_ptr[i] : weight.row_ptr[i + 1]], kind="stable")
            for i in range(weight.row_ptr.size - 1)
        ]
        or [np.zeros(0, np.int64)]
    ).astype(np.int64)
    return BsrWeight(
        weight.values[order], weight.col_indices[order], weight.row_ptr, weight.shape, weight.block
    )


def tiled_linear(m: int, weight: BsrWeight, lanes: int, tiles: dict[str, int]):
    """PrimFunc (X[m, in], values[nnzb, C, R], col[nnzb], chunk_ptr[rows, chunks+1], bias[out], Y[m, out])."""
    from tvm import tirx
    from tvm.script import tirx as T

    out, inp = weight.shape
    r_size, c_size = weight.block
    st, mt, kc, groups = tiles["ST"], tiles["MT"], tiles["KC"], tiles["G"]
    il = tiles.get("IL", 1)
    padded = padded_tokens(m, mt)
    if st % mt or padded % st or mt % lanes:
        raise ValueError(
            f"tiled kernel tiles {tiles} invalid for m={m}: MT | ST | {padded} in vectors of {lanes}"
        )
    n_rows = out // r_size
    n_chunks = -(-(inp // c_size) // kc)
    nnzb = max(weight.nnz_blocks, 1)
    slabs = padded // st
    tbx, tby = transpose_tile(inp, padded), transpose_tile(out)
    outer = loop_kind(m * weight.values.size)
    per_group = -(-n_rows // groups)
    groups = -(-n_rows // per_group)

    # index expressions (TVMScript assignments would allocate memory; docs/tvm-notes.md)
    def row(task, i):  # the block row
        return task % groups * per_group + i

    def token(task, tt, t):
        return task // groups * st + tt * mt + t

    def start(chunk_ptr, task, i, c):
        return chunk_ptr[row(task, i), c]

    def count(chunk_ptr, task, i, c):
        return chunk_ptr[row(task, i), c + 1] - chunk_ptr[row(task, i), c]

    def tail(chunk_ptr, task, i, c):
        return chunk_ptr[row(task, i), c + 1] - count(chunk_ptr, task, i, c) % il

    def total(acc, r, t):
        value = tirx.BufferLoad(acc, [0, r, t])
        for h in range(1, il):
            value = value + tirx.BufferLoad(acc, [h, r, t])
        return value

    @T.prim_func
    def kernel(
        X: T.Buffer((m, inp), "float32"),
        data: T.Buffer((nnzb, c_size, r_size), "float32"),
        indices: T.Buffer((nnzb,), "int32"),
        chunk_ptr: T.Buffer((n_rows, n_chunks + 1), "int32"),
        bias: T.Buffer((out,), "float32"),
        Y: T.Buffer((m, out), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main", "tirx.is_scheduled": True})
        XT = T.alloc_buffer((inp, padded), "float32")
        YT = T.alloc_buffer((out, padded), "float32")
        for k0 in outer(inp // tbx):  # tiled transposes: tbx x tbx tiles
            for t0 in T.serial(padded // tbx):
                for k1 in T.serial(tbx):
                    for t1 in T.vectorized(tbx):
                        XT[k0 * tbx + k1, t0 * tbx + t1] = T.if_then_else(
                            t0 * tbx + t1 < m, X[T.min(t0 * tbx + t1, m - 1), k0 * tbx + k1], T.float32(0)
                        )
        for task in outer(slabs * groups):
            for i in T.serial(T.min(per_group, n_rows - task % groups * per_group)):
                for r in T.serial(r_size):
                    for t in T.vectorized(st):
                        YT[row(task, i) * r_size + r, task // groups * st + t] = bias[
                            row(task, i) * r_size + r
                        ]
            for c in T.serial(n_chunks):
                for i in T.serial(T.min(per_group, n_rows - task % groups * per_group)):
                    for tt in T.serial(st // mt):
                        # `il` accumulator sets take alternate blocks: independent FMA chains
                        acc = T.alloc_buffer((il, r_size, mt), "float32")
                        for h in T.unroll(il):
                            for r in T.unroll(r_size):
                                for t in T.vectorized(mt):
                                    acc[h, r, t] = T.if_then_else(
                                        h == 0,
                                        YT[row(task, i) * r_size + r, token(task, tt, t)],
                                        T.float32(0),
                                    )
                        for e2 in T.serial(count(chunk_ptr, task, i, c) // il):
                            for h in T.unroll(il):
                                for cc in T.unroll(c_size):
                                    for r in T.unroll(r_size):
                                        for t in T.vectorized(mt):
                                            acc[h, r, t] = (
                                                acc[h, r, t]
                                                + XT[
                                                    indices[start(chunk_ptr, task, i, c) + e2 * il + h]
                                                    * c_size
                                                    + cc,
                                                    token(task, tt, t),
                                                ]
                                                * data[start(chunk_ptr, task, i, c) + e2 * il + h, cc, r]
                                            )
                        for e in T.serial(count(chunk_ptr, task, i, c) % il):  # the blocks left over
                            for cc in T.unroll(c_size):
                                for r in T.unroll(r_size):
                                    for t in T.vectorized(mt):
                                        acc[0, r, t] = (
                                            acc[0, r, t]
                                            + XT[
                                                indices[tail(chunk_ptr, task, i, c) + e] * c_size + cc,
                                                token(task, tt, t),
                                            ]
                                            * data[tail(chunk_ptr, task, i, c) + e, cc, r]
                                        )
                        for r in T.unroll(r_size):
                            for t in T.vectorized(mt):
                                YT[row(task, i) * r_size + r, token(task, tt, t)] = total(acc, r, t)
        for o0 in outer(out // tby):
            for t in T.serial(m):
                for o1 in T.vectorized(tby):
                    Y[t, o0 * tby + o1] = YT[o0 * tby + o1, t]

    return kernel


def make_tiled_kernel(
    weight: BsrWeight,
    bias: np.ndarray | None,
    m: int,
    lanes: int,
    registers: int,
    cores: int,
    label: str,
    tiles: dict | None = None,
) -> Kernel:
    weight = sorted_columns(weight)
    tiles = {**default_tiles(weight, m, lanes, registers, cores), **(tiles or {})}
    func = tiled_linear(m, weight, lanes, tiles)
    values, indices, _, bias_values = operands(weight, bias)
    constants = [values, indices, chunk_offsets(weight, tiles["KC"]), bias_values]
    return Kernel(label, func, constants, tiles, 2 * m * weight.values.size)


def tiled_tile_space(
    weight: BsrWeight, m: int, lanes: int, registers: int, cores: int
) -> list[dict[str, int]]:
    """Grid-search candidates, the default first: token tile halved or doubled, chunks of 128-512 inputs."""
    base = default_tiles(weight, m, lanes, registers, cores)
    cols = weight.block[1]
    space = [base]
    for mt in (base["MT"] // 2, base["MT"] * 2):
        if mt >= lanes and base["ST"] % mt == 0 and padded_tokens(m, mt) % base["ST"] == 0:
            space.append({**base, "MT": mt})
    for inputs in (128, 512):
        kc = max(1, inputs // cols)
        if kc != base["KC"]:
            space.append({**base, "KC": kc})
    if 2 * weight.block[0] * (base["MT"] // lanes) + 2 <= registers:  # two accumulator sets fit
        space.append({**base, "IL": 2})
    return space


# X^T (in_features x padded tokens, float32) above this stops fitting L2 next to the weights,
# where the token-vectorised kernel streams it from L3 (K=3072 x 128 tokens is 1.5 MB).
XT_L2_BYTES = 1024 * 1024
# Useful FLOP rate against the dense GEMM kernel (about onnxruntime's MatMul), measured 2026-12-02
# on an AVX2 EPYC (2 threads, M=128, /tmp/exp/tiled.py, min of 5 rounds), rounded down: CSR at
# 80-90% 0.25-0.37 by shape, 1x16 at 90% 0.33-0.38, 4x4 at 80-90% with K=3072 0.51-0.56.
ONE_ROW_EFFICIENCY = 0.3
STACKED_EFFICIENCY = 0.45


def _one_row(fmt) -> bool:
    return isinstance(fmt, CsrFormat) or fmt.block[0] == 1


class TiledCpu(KernelRule):
    """CSR and 1xC blocks on CPUs, and any blocks when X^T outgrows L2: the cache-tiled kernel."""

    name = "tiled_cpu"
    formats = (BsrFormat, CsrFormat)
    summary = "cache-tiled block-sparse kernel (X^T in L1-sized chunks, rows in turn)"

    def declines(self, fmt, shape, m, target) -> str | None:
        if target.family == "cuda":
            return "runs on CPUs only"
        if m == 1 and _one_row(fmt):
            return f"one token: 1-row blocks would fill 1 of {target.lanes} vector lanes"
        xt_bytes = shape[1] * padded_tokens(m or 1, target.lanes) * 4
        if not _one_row(fmt) and xt_bytes <= XT_L2_BYTES:
            return f"X^T takes {xt_bytes // 1024} KiB, within L2: the token-vectorised kernel keeps up"
        return None

    def efficiency(self, fmt, shape, m, target) -> float:
        return ONE_ROW_EFFICIENCY if _one_row(fmt) else STACKED_EFFICIENCY

    def label(self, fmt, shape, target) -> str:
        return f"{family_label(fmt, shape[0])}_tiled_{target.family}"

    def build(self, weight, bias, m, target, tiles=None) -> Kernel:
        blocks = self._blocks(weight)
        label = self.label(weight.format, weight.shape, target)
        return make_tiled_kernel(
            blocks, bias, m, target.lanes, target.vector_registers, target.num_cores, label, tiles
        )

    def tile_space(self, weight, m, target) -> list[dict]:
        return tiled_tile_space(
            self._blocks(weight), m, target.lanes, target.vector_registers, target.num_cores
        )

    @staticmethod
    def _blocks(weight) -> BsrWeight:
        blocks = as_blocks(weight)
        rows = blocks.block[0]
        return split_rows(blocks, RUN_ROWS) if rows > RUN_ROWS and rows % RUN_ROWS == 0 else blocks
