"""Peak memory of `sparsecc sparsify` on a big model stored with external data, and of `sparsecc.compile`.

    python bench/bench_memory.py [--gib 1.0] [--layers 4] [--embedded] [--spec S] [--runs check,no-check] [--keep DIR]
    python bench/bench_memory.py --compile base|large [--spec S] [--keep DIR]

Generates an MLP of `--layers` square MatMuls (+ Relu) whose weights total about `--gib`
GiB, each with 2:4 zeros (50%), saved as model.onnx + model.onnx.data. Then runs
`sparsecc sparsify model.onnx --spec '*=2:4' -o out.onnx` in a fresh process, with and
without `--no-check`, and prints each run's peak RSS (the kernel's ru_maxrss of that
process: its VmHWM, read as it exits) against the model's weight bytes. The target is about 2x.

`--compile SIZE` exports a transformers BertModel (random seeded weights; base: 12 layers x 768,
large: 24 x 1024; batch 1, 128 tokens) with torch's dynamo exporter, then runs
`sparsecc.compile(model.onnx, spec)` and `CompiledModel.save` in a fresh process with TVM on 2
threads. It prints the peak RSS of each stage (VmHWM, reset between stages through
/proc/self/clear_refs) and the RSS after it, the whole run's peak against the weight bytes, and
the compile seconds. The target is 2.5x.
"""

from __future__ import annotations

import argparse
import json
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


BERT_SIZES = {"base": (768, 12, 12, 3072), "large": (1024, 24, 16, 4096)}  # hidden, layers, heads, ffn
COMPILE_SPEC = "*=unstructured@0.9"

# Exports a seeded BertModel with the dynamo exporter (in its own process: torch's memory stays out
# of the compile's); prints the weight bytes.
_EXPORT = """
import sys, torch, transformers
from sparsecc.models.hf import _classes, export_onnx
hidden, layers, heads, ffn = map(int, sys.argv[2:6])
torch.manual_seed(0)
config = transformers.BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                 intermediate_size=ffn, max_position_embeddings=512, vocab_size=30522)
config._attn_implementation = "sdpa"
module = _classes()["bert"](config, add_pooling_layer=False).eval()
ids = torch.randint(3, config.vocab_size, (1, 128))
export_onnx(module, {"input_ids": ids, "attention_mask": torch.ones(1, 128, dtype=torch.int64)}, sys.argv[1])
print(sum(p.numel() * p.element_size() for p in module.parameters()))
"""

# Runs sparsecc.compile and save, probing memory at each stage: the stage's peak RSS (VmHWM, reset
# after each stage by writing 5 to /proc/self/clear_refs) and the RSS left after it. The probes wrap
# the functions the stages call; nothing in sparsecc changes.
_COMPILE = """
import json, os, sys, time
os.environ.setdefault("TVM_NUM_THREADS", "2")
import tvm
import onnx_ir as ir
import sparsecc
from sparsecc.compiler import api, frontends, pipeline
from sparsecc.backends.tvm import build, importer, selection, runtime
stages = []
def probe(name):
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    stages.append((name, int(status["VmHWM"].split()[0]) << 10, int(status["VmRSS"].split()[0]) << 10))
    open("/proc/self/clear_refs", "w").write("5")
def wrap(owner, attr, name):
    inner = getattr(owner, attr, None)
    if inner is None:  # a stage this version of sparsecc does not have
        return
    def probed(*args, **kwargs):
        try:
            return inner(*args, **kwargs)
        finally:
            probe(name)
    setattr(owner, attr, probed)
wrap(frontends, "resolve_model", "import (frontend)")
wrap(pipeline.Pipeline, "run", "passes")
wrap(ir.external_data, "load_to_model", "weights into memory")
wrap(selection, "select_kernels", "kernel selection")
wrap(importer, "import_onnx", "Relax import")
wrap(tvm, "compile", "tvm.compile")
wrap(build, "lower_relax", "Relax pipeline and schedules")
wrap(build, "build_relax", "Relax build (incl. tvm.compile)")
wrap(build, "build_with_weights", "Relax build (incl. tvm.compile)")
probe("start")
started = time.perf_counter()
compiled = sparsecc.compile(sys.argv[1], sys.argv[2], target="cpu")
seconds = time.perf_counter() - started
started = time.perf_counter()
compiled.save(sys.argv[3])
save_seconds = time.perf_counter() - started
probe("save")
peak = max(hwm for _, hwm, _ in stages)
print(json.dumps({"stages": stages, "seconds": seconds, "save_seconds": save_seconds, "peak": peak}))
"""


def bench_compile(size: str, spec: str, work: Path) -> int:
    """Export BERT-`size` (once per work dir), compile it in a fresh process; print the stages."""
    model = work / f"bert_{size}.onnx"
    weights_file = work / f"bert_{size}.weights"
    if not weights_file.exists():
        out = subprocess.run(
            [sys.executable, "-c", _EXPORT, str(model), *map(str, BERT_SIZES[size])],
            capture_output=True,
            check=True,
        )
        weights_file.write_text(out.stdout.decode().split()[-1])
    weights = int(weights_file.read_text())
    on_disk = sum(p.stat().st_size for p in work.glob(f"bert_{size}.onnx*"))
    print(f"model: {model} ({weights / 2**20:,.0f} MiB of weights, {on_disk / 2**20:,.0f} MiB on disk)")
    env = dict(os.environ, TVM_NUM_THREADS="2")
    package = work / f"bert_{size}.sccpkg"
    proc = subprocess.run(
        [sys.executable, "-c", _COMPILE, str(model), spec, str(package)],
        capture_output=True,
        env=env,
        check=False,
    )
    if proc.returncode:
        print(proc.stderr.decode(errors="replace")[-3000:], file=sys.stderr)
        return proc.returncode
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    print(f"{'stage':<34} {'peak RSS':>10} {'x weights':>10} {'RSS after':>10}")
    for name, hwm, rss in result["stages"]:
        print(f"{name:<34} {hwm / 2**20:>8,.0f} M {hwm / weights:>10.2f} {rss / 2**20:>8,.0f} M")
    print(
        f"compile: {result['seconds']:.1f} s, save {result['save_seconds']:.1f} s; peak RSS {result['peak'] / 2**20:,.0f} MiB = "
        f"{result['peak'] / weights:.2f}x the weights; package {package.stat().st_size / 2**20:,.0f} MiB"
    )
    return 0


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
    parser.add_argument(
        "--compile",
        choices=sorted(BERT_SIZES),
        help=f"measure sparsecc.compile on a dynamo-exported BertModel instead (spec default {COMPILE_SPEC!r})",
    )
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="sparsecc-bench-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.compile:
        return bench_compile(args.compile, COMPILE_SPEC if args.spec == SPEC else args.spec, work)
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
