"""Every GPU check of the 2:4 tensor-core kernel in one run, for a short GPU lease.

    python3 bench/gpu_check.py --out DIR        # on the GPU machine, from the repository root

Needs (all present in the device image: python3 with torch, CuPy, nvcc; numpy, onnx, onnx-ir):
a CUDA GPU of sm_80 or newer, CuPy (loads the cubin), torch with CUDA (the reference
`F.linear` in fp16/bf16, the peer `torch.sparse.to_sparse_semi_structured`), and nvcc unless the
cubin was built beforehand into `.sparsecc-cache/cuda` (carry that folder: `nm_cuda.build`).
Without a GPU it exits with status 2 after one line saying so.

Sections, each printing its numbers as it goes and into DIR/gpu_check.json:
1. correctness: the kernel against numpy on odd shapes and BERT-base shapes, fp16 and bf16,
   fp32 and half outputs, with bias (tolerance: `ops/precision.TOLERANCE`);
2. timing (CUDA events, median of 5 repeats): ours vs torch `F.linear` (dense, the reference) vs
   `to_sparse_semi_structured` (the peer) on BERT-base shapes, 4096^2 and 8192^2, M = 1..4096;
3. zoo:bert compiled for CUDA vs onnxruntime: needs apache-tvm's compiler, which the device
   image lacks: reported as skipped with that reason unless `import tvm` works.
Exit status 1 when a correctness check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np

CORRECTNESS = [  # (out, in, tokens)
    (16, 32, 8),
    (40, 72, 5),
    (3, 12, 1),
    (64, 128, 17),
    (100, 200, 3),
    (768, 768, 1),
    (768, 768, 128),
    (3072, 768, 33),
    (768, 3072, 64),
]
TIMING_SHAPES = [(768, 768), (3072, 768), (768, 3072), (4096, 4096), (8192, 8192)]  # (N out, K in)
TIMING_M = [1, 16, 128, 512, 2048, 4096]


def find_gpu() -> str | None:
    """Why no usable GPU is here (None: there is one)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "CuPy is not installed (it loads the kernel's cubin)"
    return None


def two_four(out: int, inp: int, rng) -> np.ndarray:
    w = rng.standard_normal((out, inp)).astype(np.float32) / np.sqrt(inp)
    groups = w.reshape(out, inp // 4, 4)
    np.put_along_axis(groups, np.argsort(-np.abs(groups), axis=2)[:, :, 2:], 0.0, axis=2)
    return groups.reshape(out, inp)


def check_correctness(nm_cuda, cubin, log) -> list[dict]:
    import cupy

    from sparsecc.ops import NmWeight
    from sparsecc.ops.precision import TOLERANCE

    rows, rng = [], np.random.default_rng(0)
    for out, inp, m in CORRECTNESS:
        w = two_four(out, inp, rng)
        x = rng.standard_normal((m, inp)).astype(np.float32)
        bias = rng.standard_normal(out).astype(np.float32)
        for dtype in ("float16", "bfloat16"):
            linear = nm_cuda.CupyLinear(nm_cuda.pack_2to4(NmWeight.from_dense(w, 2, 4), dtype), bias, cubin)
            xr = nm_cuda.from_bits(nm_cuda.to_bits(x, dtype), dtype).astype(np.float64)
            wr = nm_cuda.from_bits(nm_cuda.to_bits(w, dtype), dtype).astype(np.float64)
            want = xr @ wr.T + bias
            bits = cupy.asarray(nm_cuda.to_bits(x, dtype))
            for out_dtype in ("float32", "same"):
                y = cupy.asnumpy(linear(bits.view(cupy.float16) if dtype == "float16" else bits, out_dtype))
                y = nm_cuda.from_bits(y, dtype) if y.dtype == np.uint16 else y.astype(np.float32)
                error = float(np.abs(y - want).max() / max(np.abs(want).max(), 1e-30))
                limit = TOLERANCE["float32"] if out_dtype == "float32" else TOLERANCE[dtype]
                row = dict(
                    out=out, inp=inp, m=m, dtype=dtype, out_dtype=out_dtype, error=error, ok=error <= limit
                )
                rows.append(row)
                log(
                    f"  {'ok  ' if row['ok'] else 'FAIL'} {out}x{inp} M={m} {dtype}->{out_dtype}: rel error {error:.2e} (limit {limit:g})"
                )
    return rows


def timed(fn, torch, budget_s: float = 0.02) -> float:
    """Median ms of one call: events around a loop sized to ~budget_s, 5 repeats after warm-up."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    stop.record()
    stop.synchronize()
    once = max(start.elapsed_time(stop), 1e-3)
    loops = int(min(max(budget_s * 1e3 / once, 1), 200))
    samples = []
    for _ in range(5):
        start.record()
        for _ in range(loops):
            fn()
        stop.record()
        stop.synchronize()
        samples.append(start.elapsed_time(stop) / loops)
    return float(np.median(samples))


def time_kernels(nm_cuda, cubin, log, quick: bool) -> list[dict]:
    import cupy
    import torch
    import torch.nn.functional as F

    from sparsecc.ops import NmWeight

    rows, rng = [], np.random.default_rng(0)
    shapes = TIMING_SHAPES[:2] if quick else TIMING_SHAPES
    log(
        f"  {'N x K':>11} {'M':>5} {'dtype':>8} {'dense ms':>9} {'2:4 peer':>9} {'2:4 ours':>9} {'ours/dense':>10} {'peer/dense':>10}"
    )
    for out, inp in shapes:
        w = two_four(out, inp, rng)
        for dtype, tdtype in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
            wt = torch.from_numpy(w).to("cuda", tdtype)
            linear = nm_cuda.CupyLinear(nm_cuda.pack_2to4(NmWeight.from_dense(w, 2, 4), dtype), None, cubin)
            try:
                peer_w, peer_error = torch.sparse.to_sparse_semi_structured(wt), None
            except (RuntimeError, ValueError, NotImplementedError) as error:
                peer_w, peer_error = None, f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
            for m in TIMING_M[:3] if quick else TIMING_M:
                x = torch.randn(m, inp, device="cuda", dtype=tdtype)
                xc = cupy.asarray(x if dtype == "float16" else x.view(torch.int16))
                dense = timed(lambda: F.linear(x, wt), torch)
                ours = timed(lambda: linear(xc, "same"), torch)
                peer, why = None, peer_error
                if peer_w is not None:
                    try:
                        peer = timed(lambda: F.linear(x, peer_w), torch)
                    except (RuntimeError, ValueError, NotImplementedError) as error:
                        why = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
                row = dict(
                    out=out,
                    inp=inp,
                    m=m,
                    dtype=dtype,
                    dense_ms=dense,
                    ours_ms=ours,
                    peer_ms=peer,
                    peer_error=why,
                )
                rows.append(row)
                peer_s = f"{peer:9.4f}" if peer is not None else f"{'n/a':>9}"
                ratio = f"{peer / dense:10.2f}" if peer is not None else f"{'':>10}"
                log(
                    f"  {out:>5}x{inp:<5} {m:>5} {dtype:>8} {dense:9.4f} {peer_s} {ours:9.4f} {ours / dense:10.2f} {ratio}"
                )
                if why and m == TIMING_M[0]:
                    log(f"    peer n/a: {why}")
    return rows


def check_bert(log) -> dict:
    try:
        import tvm  # noqa: F401
    except ImportError:
        why = "apache-tvm (its compiler) is not installed on this machine; compile zoo:bert for cuda needs it"
        log(f"  SKIP zoo:bert vs onnxruntime: {why}")
        return {"skipped": why}
    import sparsecc

    cm = sparsecc.compile("zoo:bert", "*attention.self*=2:4", target="cuda", dtype="float16")
    kernels = sorted({row["kernel"] for row in cm.report})
    log(f"  zoo:bert compiled for cuda: kernels {kernels}; running it on the GPU is not wired up yet")
    return {"kernels": kernels, "ran": False}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_check_out")))
    parser.add_argument("--quick", action="store_true", help="two shapes and M <= 128 in the timing")
    parser.add_argument("--arch", default="sm_90a", help="nvcc -arch for the kernel (default sm_90a)")
    args = parser.parse_args()

    missing = find_gpu()
    if missing:
        print(f"gpu_check: no CUDA device found ({missing}); run this on a GPU machine", flush=True)
        return 2

    import cupy
    import torch

    from sparsecc.backends.tvm.kernels import nm_cuda

    args.out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    log(
        f"device {torch.cuda.get_device_name()} (sm_{''.join(map(str, torch.cuda.get_device_capability()))}); "
        f"torch {torch.__version__}, cupy {cupy.__version__}, numpy {np.__version__}"
    )
    started = time.perf_counter()
    cubin = nm_cuda.build(args.arch, "cubin")
    log(f"kernel: {cubin} ({time.perf_counter() - started:.1f} s incl. nvcc if not cached)")
    results: dict = {"device": torch.cuda.get_device_name(), "cubin": str(cubin)}

    log("1. correctness vs numpy")
    results["correctness"] = check_correctness(nm_cuda, cubin, log)
    failures = [row for row in results["correctness"] if not row["ok"]]
    log("2. timing (ms per call; ratios < 1 are faster than torch dense F.linear)")
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=1))
    results["timing"] = time_kernels(nm_cuda, cubin, log, args.quick)
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=1))
    log("3. zoo:bert")
    results["bert"] = check_bert(log)

    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=1))
    (args.out / "gpu_check.txt").write_text("\n".join(lines) + "\n")
    log(
        f"{len(failures)} correctness failures of {len(results['correctness'])}; {time.perf_counter() - started:.0f} s"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
