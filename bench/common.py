"""Shared by the benchmarks: thread pinning, interleaved timing, tables."""

from __future__ import annotations

import os
import time

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
os.environ["TVM_NUM_THREADS"] = str(THREADS)
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import numpy as np

SETTLE_SECONDS = 0.5


def median_ms(fn, runs: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1000.0


def interleaved(candidates: dict, rounds: int = 3, runs: int = 10, reduce=np.median) -> dict[str, float]:
    """Median (`reduce`) of per-round medians, rounds interleaved so machine noise hits every candidate alike.

    A candidate is a callable timed here, or an object timing itself (`median_ms(runs)`: a peer
    in another process, such as DeepSparse in its own virtualenv).
    """
    results = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            # torch's OpenMP and onnxruntime's pool spin for a while after their last call (OpenMP:
            # 200 ms); on 2 cores that spinning steals the next candidate's cores, so let it park.
            time.sleep(SETTLE_SECONDS)
            timed = fn.median_ms(runs) if hasattr(fn, "median_ms") else median_ms(fn, runs=runs)
            results[name].append(timed)
    return {name: float(reduce(values)) for name, values in results.items()}
