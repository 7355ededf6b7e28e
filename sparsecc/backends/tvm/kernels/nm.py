"""N:M structured linear kernels: Y[m, out] = X[m, in] @ W.T (+ bias), W known at compile time.

Stored entry j of row o sits in column (j // n) * m + indices[o, j], so every row has
the same static trip count and the kernel is a dense gather-FMA loop.

CPU schedule: as in the CSR kernel, X is transposed into XT[in, m_padded] and each
entry becomes a broadcast-FMA over MT tokens. R rows form a register tile
acc[R, MT]; they walk the M-groups together, so the R*n entries of one group read
at most M distinct XT rows (all in L1). The groups are split into chunks of GC
groups whose XT slice (GC*M x MT floats) fits L1; a row block of RB rows passes
over one chunk before the next, with partial sums parked in a small buffer.
Values and positions are pre-packed at compile time as [out/R, groups, R, n] so the
inner loop reads them sequentially; positions stay uint8 (5 bytes per entry).

CUDA schedule: one thread per (token, output row), the token's X row staged in
shared memory; values are packed [k, out] so a warp's loads are coalesced.
"""

from __future__ import annotations

import logging

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel
from sparsecc.ops.formats import NmWeight

logger = logging.getLogger(__name__)

L1_BYTES = 32 * 1024  # budget for the XT slice of one chunk
ROW_BLOCK = 64  # rows per parallel task
ACC_VECTORS = 16  # accumulator vectors per register tile (AVX-512 and NEON have 32 registers)
CUDA_THREADS = 128


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _largest_divisor_at_most(value: int, limit: int) -> int:
    return next(d for d in range(max(1, min(limit, value)), 0, -1) if value % d == 0)


def default_tiles(weight: NmWeight, m: int, lanes: int) -> dict[str, int]:
    """R rows x MT tokens of accumulators (ACC_VECTORS vectors), GC groups per chunk, RB rows per task."""
    out, inp = weight.shape
    mt = min(4 * lanes, _round_up(m, lanes))
    rows = _largest_divisor_at_most(out, max(1, ACC_VECTORS // (mt // lanes)))
    groups = inp // weight.m
    gc = _largest_divisor_at_most(groups, max(1, L1_BYTES // (4 * mt * weight.m)))
    rb = rows * _largest_divisor_at_most(out // rows, max(1, ROW_BLOCK // rows))
    return {"R": rows, "MT": mt, "GC": gc, "RB": rb}


def pack(weight: NmWeight, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """values and in-group positions as [out/R, groups, R, n] (float32, uint8)."""
    out, inp = weight.shape
    groups = inp // weight.m
    shape = (out // rows, rows, groups, weight.n)
    values = weight.values.reshape(shape).transpose(0, 2, 1, 3)
    positions = weight.indices.reshape(shape).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(values, np.float32), np.ascontiguousarray(positions, np.uint8)


def nm_linear_cpu(m: int, weight: NmWeight, tiles: dict[str, int], name: str = "main"):
    """PrimFunc (X[m, in], values[out/R, G, R, n], positions[out/R, G, R, n] u8, bias[out], Y[m, out])."""
    from tvm.script import tirx as T

    out, inp = weight.shape
    n, group = weight.n, weight.m
    groups = inp // group
    rows, mt, gc, rb = tiles["R"], tiles["MT"], tiles["GC"], tiles["RB"]
    m_padded = _round_up(m, mt)
    n_tiles, n_chunks = m_padded // mt, groups // gc

    @T.prim_func
    def kernel(
        X: T.Buffer((m, inp), "float32"),
        values: T.Buffer((out // rows, groups, rows, n), "float32"),
        positions: T.Buffer((out // rows, groups, rows, n), "uint8"),
        bias: T.Buffer((out,), "float32"),
        Y: T.Buffer((m, out), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": name, "tirx.is_scheduled": True})
        XT = T.alloc_buffer((n_tiles, inp, mt), "float32")
        for k in T.parallel(inp):
            for tile, t in T.grid(n_tiles, mt):
                XT[tile, k, t] = T.if_then_else(
                    tile * mt + t < m, X[T.min(tile * mt + t, m - 1), k], T.float32(0)
                )
        for blk in T.parallel(out // rb):
            part = T.alloc_buffer((rb, mt), "float32")
            for tile in T.serial(n_tiles):
                for c in T.serial(n_chunks):
                    for rt in T.serial(rb // rows):
                        acc = T.alloc_buffer((rows, mt), "float32")
                        for r in T.unroll(rows):
                            for t in T.vectorized(mt):
                                acc[r, t] = T.if_then_else(
                                    c == 0, bias[blk * rb + rt * rows + r], part[rt * rows + r, t]
                                )
                        for g in T.serial(gc):
                            for r in T.unroll(rows):
                                for j in T.unroll(n):
                                    for t in T.vectorized(mt):
                                        acc[r, t] = (
                                            acc[r, t]
                                            + XT[
                                                tile,
                                                (c * gc + g) * group
                                                + T.Cast(
                                                    "int32",
                                                    positions[(blk * rb) // rows + rt, c * gc + g, r, j],
                                                ),
                                                t,
                                            ]
                                            * values[(blk * rb) // rows + rt, c * gc + g, r, j]
                                        )
                        if c == n_chunks - 1:
                            for r in T.serial(rows):
                                for t in T.serial(mt):
                                    if tile * mt + t < m:
                                        Y[tile * mt + t, blk * rb + rt * rows + r] = acc[r, t]
                        else:
                            for r in T.unroll(rows):
                                for t in T.vectorized(mt):
                                    part[rt * rows + r, t] = acc[r, t]

    return kernel


def nm_linear_cuda(m: int, weight: NmWeight, threads: int, name: str = "main"):
    """PrimFunc (X[m, in], values[k, out], positions[k, out] u8, bias[out], Y[m, out]), k = in*n/m."""
    from tvm.script import tirx as T

    out, inp = weight.shape
    n, group = weight.n, weight.m
    kept = inp // group * n
    n_blocks = -(-out // threads)

    @T.prim_func
    def kernel(
        X: T.Buffer((m, inp), "float32"),
        values: T.Buffer((kept, out), "float32"),
        positions: T.Buffer((kept, out), "uint8"),
        bias: T.Buffer((out,), "float32"),
        Y: T.Buffer((m, out), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": name, "tirx.is_scheduled": True})
        for token in T.thread_binding(m, thread="blockIdx.y"):
            for bx in T.thread_binding(n_blocks, thread="blockIdx.x"):
                for tx in T.thread_binding(threads, thread="threadIdx.x"):
                    xs = T.alloc_buffer((inp,), "float32", scope="shared")
                    acc = T.alloc_buffer((1,), "float32", scope="local")
                    for i in T.serial(-(-inp // threads)):
                        if i * threads + tx < inp:
                            xs[i * threads + tx] = X[token, i * threads + tx]
                    T.tvm_storage_sync("shared")
                    if bx * threads + tx < out:
                        acc[0] = bias[bx * threads + tx]
                        for e in T.serial(kept):
                            acc[0] = (
                                acc[0]
                                + xs[e // n * group + T.Cast("int32", positions[e, bx * threads + tx])]
                                * values[e, bx * threads + tx]
                            )
                        Y[token, bx * threads + tx] = acc[0]

    return kernel


def make_nm_kernel(
    weight: NmWeight, bias: np.ndarray | None, m: int, target_info, tiles: dict | None = None
) -> Kernel:
    """The scheduled N:M kernel for `target_info` (x86, aarch64 or cuda); `tiles` overrides R/MT/GC/RB."""
    out, _ = weight.shape
    bias_array = np.zeros(out, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    flops = 2 * m * weight.values.size
    label = f"nm_{weight.n}_{weight.m}_{target_info.family}"
    if target_info.family == "cuda":
        threads = int((tiles or {}).get("threads", CUDA_THREADS))
        values = np.ascontiguousarray(weight.values.T, np.float32)
        positions = np.ascontiguousarray(weight.indices.T, np.uint8)
        func = nm_linear_cuda(m, weight, threads)
        return Kernel(label, func, [values, positions, bias_array], {"threads": threads}, flops)
    lanes = max(int(target_info.vector_bits) // 32, 1)
    chosen = {**default_tiles(weight, m, lanes), **(tiles or {})}
    groups = weight.shape[1] // weight.m
    if out % chosen["RB"] or chosen["RB"] % chosen["R"] or groups % chosen["GC"]:
        raise ValueError(f"tiles {chosen} must satisfy R | RB | out={out} and GC | groups={groups}")
    values, positions = pack(weight, chosen["R"])
    logger.debug("nm %d:%d %s m=%d tiles=%s", weight.n, weight.m, weight.shape, m, chosen)
    func = nm_linear_cpu(m, weight, chosen)
    return Kernel(label, func, [values, positions, bias_array], chosen, flops)
