"""STREAM-style memory bandwidth probe: how fast this host streams bytes it has not cached.

    python bench/bandwidth.py [--gib 1]      (threads: BENCH_THREADS, default 2)

A decode kernel reads each weight byte once per token, so its ceiling is the read bandwidth,
not FLOPs. Two TVM kernels at the benchmark's thread count (numpy's reductions are
single-threaded): `read` sums a buffer far larger than the last-level cache (each task
reads STREAMS sequential ranges at once), `copy` is STREAM's Copy (bytes read + written).
`read_bandwidth()` is what bench_decode.py divides by.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import common
import numpy as np

LANES = 16  # float32 lanes of an AVX-512 vector; on AVX2 LLVM splits each into two
# Sequential streams a task reads at once, each with its own add chain. The hardware prefetchers
# follow several streams: 8 reached 17.9 GB/s here, one 12.1 (best of 7, 2 threads, 1 GiB;
# 2026-12-03, Xeon AVX-512 VM (shared host), /tmp/streams.py), and the dense GEMV reads 8 rows.
STREAMS = 8
TASKS = 64  # contiguous ranges: a multiple of any thread count here, and small per-task overhead


def _target():
    from sparsecc.backends.tvm.target import resolve_target

    return resolve_target("cpu").target


def read_kernel(per_task: int):
    """PrimFunc (A[TASKS, STREAMS, per_task/STREAMS], partial[TASKS, LANES]): per-task vector sums of A."""
    from tvm.script import tirx as T

    length = per_task // STREAMS

    @T.prim_func
    def kernel(
        A: T.Buffer((TASKS, STREAMS, length), "float32"), partial: T.Buffer((TASKS, LANES), "float32")
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main"})
        for task in T.parallel(TASKS):
            acc = T.alloc_buffer((STREAMS, LANES), "float32")
            for s in T.unroll(STREAMS):
                acc[s, T.ramp(0, 1, LANES)] = T.Broadcast(T.float32(0), LANES)
            for step in T.serial(length // LANES):
                for s in T.unroll(STREAMS):
                    acc[s, T.ramp(0, 1, LANES)] = (
                        acc[s, T.ramp(0, 1, LANES)] + A[task, s, T.ramp(step * LANES, 1, LANES)]
                    )
            partial[task, T.ramp(0, 1, LANES)] = acc[0, T.ramp(0, 1, LANES)]
            for s in T.serial(STREAMS - 1):
                partial[task, T.ramp(0, 1, LANES)] = (
                    partial[task, T.ramp(0, 1, LANES)] + acc[s + 1, T.ramp(0, 1, LANES)]
                )

    return kernel


def copy_kernel(per_task: int):
    """PrimFunc (A[TASKS, per_task], B[TASKS, per_task]): B = A, vector by vector."""
    from tvm.script import tirx as T

    @T.prim_func
    def kernel(A: T.Buffer((TASKS, per_task), "float32"), B: T.Buffer((TASKS, per_task), "float32")):
        T.func_attr({"tirx.noalias": True, "global_symbol": "main"})
        for task in T.parallel(TASKS):
            for step in T.serial(per_task // LANES):
                B[task, T.ramp(step * LANES, 1, LANES)] = A[task, T.ramp(step * LANES, 1, LANES)]

    return kernel


def _per_task(nbytes: int) -> int:
    quantum = STREAMS * LANES
    return max(quantum, nbytes // 4 // TASKS // quantum * quantum)


def read_bandwidth(nbytes: int = 1 << 30, runs: int = 5) -> float:
    """GB/s (1e9 bytes/s) of summing an `nbytes` buffer, best of `runs` (as STREAM reports); checks the sum."""
    import tvm

    per_task = _per_task(nbytes)
    a = np.random.default_rng(0).random((TASKS, STREAMS, per_task // STREAMS), dtype=np.float32)
    want = a.sum(dtype=np.float64)
    module = tvm.compile(read_kernel(per_task), target=_target())
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a, dev), tvm.runtime.tensor(np.zeros((TASKS, LANES), np.float32), dev)]
    del a
    seconds = min(module.jit().time_evaluator("main", dev, number=1, repeat=runs)(*args).results)
    got = args[1].numpy().sum(dtype=np.float64)
    assert abs(got - want) <= 1e-4 * want, f"read kernel summed {got}, numpy {want}"
    return TASKS * per_task * 4 / seconds / 1e9


def copy_bandwidth(nbytes: int = 1 << 29, runs: int = 5) -> float:
    """GB/s of STREAM Copy over `nbytes` (counted as read + written, as STREAM does), best of `runs`."""
    import tvm

    per_task = _per_task(nbytes)
    a = np.random.default_rng(0).random((TASKS, per_task), dtype=np.float32)
    module = tvm.compile(copy_kernel(per_task), target=_target())
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a, dev), tvm.runtime.tensor(np.zeros_like(a), dev)]
    seconds = min(module.jit().time_evaluator("main", dev, number=1, repeat=runs)(*args).results)
    assert np.array_equal(args[1].numpy()[:, :LANES], a[:, :LANES])
    return 2 * TASKS * per_task * 4 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="read buffer size (copy uses half, twice)")
    args = parser.parse_args()
    nbytes = int(args.gib * (1 << 30))
    print(f"threads {common.THREADS}")
    print(f"read  {read_bandwidth(nbytes):6.1f} GB/s  ({args.gib:g} GiB summed)")
    print(f"copy  {copy_bandwidth(nbytes // 2):6.1f} GB/s  ({args.gib / 2:g} GiB -> {args.gib / 2:g} GiB)")


if __name__ == "__main__":
    main()
