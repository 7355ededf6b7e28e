"""Peak memory of `sparsecc sparsify` on a big model stored with external data.

    python bench/bench_memory.py [--gib 1.0] [--layers 4] [--keep DIR]

Generates an MLP of `--layers` square MatMuls (+ Relu) whose weights total about `--gib`
GiB, each with 2:4 zeros (50%), saved as model.onnx + model.onnx.data. Then runs
`sparsecc sparsify model.onnx --spec '*=2:4' -o out.onnx` in a fresh process, with and
without `--no-check`, and prints each run's peak RSS (the kernel's ru_maxrss of that
process, from os.wait4) against the model's weight bytes. The target is about 2x.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from sparsecc.compiler.onnx_save import save_onnx

SPEC = "*=2:4"


def two_four(w: np.ndarray) -> np.ndarray:
    """Zero the two smallest of every four consecutive values along the input axis (in place)."""
    groups = w.reshape(-1, 4)
    smallest = np.argsort(np.abs(groups), axis=1)[:, :2]
    np.put_along_axis(groups, smallest, 0.0, axis=1)
    return w


def generate(path: Path, gib: float, layers: int, opset: int = 23, batch: int = 8) -> int:
    """Write the model; returns its weight bytes."""
    width = int(np.sqrt(gib * 2**30 / (4 * layers))) // 64 * 64
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        # MatMul(x, W) with W [in, out]: 2:4 along the input axis is along rows of W^T
        w = two_four(rng.standard_normal((width, width), dtype=np.float32) * np.float32(width**-0.5))
        inits.append(onnx.numpy_helper.from_array(np.ascontiguousarray(w.T), f"layers.{i}.weight"))
        del w
        nodes.append(helper.make_node("MatMul", [x, f"layers.{i}.weight"], [f"h{i}"]))
        nodes.append(helper.make_node("Relu", [f"h{i}"], [f"a{i}"]))
        x = f"a{i}"
    graph = helper.make_graph(
        nodes,
        "big_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [batch, width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    save_onnx(model, path, external_data_threshold=0)
    return layers * width * width * 4


def measure(argv: list[str]) -> tuple[int, float, int]:
    """(peak RSS bytes, seconds, exit status) of one fresh `sparsecc` process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sparsecc.tools.cli", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        print(stderr[-2000:], file=sys.stderr)
    return usage.ru_maxrss * 1024, time.perf_counter() - started, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gib", type=float, default=1.0, help="weight bytes of the generated model (GiB)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument(
        "--opset", type=int, default=23, help="18: as torch's dynamo exports (converted on load)"
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="write the model and outputs here (default: a temp dir)"
    )
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="sparsecc-bench-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model.onnx"
    weights = generate(model, args.gib, args.layers, args.opset)
    data = sum(p.stat().st_size for p in work.glob("model.onnx*"))
    print(f"model: {model} ({weights / 2**30:.2f} GiB of weights, {data / 2**30:.2f} GiB on disk)")
    print(f"{'run':<28} {'peak RSS':>10} {'x weights':>10} {'seconds':>8}")
    for label, extra in (("sparsify", []), ("sparsify --no-check", ["--no-check"])):
        out = work / "out.onnx"
        peak, seconds, code = measure(["sparsify", str(model), "--spec", SPEC, "-o", str(out), *extra])
        note = "" if code == 0 else f"  (exit {code})"
        print(f"{label:<28} {peak / 2**30:>8.2f} G {peak / weights:>10.2f} {seconds:>8.1f}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
