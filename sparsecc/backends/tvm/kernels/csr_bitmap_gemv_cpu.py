"""Unstructured (CSR) decode kernel (1-4 tokens) with AVX-512: a bitmap per 16 inputs, vexpandps.

At decode a layer reads each weight byte once per token, so index bytes cost as much as value
bytes. Here a CSR row is stored as one 16-bit mask per window of 16 inputs (which inputs are
non-zero) plus its non-zeros in order: 1 bit per weight instead of 16 or 32 per non-zero, so
50% reads 0.53x the dense bytes (uint16 columns: 0.75x, the op's int32 columns: 1.0x) and 70%
0.33x. `vexpandps` (the masked expand-load) places a window's non-zeros in their lanes, so the
rest is the dense GEMV's FMA with X's window; no gather. In cache, at 50% it took 21 us against
36 us for the gather kernel (`csr_gemv_cpu.py`) and 11 us for dense (256x1024, M=1, one thread,
min of 60 runs; 2026-12-03, Xeon AVX-512 (shared host), /tmp/hot.py): per window it costs a
broadcast, a mask test and the expand, whatever the density.

  parallel over groups of R rows        each row's values where CSR has them: R streams
    for each window of 16 inputs
      for each row r of the group       v = expand(values at the row's offset, mask[w, r])
        acc[t, r] += v * X[t, window]   for each token; offset[r] += popcount(mask)
    Y[t, row] = bias + the lanes of acc[t, r]

Rows past `out` (padding to whole groups) have empty masks. The in_features must be whole
windows (X's last window is loaded whole); other shapes take the gather kernel.
"""

from __future__ import annotations

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel, KernelRule, loop_kind
from sparsecc.ops import CsrFormat, CsrWeight

MAX_TOKENS = 4
WINDOW = 16  # inputs per mask: one AVX-512 vector of float32
ACCUMULATORS = 8  # tokens x rows of a group kept in registers; R rows give R independent FMA chains


def rows_per_group(m: int) -> int:
    return max(2, ACCUMULATORS // m)


def pack_bitmap(weight: CsrWeight, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values [nnz] float32 (CSR's, row by row), masks [groups, in/16, R] uint16 (bit i: input
    w*16+i of the row is stored) and row_start [groups * R] int32 (where each row's values start).
    """
    out, inp = weight.shape
    windows, groups = inp // WINDOW, -(-out // rows)
    counts = np.diff(weight.row_ptr.astype(np.int64))
    row_of = np.repeat(np.arange(out), counts)
    columns = weight.col_indices.astype(np.int64)
    bits = np.zeros((groups * rows, windows), np.uint32)
    np.bitwise_or.at(bits, (row_of, columns // WINDOW), np.uint32(1) << (columns % WINDOW).astype(np.uint32))
    masks = bits.reshape(groups, rows, windows).transpose(0, 2, 1).astype(np.uint16)
    # columns ascend inside a row in the values (the op's order; the CPU packers sort them)
    order = np.lexsort((columns, row_of))
    values = np.ascontiguousarray(weight.values[order], np.float32)
    row_start = np.full(groups * rows, weight.nnz, np.int64)  # padding rows: empty, at the end
    row_start[:out] = weight.row_ptr[:-1]
    if values.size == 0:
        values = np.zeros(1, np.float32)
    return values, np.ascontiguousarray(masks), row_start.astype(np.int32)


def csr_bitmap_gemv(m: int, shape: tuple[int, int], entries: int, rows: int, parallel_work: int):
    """PrimFunc (X[m, in], values[entries], masks[groups, in/16, R] u16, row_start[groups*R], bias[out], Y[m, out])."""
    from tvm.script import tirx as T

    out, inp = shape
    windows, groups = inp // WINDOW, -(-out // rows)
    outer = loop_kind(parallel_work)
    lane_bits = T.shift_left(T.Broadcast(T.int32(1), WINDOW), T.ramp(0, 1, WINDOW))

    def expand(first, mask):  # the window's non-zeros from `first` on, in the lanes `mask` sets
        selected = T.bitwise_and(T.Broadcast(T.Cast("int32", mask), WINDOW), lane_bits)
        return T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.masked.expandload.v16f32"),
            T.address_of(first),
            selected != T.Broadcast(T.int32(0), WINDOW),
            T.Broadcast(T.float32(0), WINDOW),
            dtype="float32x16",
        )

    @T.prim_func
    def kernel(
        X: T.Buffer((m, inp), "float32"),
        values: T.Buffer((entries,), "float32"),
        masks: T.Buffer((groups, windows, rows), "uint16"),
        row_start: T.Buffer((groups * rows,), "int32"),
        bias: T.Buffer((out,), "float32"),
        Y: T.Buffer((m, out), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main", "tirx.is_scheduled": True})
        for g in outer(groups):
            acc = T.alloc_buffer((m, rows, WINDOW), "float32")
            row_values = T.alloc_buffer((WINDOW,), "float32")
            offset = T.alloc_buffer((rows,), "int32")
            for r in T.unroll(rows):
                offset[r] = row_start[g * rows + r]
            for t in T.unroll(m):
                for r in T.unroll(rows):
                    acc[t, r, T.ramp(0, 1, WINDOW)] = T.Broadcast(T.float32(0), WINDOW)
            for w in T.serial(windows):
                for r in T.unroll(rows):
                    row_values[T.ramp(0, 1, WINDOW)] = expand(values[offset[r]], masks[g, w, r])
                    for t in T.unroll(m):
                        acc[t, r, T.ramp(0, 1, WINDOW)] = (
                            acc[t, r, T.ramp(0, 1, WINDOW)]
                            + row_values[T.ramp(0, 1, WINDOW)] * X[t, T.ramp(w * WINDOW, 1, WINDOW)]
                        )
                    offset[r] = offset[r] + T.popcount(T.Cast("int32", masks[g, w, r]))
            for r in T.serial(rows):
                if g * rows + r < out:
                    for t in T.unroll(m):
                        Y[t, g * rows + r] = bias[g * rows + r]
                        for i in T.serial(WINDOW):
                            Y[t, g * rows + r] = Y[t, g * rows + r] + acc[t, r, i]

    return kernel


def make_csr_bitmap_kernel(weight: CsrWeight, bias: np.ndarray | None, m: int, label: str) -> Kernel:
    rows = rows_per_group(m)
    values, masks, row_start = pack_bitmap(weight, rows)
    out = weight.shape[0]
    bias = np.zeros(out, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    func = csr_bitmap_gemv(m, weight.shape, values.size, rows, m * weight.shape[0] * weight.shape[1])
    return Kernel(label, func, [values, masks, row_start, bias], {"R": rows}, 2 * m * weight.nnz)


# Useful FLOP rate against the dense GEMV at the same tokens = decode speedup x density. A 1.1B
# Llama layer's linears (M=1, weights streamed from DRAM) ran 1.24x dense at 50% (0.62) and 1.18x
# at 70% (0.35); per shape 1.03-1.81x and 0.87-1.71x (2026-12-03, Xeon AVX-512 VM, 2 threads,
# shared host, bench/bench_decode.py). The cost is per window, not per non-zero, so the figure at
# 50% (the sparsity decoders are pruned to) is kept: it overrates 70% (estimated 2x, measured
# 1.2x), which still chooses this kernel over dense there, as the measurement does.
CSR_BITMAP_EFFICIENCY = 0.6


class CsrBitmapGemvAvx512(KernelRule):
    """CSR with 1-4 tokens on AVX-512: a 16-bit mask per window of 16 inputs, expand-loads."""

    name = "csr_bitmap_gemv"
    formats = (CsrFormat,)
    summary = "decode kernel: a bitmap per 16 inputs, vexpandps + FMA"

    def declines(self, fmt, shape, m, target) -> str | None:
        if target.family != "x86" or target.lanes != WINDOW:
            return "needs AVX-512 (vexpandps)"
        if m is None or not 1 <= m <= MAX_TOKENS:
            return f"it takes 1-{MAX_TOKENS} tokens, not {m if m is not None else 'an unknown number'}"
        if shape[1] % WINDOW:
            return f"in_features {shape[1]} is not a multiple of {WINDOW}"
        return None

    def efficiency(self, fmt, shape, m, target) -> float:
        return CSR_BITMAP_EFFICIENCY

    def stored_bytes(self, fmt, w: np.ndarray) -> int:
        """float32 values, one bit per weight, a row start per row (the op's CSR holds int32 columns)."""
        return int(np.count_nonzero(w)) * 4 + w.size // 8 + w.shape[0] * 4

    def label(self, fmt, shape, target) -> str:
        return f"csr_bitmap_gemv_{target.family}"

    def build(self, weight, bias, m, target, tiles=None) -> Kernel:
        return make_csr_bitmap_kernel(weight, bias, m, self.label(weight.format, weight.shape, target))
