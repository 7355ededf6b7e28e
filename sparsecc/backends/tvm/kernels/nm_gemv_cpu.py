"""N:4 decode kernel (1-4 tokens) on x86: values plus 2-bit positions, decoded in registers.

At decode a layer reads each weight byte once per token, so time is bytes. The GEMM permute
kernel (`nm.py`) stores one uint8 (or int32) lane per kept value: 5 B per entry. Here a
kept value's position inside its group of 4 inputs takes 2 bits, 16 to an int32 word per
output row: 4.25 B per entry, 0.53x the dense bytes for 2:4 instead of 0.63x.

Vectorised over W output rows (W = the vector lanes). A word covers K inputs (2:4: 16 slots,
8 groups, K = 32); every row's slot s lies in the same group g = s // n, so X's group g is
broadcast to each 128-bit lane (a load, `vbroadcastf32x4`), and `vpermilps`, which picks
inside a 128-bit lane by the low 2 bits of each index, takes each row's input straight from
the word shifted right by 2s: per slot one shift, one permute and one FMA per token, no
masking or widening. Measured against placing inputs with a 16-lane `vpermps` (positions
masked, widened and offset per slot): 6.8 against 9.4 us, dense 14.6 us (256x1024, M=1, one
thread, in cache, min of 60; 2026-12-03, Xeon AVX-512 (shared host), /tmp/nm2.py).
A task's OB output vectors are OB separate sequential streams of values (and of words): on
this host a read kernel over 8 streams a thread reached 17.9 GB/s, over one 12.1 (best of 7,
2 threads, 1 GiB; 2026-12-03, /tmp/streams.py). Rows are padded to whole tasks of OB vectors
(zero values); the stores of a ragged last vector are per lane.
"""

from __future__ import annotations

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel, KernelRule, loop_kind
from sparsecc.ops import NmFormat, NmWeight

MAX_TOKENS = 4
GROUP = 4  # inputs per group: one 128-bit lane of float32, what vpermilps picks from
ACCUMULATORS = 8  # tokens x OB output vectors kept in registers
PERMILPS = {16: "llvm.x86.avx512.vpermilvar.ps.512", 8: "llvm.x86.avx.vpermilvar.ps.256"}


def word_inputs(n: int) -> tuple[int, int]:
    """(slots, inputs) one int32 word of 2-bit positions covers for N:4: whole groups of n slots."""
    slots = 16 // n * n
    return slots, slots // n * GROUP


def vectors_per_task(m: int, out: int, window: int) -> int:
    """OB: output vectors per task, dividing the row vectors when one fits (no padding)."""
    fitting = [ob for ob in (4, 2, 1) if ob * m <= ACCUMULATORS]
    vectors = -(-out // window)
    return next((ob for ob in fitting if vectors % ob == 0), fitting[-1])


def pack_positions(weight: NmWeight, window: int, ob: int) -> tuple[np.ndarray, np.ndarray]:
    """values [tasks, OB, in/K, S, W] float32 and words [tasks, OB, in/K, W] int32 (slot s: bits 2s, 2s+1).

    Rows past `out` (padding to whole tasks) hold zero values.
    """
    out, inp = weight.shape
    slots, inputs = word_inputs(weight.n)
    words_per_row = inp // inputs
    padded = -(-out // (window * ob)) * window * ob
    values = np.zeros((padded, words_per_row * slots), np.float32)
    values[:out] = weight.values
    positions = np.zeros((padded, words_per_row, slots), np.uint32)
    positions[:out] = weight.indices.reshape(out, words_per_row, slots)
    words = (positions << (np.arange(slots, dtype=np.uint32) * 2)).sum(axis=2, dtype=np.uint32)
    tasks = padded // (window * ob)
    values = values.reshape(tasks, ob, window, words_per_row, slots).transpose(0, 1, 3, 4, 2)
    words = words.reshape(tasks, ob, window, words_per_row).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(values), np.ascontiguousarray(words).view(np.int32)


def nm_gemv(m: int, weight: NmWeight, window: int, ob: int):
    """PrimFunc (X[m, in], values[tasks, OB, in/K, S, W], words[tasks, OB, in/K, W], bias[out], Y[m, out])."""
    from tvm.script import tirx as T

    out, inp = weight.shape
    n = weight.n
    slots, inputs = word_inputs(n)
    words_per_row, tasks = inp // inputs, -(-out // (window * ob))
    permute, vector = PERMILPS[window], f"float32x{window}"
    outer = loop_kind(m * out * inp // GROUP * n)

    @T.prim_func
    def kernel(
        X: T.Buffer((m, inp), "float32"),
        values: T.Buffer((tasks, ob, words_per_row, slots, window), "float32"),
        words: T.Buffer((tasks, ob, words_per_row, window), "int32"),
        bias: T.Buffer((out,), "float32"),
        Y: T.Buffer((m, out), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main", "tirx.is_scheduled": True})
        for task in outer(tasks):
            acc = T.alloc_buffer((m, ob, window), "float32")
            for t in T.unroll(m):
                for o in T.unroll(ob):
                    acc[t, o, T.ramp(0, 1, window)] = T.Broadcast(T.float32(0), window)
            for p in T.serial(words_per_row):
                for s in T.unroll(slots):
                    for o in T.unroll(ob):
                        for t in T.unroll(m):
                            acc[t, o, T.ramp(0, 1, window)] = acc[t, o, T.ramp(0, 1, window)] + (
                                T.call_llvm_pure_intrin(
                                    T.llvm_lookup_intrinsic_id(permute),
                                    T.Shuffle(
                                        [X[t, T.ramp(p * inputs + s // n * GROUP, 1, GROUP)]]
                                        * (window // GROUP),
                                        list(range(window)),
                                    ),
                                    T.shift_right(
                                        words[task, o, p, T.ramp(0, 1, window)],
                                        T.Broadcast(T.int32(2 * s), window),
                                    ),
                                    dtype=vector,
                                )
                                * values[task, o, p, s, T.ramp(0, 1, window)]
                            )
            for o in T.unroll(ob):
                for t in T.unroll(m):
                    if (task * ob + o + 1) * window <= out:
                        Y[t, T.ramp((task * ob + o) * window, 1, window)] = (
                            acc[t, o, T.ramp(0, 1, window)]
                            + bias[T.ramp((task * ob + o) * window, 1, window)]
                        )
                    else:
                        for i in T.serial(window):
                            if (task * ob + o) * window + i < out:
                                Y[t, (task * ob + o) * window + i] = (
                                    acc[t, o, i] + bias[(task * ob + o) * window + i]
                                )

    return kernel


def make_nm_gemv_kernel(weight: NmWeight, bias: np.ndarray | None, m: int, window: int, label: str) -> Kernel:
    out, _ = weight.shape
    ob = vectors_per_task(m, out, window)
    values, words = pack_positions(weight, window, ob)
    bias = np.zeros(out, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    func = nm_gemv(m, weight, window, ob)
    return Kernel(label, func, [values, words, bias], {"W": window, "OB": ob}, 2 * m * weight.values.size)


# Useful FLOP rate against the dense GEMV at the same tokens = decode speedup x density: 2:4 ran a
# 1.1B Llama layer's linears (q, k, v, o, gate, up, down; M=1, weights streamed from DRAM) 1.52x
# faster than dense, 1.23-1.90x per shape (2026-12-03, Xeon AVX-512 VM, 2 threads, shared host,
# bench/bench_decode.py, medians of 3 interleaved rounds).
NM_GEMV_EFFICIENCY = 0.75


class NmGemvX86(KernelRule):
    """N:4 with 1-4 tokens on x86: 2-bit positions shifted into vpermilps, one FMA per slot and token."""

    name = "nm_gemv"
    formats = (NmFormat,)
    summary = "decode kernel: 2-bit positions, one vpermilps + FMA per slot and token"

    def declines(self, fmt, shape, m, target) -> str | None:
        if target.family != "x86" or target.lanes not in PERMILPS:
            return f"needs x86 vectors (AVX2 or AVX-512); the target is {target.family}"
        if m is None or not 1 <= m <= MAX_TOKENS:
            return f"it takes 1-{MAX_TOKENS} tokens, not {m if m is not None else 'an unknown number'}"
        if fmt.m != GROUP:
            return f"takes N:{GROUP} (a group is one 128-bit lane), not {fmt.n}:{fmt.m}"
        inputs = word_inputs(fmt.n)[1]
        if shape[1] % inputs:
            return f"in_features {shape[1]} is not a multiple of {inputs} (one word of {fmt.n}:4 positions)"
        return None

    def efficiency(self, fmt, shape, m, target) -> float:
        return NM_GEMV_EFFICIENCY

    def label(self, fmt, shape, target) -> str:
        return f"nm_{fmt.n}_{fmt.m}_gemv_{target.family}"

    def build(self, weight, bias, m, target, tiles=None) -> Kernel:
        return make_nm_gemv_kernel(
            weight, bias, m, target.lanes, self.label(weight.format, weight.shape, target)
        )
