"""Unstructured (CSR) linear kernels: Y[m, out] = X[m, in] @ W.T (+ bias), W known at compile time.

CPU schedule (x86 AVX-512 / AVX2, aarch64 NEON): X is transposed once per call into
XT[in, m_padded] so one non-zero W[o, k] becomes a broadcast-FMA over a vector of
tokens, `acc[t:t+MT] += XT[k, t:t+MT] * W[o, k]`, with acc held in registers.
Without more care every such FMA streams a fresh XT row from L2 (a 90%-sparse
3072x768 weight touches ~236k XT rows per token tile), so the non-zeros are
re-packed at compile time into K-chunks: chunk c holds, for every output row, the
non-zeros whose column falls in [c*KC, (c+1)*KC). The loop nest walks
(row block | token tile | chunk | row), so the KC x MT slice of XT one chunk reads
stays in L1 while every row of the block passes over it; partial sums of the block
wait in a small buffer between chunks.

CUDA schedule: one thread per (token, output row); the token's X row is staged in
shared memory, and each thread walks its CSR row. Simple and correct, not tuned.
"""

from __future__ import annotations

import logging

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel
from sparsecc.ops.formats import CsrWeight

logger = logging.getLogger(__name__)

L1_BYTES = 32 * 1024  # budget for the XT slice of one chunk (x86 and Neoverse L1D are >= 48 KiB)
ROW_BLOCK = 64  # rows per parallel task: the partial-sum buffer is ROW_BLOCK x MT floats
CUDA_THREADS = 128


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _largest_divisor_at_most(value: int, limit: int) -> int:
    return next(d for d in range(min(limit, value), 0, -1) if value % d == 0)


def default_tiles(m: int, inp: int, out: int, lanes: int) -> dict[str, int]:
    """MT tokens per tile (4 vectors), KC inputs per chunk (XT slice fits L1), RB rows per task."""
    mt = min(4 * lanes, _round_up(m, lanes))
    kc = max(lanes, min(inp, L1_BYTES // (4 * mt)))
    return {"MT": mt, "KC": kc, "RB": _largest_divisor_at_most(out, ROW_BLOCK)}


def pack_chunks(weight: CsrWeight, kc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-order non-zeros by (chunk, row, column): values, columns, and segment pointers.

    Segment s = chunk * out + row spans `ptr[s]:ptr[s+1]`. Empty buffers get one unused
    zero entry because TVM cannot bind a zero-sized buffer.
    """
    out, inp = weight.shape
    n_chunks = -(-inp // kc)
    rows = np.repeat(np.arange(out, dtype=np.int64), np.diff(weight.row_ptr))
    cols = weight.col_indices.astype(np.int64)
    segment = (cols // kc) * out + rows
    order = np.lexsort((cols, segment))
    ptr = np.zeros(n_chunks * out + 1, dtype=np.int32)
    np.cumsum(np.bincount(segment, minlength=n_chunks * out), out=ptr[1:])
    values = np.ascontiguousarray(weight.values[order], dtype=np.float32)
    columns = np.ascontiguousarray(cols[order], dtype=np.int32)
    if values.size == 0:
        values, columns = np.zeros(1, np.float32), np.zeros(1, np.int32)
    return values, columns, ptr


def csr_linear_cpu(m: int, shape: tuple[int, int], nnz: int, tiles: dict[str, int], name: str = "main"):
    """PrimFunc (X[m, in], values[nnz], columns[nnz], ptr[chunks*out+1], bias[out], Y[m, out])."""
    from tvm.script import tirx as T

    out, inp = shape
    mt, kc, rb = tiles["MT"], tiles["KC"], tiles["RB"]
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
                        acc = T.alloc_buffer((mt,), "float32")
                        for t in T.vectorized(mt):
                            acc[t] = T.if_then_else(c == 0, bias[blk * rb + r], part[r, t])
                        for e in T.serial(ptr[c * out + blk * rb + r + 1] - ptr[c * out + blk * rb + r]):
                            for t in T.vectorized(mt):
                                acc[t] = (
                                    acc[t]
                                    + XT[tile, columns[ptr[c * out + blk * rb + r] + e], t]
                                    * values[ptr[c * out + blk * rb + r] + e]
                                )
                        if c == last:
                            for t in T.serial(mt):
                                if tile * mt + t < m:
                                    Y[tile * mt + t, blk * rb + r] = acc[t]
                        else:
                            for t in T.vectorized(mt):
                                part[r, t] = acc[t]

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
    chosen = {**default_tiles(m, inp, out, lanes), **(tiles or {})}
    if out % chosen["RB"]:
        raise ValueError(f"tile RB={chosen['RB']} must divide out_features={out}")
    values, columns, ptr = pack_chunks(weight, chosen["KC"])
    logger.debug("csr %dx%d nnz=%d m=%d tiles=%s", out, inp, weight.nnz, m, chosen)
    func = csr_linear_cpu(m, weight.shape, values.size, chosen)
    return Kernel(f"csr_{target_info.family}", func, [values, columns, ptr, bias_array], chosen, flops)
