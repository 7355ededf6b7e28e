"""Decode benchmark: the linear layers of a ~1.1B Llama decoder at 1 token, against memory bandwidth.

    python bench/bench_decode.py [--quick] [--rounds 3] [--tokens 1]    (threads: BENCH_THREADS, default 2)

At decode a layer reads every weight byte once per token, so each kernel is timed on weights
that are not in cache: each contender cycles through copies of its weight arrays totalling
ROTATION_BYTES (a few times the last-level cache), as consecutive layers of a model would.
Shapes (out, in) of TinyLlama-1.1B (hidden 2048, FFN 5632, 32 heads, 4 KV heads of 64):
q/o 2048x2048, k/v 256x2048, gate/up 5632x2048, down 2048x5632. Contenders, fp32:
sparsecc dense GEMV, 2:4 (decode kernel, 2-bit positions), 2:4 through the GEMM permute
kernel (uint8 lanes), CSR at 50% and 70% (decode kernel, uint16 columns), and onnxruntime's
MatMul+Add on the dense weight. Each row: median time, effective GB/s of the bytes the kernel
must read (its weight arrays, bias and X), the fraction of the host's read bandwidth
(bench/bandwidth.py, best of before and after), and speedup against our dense. The last table
weighs the shapes as one decoder layer (q, k, v, o, gate, up, down).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import bandwidth
import common
import numpy as np
import onnx
import tvm
from rich.console import Console
from rich.table import Table

from sparsecc.backends.ort.session import make_session
from sparsecc.backends.tvm.kernels.nm import make_nm_kernel
from sparsecc.backends.tvm.kernels.rules import make_kernel
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.ops import CsrWeight, NmWeight
from sparsecc.sparsity.masks import nm_mask, unstructured_mask

# (name, (out, in), times per decoder layer)
SHAPES = (
    ("q/o proj", (2048, 2048), 2),
    ("k/v proj", (256, 2048), 2),
    ("gate/up", (5632, 2048), 2),
    ("down", (2048, 5632), 1),
)
ROTATION_BYTES = 512 << 20  # 5x the 105 MiB L3 this host reports (at 2.4x, dense read 20% above the probe)
TOLERANCE = 1e-4  # of the output's max magnitude, against numpy in float64


class TvmLayer:
    """One kernel and `copies` copies of its constants, called in turn."""

    def __init__(self, kernel, x: np.ndarray, target):
        self.kernel = kernel
        self.function = tvm.compile(kernel.prim_func, target=target.target).jit()["main"]
        dev = tvm.cpu()
        self.weight_bytes = sum(c.nbytes for c in kernel.constants)
        copies = max(1, -(-ROTATION_BYTES // self.weight_bytes))
        self.x = tvm.runtime.tensor(x, dev)
        self.y = tvm.runtime.tensor(np.zeros((x.shape[0], kernel.constants[-1].shape[0]), np.float32), dev)
        self.sets = [[tvm.runtime.tensor(c, dev) for c in kernel.constants] for _ in range(copies)]
        self.copies = copies

    def __call__(self):
        for constants in self.sets:
            self.function(self.x, *constants, self.y)

    def output(self) -> np.ndarray:
        self.function(self.x, *self.sets[0], self.y)
        return self.y.numpy()


class OrtLayer:
    """onnxruntime MatMul + Add on the dense weight: one session running `copies` such layers.

    One session (one thread pool) for all copies: a session per copy left each pool spinning
    after its run, and hundreds of spinning threads starved every run (60 ms a call).
    """

    def __init__(self, w: np.ndarray, b: np.ndarray, x: np.ndarray):
        self.weight_bytes = w.nbytes + b.nbytes
        self.copies = max(1, -(-ROTATION_BYTES // self.weight_bytes))
        self.session = make_session(linear_model(w, b, x.shape[0], self.copies), common.THREADS)
        self.feed = {"X": x}

    def __call__(self):
        self.session.run(None, self.feed)

    def output(self) -> np.ndarray:
        return self.session.run(["Y0"], self.feed)[0]


def linear_model(w: np.ndarray, b: np.ndarray, m: int, copies: int) -> onnx.ModelProto:
    """`copies` independent MatMul + Add layers on X, each with its own copy of W and b."""
    out, inp = w.shape
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    nodes, outputs, weights = [], [], []
    for i in range(copies):
        nodes += [
            helper.make_node("MatMul", ["X", f"W{i}"], [f"T{i}"]),
            helper.make_node("Add", [f"T{i}", f"B{i}"], [f"Y{i}"]),
        ]
        outputs.append(helper.make_tensor_value_info(f"Y{i}", onnx.TensorProto.FLOAT, [m, out]))
        weights += [
            numpy_helper.from_array(np.ascontiguousarray(w.T), f"W{i}"),
            numpy_helper.from_array(b, f"B{i}"),
        ]
    inputs = [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [m, inp])]
    graph = helper.make_graph(nodes, "linears", inputs, outputs, weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def contenders(shape, m: int, target, rng) -> tuple[dict, dict]:
    """name -> layer, and name -> the dense weight it computes with (for the numpy check)."""
    w = (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
    b = rng.standard_normal(shape[0]).astype(np.float32)
    x = rng.standard_normal((m, shape[1])).astype(np.float32)
    w24 = w * nm_mask(w, 2, 4)
    w50 = w * unstructured_mask(w, 0.5)
    w70 = w * unstructured_mask(w, 0.7)
    nm = NmWeight.from_dense(w24, 2, 4)
    layers = {
        "dense": TvmLayer(make_kernel(w, b, m, target), x, target),
        "2:4": TvmLayer(make_kernel(nm, b, m, target), x, target),
        "2:4 gemm kernel": TvmLayer(make_nm_kernel(nm, b, m, target), x, target),
        "csr 50%": TvmLayer(make_kernel(CsrWeight.from_dense(w50), b, m, target), x, target),
        "csr 70%": TvmLayer(make_kernel(CsrWeight.from_dense(w70), b, m, target), x, target),
        "onnxruntime dense": OrtLayer(w, b, x),
    }
    weights = {"dense": w, "2:4": w24, "2:4 gemm kernel": w24, "csr 50%": w50, "csr 70%": w70}
    weights["onnxruntime dense"] = w
    for name, layer in layers.items():
        want = x.astype(np.float64) @ weights[name].T.astype(np.float64) + b
        err = np.abs(layer.output() - want).max() / np.abs(want).max()
        assert err <= TOLERANCE, f"{name} {shape}: error {err:.2e} of max > {TOLERANCE}"
    return layers, x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="q/o and gate/up only, 2 rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=1, help="M, 1-4")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    shapes = SHAPES[::2] if args.quick else SHAPES
    target = resolve_target("cpu")
    console = Console()
    before = bandwidth.read_bandwidth()
    console.print(f"read bandwidth before: {before:.1f} GB/s ({common.THREADS} threads, 1 GiB sum)")
    rng = np.random.default_rng(0)
    measured = {}
    for label, shape, _ in shapes:
        layers, x = contenders(shape, args.tokens, target, rng)
        times = common.interleaved({name: layer for name, layer in layers.items()}, rounds=rounds, runs=5)
        measured[label] = {
            name: (
                times[name] / layer.copies,
                layer.weight_bytes + x.nbytes,
            )
            for name, layer in layers.items()
        }
        kernels = {name: getattr(layer, "kernel", None) for name, layer in layers.items()}
        measured[label]["_kernels"] = kernels
        del layers
    after = bandwidth.read_bandwidth()
    console.print(f"read bandwidth after: {after:.1f} GB/s")
    peak = max(before, after)  # the best rate seen: contention only lowers it
    report(console, measured, shapes, peak, args.tokens)


def report(console, measured: dict, shapes, peak: float, m: int) -> None:
    for label, shape, _ in shapes:
        rows = measured[label]
        kernels = rows.pop("_kernels")
        dense_ms = rows["dense"][0]
        table = Table(title=f"{label} {shape[0]}x{shape[1]}, M={m}, fp32 (bandwidth {peak:.1f} GB/s)")
        for column in ("contender", "kernel", "ms", "MB read", "GB/s", "of bandwidth", "vs dense"):
            table.add_column(column, justify="left" if column in ("contender", "kernel") else "right")
        for name, (ms, nbytes) in rows.items():
            rate = nbytes / (ms / 1000) / 1e9
            kernel = kernels[name].name if kernels[name] is not None else "MatMul+Add"
            table.add_row(
                name,
                kernel,
                f"{ms:.3f}",
                f"{nbytes / 1e6:.1f}",
                f"{rate:.1f}",
                f"{rate / peak:.0%}",
                f"{dense_ms / ms:.2f}x",
            )
        console.print(table)
    names = list(next(iter(measured.values())).keys())
    table = Table(title="one decoder layer's linears (q, k, v, o, gate, up, down)")
    for column in ("contender", "ms", "vs dense"):
        table.add_column(column, justify="left" if column == "contender" else "right")
    totals = {name: sum(measured[label][name][0] * count for label, _, count in shapes) for name in names}
    for name, total in totals.items():
        table.add_row(name, f"{total:.3f}", f"{totals['dense'] / total:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
