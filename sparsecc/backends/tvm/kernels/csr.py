"""Unstructured (CSR) linear kernels: Y[m, out] = X[m, in] @ W.T (+ bias), W known at compile time.

CPU schedule (x86 AVX-512 / AVX2, aarch64 NEON): X is transposed once per call into
XT[token tile, in, MT] so one non-zero W[o, k] becomes a broadcast-FMA over a vector
of tokens, `acc[0:MT] += XT[tile, k, 0:MT] * W[o, k]`, with acc held in registers
and Y written once per (row, token tile). Tile-major XT keeps one tile's slice
contiguous (a row stride of 512 B would map it onto half the L1 sets). The
structure is known at compile time, so non-zeros are re-packed:
  - into K-chunks (tile KC): chunk c holds each row's non-zeros with column in
    [c*KC, (c+1)*KC); the loop nest walks (row block | token tile | chunk | row) so
    the KC x MT slice of XT a chunk reads stays in cache while every row of the
    block passes over it, partial sums waiting in a small buffer between chunks.
    On Zen 4 one 48 KiB slice (KC=768, MT=16) beat smaller chunks, so chunks only
    start above XT_SLICE_BYTES (e.g. in_features=3072);
  - with every (chunk, row) segment padded by explicit zeros to a multiple of U, so
    U accumulators run as independent FMA chains without a remainder loop.
Measured (2 threads, 3072x768 at 90%, M=128): ~4x faster than torch dense.

CUDA schedule: one thread per (token, output row); the token's X row is staged in
shared memory, and each thread walks its CSR row. Simple and correct, not tuned.
"""

from __future__ import annotations

import logging

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel
from sparsecc.ops.formats import CsrWeight

logger = logging.getLogger(__name__)

# Largest XT slice (KC x MT floats) one chunk may read. Measured on Zen 4 (32 KiB L1D, 3072x768, 90%):
# one 48 KiB slice beat 16-32 KiB chunks, whose partial-sum traffic cost more than the L1 misses saved.
XT_SLICE_BYTES = 64 * 1024
ROW_BLOCK = 64  # rows per parallel task: the partial-sum buffer is ROW_BLOCK x MT floats
CHAINS = 2  # independent FMA chains per row (MT/lanes vectors x U accumulators); 1 was ~10% slower
CUDA_THREADS = 128


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _largest_divisor_at_most(value: int, limit: int) -> int:
    return next(d for d in range(min(limit, value), 0, -1) if value % d == 0)


def default_tiles(m: int, inp: int, out: int, lanes: int) -> dict[str, int]:
    """MT tokens per tile, KC inputs per chunk (XT slice fits L1), RB rows per task, U accumulators."""
    # One vector: each non-zero then reads one cache line of XT (measured best, 3072x768). Fewer
    # tokens than lanes: the next power of two, so M=1 does not compute 15 padding tokens.
    mt = lanes if m >= lanes else 1 << (m - 1).bit_length()
    kc = inp if inp * mt * 4 <= XT_SLICE_BYTES else max(lanes, XT_SLICE_BYTES // (4 * mt))
    return {
        "MT": mt,
        "KC": kc,
        "RB": _largest_divisor_at_most(out, ROW_BLOCK),
        "U": max(1, CHAINS // max(1, mt // lanes)),
    }


def pack_chunks(weight: CsrWeight, kc: int, unroll: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-order non-zeros by (chunk, row, column): values, columns, and segment pointers.

    Segment s = chunk * out + row spans `ptr[s]:ptr[s+1]`, padded with explicit zeros
    (column 0) to a multiple of `unroll` so the kernel can keep `unroll` independent
    accumulators without a remainder loop. Empty buffers get one unused zero entry
    because TVM cannot bind a zero-sized buffer.
    """
    out, inp = weight.shape
    n_chunks = -(-inp // kc)
    rows = np.repeat(np.arange(out, dtype=np.int64), np.diff(weight.row_ptr))
    cols = weight.col_indices.astype(np.int64)
    segment = (cols // kc) * out + rows
    order = np.lexsort((cols, segment))
    counts = np.bincount(segment, minlength=n_chunks * out)
    padded = -(-counts // unroll) * unroll
    ptr = np.zeros(n_chunks * out + 1, dtype=np.int64)
    np.cumsum(padded, out=ptr[1:])
    # Slot of the i-th non-zero (in packed order): its segment's start plus its rank inside the segment.
    starts = np.repeat(ptr[:-1], counts)
    rank = np.arange(order.size) - np.repeat(np.cumsum(counts) - counts, counts)
    values = np.zeros(max(int(ptr[-1]), 1), np.float32)
    columns = np.zeros(max(int(ptr[-1]), 1), np.int32)
    values[starts + rank] = weight.values[order]
    columns[starts + rank] = cols[order]
    return values, columns, ptr.astype(np.int32)


def csr_linear_cpu(m: int, shape: tuple[int, int], nnz: int, tiles: dict[str, int], name: str = "main"):
    """PrimFunc (X[m, in], values[nnz], columns[nnz], ptr[chunks*out+1], bias[out], Y[m, out])."""
    from tvm.script import tirx as T

    out, inp = shape
    mt, kc, rb, unroll = tiles["MT"], tiles["KC"], tiles["RB"], tiles["U"]
    n_chunks, m_padded = -(-inp // kc), _round_up(m, mt)
    n_tiles, last = m_padded // mt, -(-inp // kc) - 1

    @T.prim_func
    def kernel(
        X: T.Buffer((m, inp), "float32"),
        values: T.Buffer((nnz,), "float32"),
        columns: T.Buffer((nnz,), "int32"),
        ptr: T.Buffer((n_chunks * out + 1,), "int32"),
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
                    for r in T.serial(rb):
                        acc = T.alloc_buffer((unroll, mt), "float32")
                        for t in T.vectorized(mt):
                            acc[0, t] = T.if_then_else(c == 0, bias[blk * rb + r], part[r, t])
                        for u in T.unroll(1, unroll):
                            for t in T.vectorized(mt):
                                acc[u, t] = T.float32(0)
                        # `unroll` independent FMA chains hide the FMA latency of a long row.
                        for e in T.serial(
                            (ptr[c * out + blk * rb + r + 1] - ptr[c * out + blk * rb + r]) // unroll
                        ):
                            for u in T.unroll(unroll):
                                for t in T.vectorized(mt):
                                    acc[u, t] = (
                                        acc[u, t]
                                        + XT[tile, columns[ptr[c * out + blk * rb + r] + e * unroll + u], t]
                                        * values[ptr[c * out + blk * rb + r] + e * unroll + u]
                                    )
                        for u in T.unroll(1, unroll):
                            for t in T.vectorized(mt):
                                acc[0, t] = acc[0, t] + acc[u, t]
                        if c == last:
                            for t in T.serial(mt):
                                if tile * mt + t < m:
                                    Y[tile * mt + t, blk * rb + r] = acc[0, t]
                        else:
                            for t in T.vectorized(mt):
                                part[r, t] = acc[0, t]

    return kernel


def csr_linear_cuda(m: int, shape: tuple[int, int], nnz: int, threads: int, name: str = "main"):
    """PrimFunc (X[m, in], values[nnz], columns[nnz], row_ptr[out+1], bias[out], Y[m, out])."""
    from tvm.script import tirx as T

    out, inp = shape
    n_blocks = -(-out // threads)

    @T.prim_func
    def kernel(
        X: T.Buffer((m, inp), "float32"),
        values: T.Buffer((nnz,), "float32"),
        columns: T.Buffer((nnz,), "int32"),
        row_ptr: T.Buffer((out + 1,), "int32"),
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
                        for e in T.serial(row_ptr[bx * threads + tx + 1] - row_ptr[bx * threads + tx]):
                            acc[0] = (
                                acc[0]
                                + xs[columns[row_ptr[bx * threads + tx] + e]]
                                * values[row_ptr[bx * threads + tx] + e]
                            )
                        Y[token, bx * threads + tx] = acc[0]

    return kernel


def make_csr_kernel(
    weight: CsrWeight, bias: np.ndarray | None, m: int, target_info, tiles: dict | None = None
) -> Kernel:
    """The scheduled CSR kernel for `target_info` (x86, aarch64 or cuda); `tiles` overrides MT/KC/RB."""
    out, inp = weight.shape
    bias_array = np.zeros(out, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    flops = 2 * m * weight.nnz
    if target_info.family == "cuda":
        threads = int((tiles or {}).get("threads", CUDA_THREADS))
        values, columns = weight.values, weight.col_indices.astype(np.int32)
        if values.size == 0:
            values, columns = np.zeros(1, np.float32), np.zeros(1, np.int32)
        func = csr_linear_cuda(m, weight.shape, values.size, threads)
        constants = [values.astype(np.float32), columns, weight.row_ptr.astype(np.int32), bias_array]
        return Kernel("csr_cuda", func, constants, {"threads": threads}, flops)
    lanes = max(int(target_info.vector_bits) // 32, 1)
    chosen = default_tiles(m, inp, out, lanes)
    unknown = set(tiles or {}) - set(chosen)
    if unknown:
        raise ValueError(f"unknown CSR tiles {sorted(unknown)}; known: {', '.join(chosen)}")
    chosen.update({k: int(v) for k, v in (tiles or {}).items()})
    if out % chosen["RB"]:
        raise ValueError(f"tile RB={chosen['RB']} must divide out_features={out}")
    values, columns, ptr = pack_chunks(weight, chosen["KC"], chosen["U"])
    logger.debug("csr %dx%d nnz=%d m=%d tiles=%s", out, inp, weight.nnz, m, chosen)
    func = csr_linear_cpu(m, weight.shape, values.size, chosen)
    return Kernel(f"csr_{target_info.family}", func, [values, columns, ptr, bias_array], chosen, flops)


def csr_tile_space(weight: CsrWeight, m: int, target_info) -> list[dict[str, int]]:
    """Candidate tiles for tuning, the default first; every one is valid for `make_csr_kernel`."""
    if target_info.family == "cuda":
        return [{"threads": t} for t in (CUDA_THREADS, 256, 64)]
    out, inp = weight.shape
    lanes = max(int(target_info.vector_bits) // 32, 1)
    default = default_tiles(m, inp, out, lanes)
    space = [default]
    for mt in sorted({default["MT"], min(2 * lanes, _round_up(m, lanes))}):
        for unroll in (1, 2, 4):
            for kc in sorted({inp, default["KC"], max(lanes, _round_up(inp // 2, lanes))}, reverse=True):
                candidate = {**default, "MT": mt, "U": unroll, "KC": kc}
                if candidate not in space:
                    space.append(candidate)
    return space
