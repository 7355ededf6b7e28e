"""Probe: CSR (unstructured) and N:M TIR kernels against torch dense, same process, ratios.

Usage: [BENCH_THREADS=2] python bench/probe_csr_nm.py [--target cpu] [--m 128] [--shape 3072 768]
       [--rounds 5] [--nm 2:4,4:8] [--csr-tiles JSON] [--nm-tiles JSON]
Each --*-tiles is a JSON list of tile dicts (null = defaults); every candidate is checked against numpy first.
"""

from __future__ import annotations

import argparse
import json
import os
import time

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
os.environ["TVM_NUM_THREADS"] = str(THREADS)

import numpy as np
import torch
import tvm

from sparsecc.backends.tvm.kernels.csr import make_csr_kernel
from sparsecc.backends.tvm.kernels.nm import make_nm_kernel
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.ops.formats import CsrWeight, NmWeight


def median_ms(fn, runs: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1e3


def nm_prune(w: np.ndarray, n: int, m: int) -> np.ndarray:
    out, inp = w.shape
    groups = np.abs(w).reshape(out, inp // m, m)
    keep = np.argsort(-groups, axis=2)[:, :, :n]
    mask = np.zeros_like(groups, bool)
    np.put_along_axis(mask, keep, True, axis=2)
    return (w.reshape(out, inp // m, m) * mask).reshape(out, inp)


def candidate(kernel, x, dense, target):
    module = tvm.compile(kernel.prim_func, target=target.target)
    dev = tvm.cpu()
    args = [
        tvm.runtime.tensor(a, dev)
        for a in (x, *kernel.constants, np.zeros((x.shape[0], dense.shape[0]), np.float32))
    ]
    module(*args)
    np.testing.assert_allclose(args[-1].numpy(), x @ dense.T, rtol=1e-4, atol=1e-3)
    return lambda: module(*args)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--m", type=int, default=128)
    parser.add_argument("--shape", type=int, nargs=2, default=(3072, 768))
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--csr-tiles", default="[null]")
    parser.add_argument("--nm-tiles", default="[null]")
    parser.add_argument("--nm", default="2:4")
    parser.add_argument(
        "--target", default="cpu", help="a sparsecc target that runs here, e.g. x86_64 (AVX2)"
    )
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    target = resolve_target(args.target)
    rng = np.random.default_rng(0)
    out, inp = args.shape
    x = rng.standard_normal((args.m, inp)).astype(np.float32)
    w = rng.standard_normal((out, inp)).astype(np.float32)
    x_t, w_t = torch.from_numpy(x), torch.from_numpy(w)
    cands = {"torch dense": lambda: torch.nn.functional.linear(x_t, w_t)}
    unstructured = w * (rng.random((out, inp)) >= args.sparsity)
    for tiles in json.loads(args.csr_tiles):
        kernel = make_csr_kernel(CsrWeight.from_dense(unstructured), None, args.m, target, tiles)
        cands[f"csr@{args.sparsity} {kernel.tiles}"] = candidate(kernel, x, unstructured, target)
    for pattern in filter(None, args.nm.split(",")):
        n, m = (int(v) for v in pattern.split(":"))
        structured = nm_prune(w, n, m)
        for tiles in json.loads(args.nm_tiles):
            kernel = make_nm_kernel(NmWeight.from_dense(structured, n, m), None, args.m, target, tiles)
            cands[f"nm {n}:{m} {kernel.tiles}"] = candidate(kernel, x, structured, target)
    results = {name: [] for name in cands}
    for _ in range(args.rounds):
        for name, fn in cands.items():
            results[name].append(median_ms(fn))
    base = float(np.median(results["torch dense"]))
    print(f"M={args.m} (out,in)={tuple(args.shape)} threads={THREADS} load={os.getloadavg()[0]:.2f}")
    for name, values in results.items():
        ms = float(np.median(values))
        print(f"{name:60s} {ms:7.3f} ms  speedup x{base / ms:5.2f}")


if __name__ == "__main__":
    main()
