"""Peak memory of `sparsecc sparsify` on a big model stored with external data.

    python bench/bench_memory.py [--gib 1.0] [--layers 4] [--embedded] [--spec S] [--runs check,no-check] [--keep DIR]

Generates an MLP of `--layers` square MatMuls (+ Relu) whose weights total about `--gib`
GiB, each with 2:4 zeros (50%), saved as model.onnx + model.onnx.data. Then runs
`sparsecc sparsify model.onnx --spec '*=2:4' -o out.onnx` in a fresh process, with and
without `--no-check`, and prints each run's peak RSS (the kernel's ru_maxrss of that
process: its VmHWM, read as it exits) against the model's weight bytes. The target is about 2x.
"""

from __future__ import annotations

import argparse
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


def generate(
    path: Path, gib: float, layers: int, opset: int = 23, batch: int = 8, embedded: bool = False
) -> int:
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
    save_onnx(model, path, **({} if embedded else {"external_data_threshold": 0}))
    return layers * width * width * 4


# Runs the CLI and writes the process's peak RSS (VmHWM) to the file named first on its command line.
# VmHWM belongs to the address space that exec made, so it counts this run alone; the kernel's
# ru_maxrss (wait4) also counts the pages the child had when forked, i.e. the parent's peak
# (this script's, which builds the model in memory): every run then read the same ~3.3x at 1 GiB.
_LAUNCHER = """
import atexit, sys
def _peak(path=sys.argv[1]):
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    open(path, "w").write(fields["VmHWM"].split()[0])
atexit.register(_peak)
from sparsecc.tools import cli
sys.exit(cli.main(sys.argv[2:]))
"""


def measure(argv: list[str], work: Path) -> tuple[int, float, int]:
    """(peak RSS bytes, seconds, exit status) of one fresh `sparsecc` process."""
    peak_file = work / "peak_kib.txt"
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(peak_file), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if proc.returncode:
        print(proc.stderr.decode(errors="replace")[-2000:], file=sys.stderr)
    return int(peak_file.read_text()) * 1024, time.perf_counter() - started, proc.returncode


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
        "--embedded",
        action="store_true",
        help="weights inside the .onnx (under 2 GB only), not external data: read whole by protobuf",
    )
    parser.add_argument("--spec", default=SPEC, help=f"the spec sparsify applies (default {SPEC!r})")
    parser.add_argument(
        "--runs", default="check,no-check", help="which runs: check, no-check or both (default)"
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="write the model and outputs here (default: a temp dir)"
    )
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="sparsecc-bench-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model.onnx"
    weights = generate(model, args.gib, args.layers, args.opset, embedded=args.embedded)
    data = sum(p.stat().st_size for p in work.glob("model.onnx*"))
    print(f"model: {model} ({weights / 2**30:.2f} GiB of weights, {data / 2**30:.2f} GiB on disk)")
    print(f"{'run':<28} {'peak RSS':>10} {'x weights':>10} {'seconds':>8}")
    runs = {"check": ("sparsify", []), "no-check": ("sparsify --no-check", ["--no-check"])}
    for label, extra in (runs[name.strip()] for name in args.runs.split(",")):
        out = work / "out.onnx"
        for old in work.glob("out.onnx*"):
            old.unlink()
        argv = ["sparsify", str(model), "--spec", args.spec, "-o", str(out), *extra]
        peak, seconds, code = measure(argv, work)
        written = sum(p.stat().st_size for p in work.glob("out.onnx*")) / 2**30
        note = f"  wrote {written:.2f} GiB in {len(list(work.glob('out.onnx*')))} file(s)"
        note += "" if code == 0 else f"  (exit {code})"
        print(f"{label:<28} {peak / 2**30:>8.2f} G {peak / weights:>10.2f} {seconds:>8.1f}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
