"""Unstructured (CSR) decode kernel (1-4 tokens) on x86: 16-bit columns, one vector gather per chunk.

At decode a layer reads each weight byte once per token. The op stores int32 columns (8 B per
non-zero: 50% CSR reads as many bytes as dense); here columns are uint16 (in <= 65536), so an
entry is 6 B and the index bytes are half the value bytes: 50% reads 0.75x, 70% 0.45x the dense
bytes. Each row's entries are padded with zero values to whole chunks of one vector (W lanes):

  parallel over output rows
    for each chunk of W entries of the row     values, columns: two contiguous vector loads
      for each token t                         acc[t] += values * gather(X[t], columns)
    Y[t, row] = bias + the lanes of acc[t]

The gather is the AVX-512 / AVX2 instruction (`vgatherdps`) called as an LLVM intrinsic: a
vector-indexed TIR load is split into W scalar loads. The tokens share the weight loads.
"""

from __future__ import annotations

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel, KernelRule, loop_kind
from sparsecc.ops import CsrFormat, CsrWeight

MAX_TOKENS = 4
MAX_COLUMNS = 1 << 16  # uint16 columns


def pack_rows(weight: CsrWeight, lanes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values [chunks * W] float32, columns [chunks * W] uint16, chunk_ptr [out + 1] int32.

    Row i holds chunks chunk_ptr[i] .. chunk_ptr[i+1]; its last chunk is padded with zero values
    at column 0.
    """
    counts = np.diff(weight.row_ptr.astype(np.int64))
    chunks = -(-counts // lanes)
    chunk_ptr = np.zeros(counts.size + 1, np.int64)
    np.cumsum(chunks, out=chunk_ptr[1:])
    total = max(int(chunk_ptr[-1]), 1) * lanes
    rows = np.repeat(np.arange(counts.size), counts)
    slot = np.arange(weight.nnz) - weight.row_ptr[rows] + chunk_ptr[rows] * lanes
    values, columns = np.zeros(total, np.float32), np.zeros(total, np.uint16)
    values[slot] = weight.values
    columns[slot] = weight.col_indices
    return values, columns, chunk_ptr.astype(np.int32)


def gather(lanes: int, row, columns):
    """X row `row` (a BufferLoad of its first element) at the int32 vector `columns`, as vgatherdps."""
    from tvm.script import tirx as T

    if lanes == 16:
        return T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.mask.gather.dps.512"),
            T.Broadcast(T.float32(0), 16),
            T.address_of(row),
            columns,
            T.Broadcast(T.bool(True), 16),
            T.int32(4),
            dtype="float32x16",
        )
    return T.call_llvm_pure_intrin(
        T.llvm_lookup_intrinsic_id("llvm.x86.avx2.gather.d.ps.256"),
        T.Broadcast(T.float32(0), 8),
        T.address_of(row),
        columns,
        T.Broadcast(T.reinterpret("float32", T.int32(-1)), 8),  # every lane on: sign bits set
        T.int8(4),
        dtype="float32x8",
    )


def csr_gemv(m: int, shape: tuple[int, int], entries: int, lanes: int, parallel_work: int):
    """PrimFunc (X[m, in], values[entries], columns[entries] u16, chunk_ptr[out+1], bias[out], Y[m, out])."""
    from tvm.script import tirx as T

    out, inp = shape
    outer = loop_kind(parallel_work)
    index = f"int32x{lanes}"

    @T.prim_func
    def kernel(
        X: T.Buffer((m, inp), "float32"),
        values: T.Buffer((entries,), "float32"),
        columns: T.Buffer((entries,), "uint16"),
        chunk_ptr: T.Buffer((out + 1,), "int32"),
        bias: T.Buffer((out,), "float32"),
        Y: T.Buffer((m, out), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main", "tirx.is_scheduled": True})
        for row in outer(out):
            acc = T.alloc_buffer((m, lanes), "float32")
            for t in T.unroll(m):
                acc[t, T.ramp(0, 1, lanes)] = T.Broadcast(T.float32(0), lanes)
            for c in T.serial(chunk_ptr[row + 1] - chunk_ptr[row]):
                for t in T.unroll(m):
                    acc[t, T.ramp(0, 1, lanes)] = acc[t, T.ramp(0, 1, lanes)] + values[
                        T.ramp((chunk_ptr[row] + c) * lanes, 1, lanes)
                    ] * gather(
                        lanes, X[t, 0], T.Cast(index, columns[T.ramp((chunk_ptr[row] + c) * lanes, 1, lanes)])
                    )
            for t in T.unroll(m):
                Y[t, row] = bias[row]
                for i in T.serial(lanes):
                    Y[t, row] = Y[t, row] + acc[t, i]

    return kernel


def make_csr_gemv_kernel(
    weight: CsrWeight, bias: np.ndarray | None, m: int, lanes: int, label: str
) -> Kernel:
    values, columns, chunk_ptr = pack_rows(weight, lanes)
    out = weight.shape[0]
    bias = np.zeros(out, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    func = csr_gemv(m, weight.shape, values.size, lanes, m * weight.nnz)
    return Kernel(label, func, [values, columns, chunk_ptr, bias], {"W": lanes}, 2 * m * weight.nnz)


# Useful FLOP rate against the dense GEMV: not measured where it runs (AVX2 hosts). In cache on
# AVX-512 at 50% it took 1.7x the bitmap kernel's time (36 against 21 us, 256x1024, M=1, one
# thread; 2026-12-03, /tmp/hot.py), so it gets about half the bitmap kernel's figure.
CSR_GEMV_EFFICIENCY = 0.2


class CsrGemvCpu(KernelRule):
    """CSR with 1-4 tokens on x86: uint16 columns, one vector gather per chunk of a row."""

    name = "csr_gemv"
    formats = (CsrFormat,)
    summary = "decode kernel: uint16 columns, vgatherdps per chunk of a row"

    def declines(self, fmt, shape, m, target) -> str | None:
        if target.family != "x86" or target.lanes not in (8, 16):
            return f"needs an x86 vector gather (AVX2 or AVX-512); the target is {target.family}"
        if m is None or not 1 <= m <= MAX_TOKENS:
            return f"it takes 1-{MAX_TOKENS} tokens, not {m if m is not None else 'an unknown number'}"
        if shape[1] > MAX_COLUMNS:
            return f"in_features {shape[1]} exceed {MAX_COLUMNS}, the reach of uint16 columns"
        return None

    def efficiency(self, fmt, shape, m, target) -> float:
        return CSR_GEMV_EFFICIENCY

    def label(self, fmt, shape, target) -> str:
        return f"csr_gemv_{target.family}"

    def build(self, weight, bias, m, target, tiles=None) -> Kernel:
        return make_csr_gemv_kernel(
            weight, bias, m, target.lanes, self.label(weight.format, weight.shape, target)
        )
