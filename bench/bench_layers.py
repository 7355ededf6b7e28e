"""Layer benchmark: one linear layer, dense baselines vs sparsecc's TVM kernels, in one process.

    python bench/bench_layers.py [--quick] [--formats bsr,csr,nm] [--threads 2]

M=128 tokens, fp32, (out, in) in {(768,768), (3072,768), (768,3072)}; sparsity 50..95%
for unstructured (CSR) and each block shape, 2:4 at 50%. Baselines: torch.nn.functional.linear
(oneDNN/MKL), onnxruntime MatMul+Add and DeepSparse 1.8.0 on the same one-layer ONNX model with the
pruned weight (its own virtualenv: bench/deepsparse_env.sh; skipped when absent), same threads.
Prints medians (ms) and speedups.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import common
import deepsparse_peer
import numpy as np
import onnx
import torch
import tvm
from rich.console import Console
from rich.table import Table

from sparsecc.backends.ort import session
from sparsecc.backends.tvm.kernels.rules import make_kernel
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.ops import BsrWeight, CsrWeight, NmWeight
from sparsecc.sparsity.masks import block_mask, nm_mask, unstructured_mask

M = 128
SHAPES = ((768, 768), (3072, 768), (768, 3072))
SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)
BLOCKS = ((16, 1), (8, 1), (4, 4), (1, 16))


def ort_linear(w: np.ndarray, b: np.ndarray, batch: bool = False) -> onnx.ModelProto:
    """MatMul + Add; `batch`: X as [1, M, in], as in a transformer (DeepSparse's first axis is the batch)."""
    out, inp = w.shape
    lead = [1, M] if batch else [M]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["X", "W"], ["T"]), onnx.helper.make_node("Add", ["T", "B"], ["Y"])],
        "g",
        [onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [*lead, inp])],
        [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [*lead, out])],
        [onnx.numpy_helper.from_array(np.ascontiguousarray(w.T), "W"), onnx.numpy_helper.from_array(b, "B")],
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)], ir_version=10)


class TvmLayer:
    def __init__(self, weight, bias, target):
        kernel = make_kernel(weight, bias, M, target)
        self.kernel = kernel
        self.module = tvm.compile(kernel.prim_func, target=target.target).jit()
        self.device = tvm.cpu()
        out = weight.shape[0]
        self.args = None
        self.constants = [tvm.runtime.tensor(c, self.device) for c in kernel.constants]
        self.y = tvm.runtime.tensor(np.zeros((M, out), np.float32), self.device)

    def bind(self, x: np.ndarray):
        self.args = [tvm.runtime.tensor(x, self.device), *self.constants, self.y]
        return self

    def __call__(self):
        self.module["main"](*self.args)

    def output(self) -> np.ndarray:
        return self.y.numpy()


def cases(args):
    shapes = [(3072, 768)] if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in text.split("x")) for text in args.shapes.split(",")]
    sparsities = [0.9] if args.quick else SPARSITIES
    if args.sparsities:
        sparsities = [float(v) for v in args.sparsities.split(",")]
    formats = args.formats.split(",")
    for shape in shapes:
        for sparsity in sparsities:
            if "csr" in formats:
                yield shape, "unstructured", sparsity
            if "bsr" in formats:
                for block in BLOCKS:
                    yield shape, f"block {block[0]}x{block[1]}", sparsity
        if "nm" in formats:
            yield shape, "2:4", 0.5


def sparse_weight(kind: str, sparsity: float, w: np.ndarray):
    if kind == "unstructured":
        pruned = w * unstructured_mask(w, sparsity)
        return pruned, CsrWeight.from_dense(pruned)
    if kind == "2:4":
        pruned = w * nm_mask(w, 2, 4)
        return pruned, NmWeight.from_dense(pruned, 2, 4)
    block = tuple(int(v) for v in kind.split()[1].split("x"))
    pruned = w * block_mask(w, block, sparsity)
    return pruned, BsrWeight.from_dense(pruned, block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only (3072, 768) at 90%% (and 2:4)")
    parser.add_argument("--formats", default="bsr,csr,nm")
    parser.add_argument(
        "--sparsities", help="comma separated, e.g. 0.8,0.9 (default: 50..95%%, --quick: 90%%)"
    )
    parser.add_argument("--shapes", help="out x in, comma separated, e.g. 768x768,3072x768")
    args = parser.parse_args()
    torch.set_num_threads(common.THREADS)
    target = resolve_target("cpu")
    rng = np.random.default_rng(0)
    console = Console(width=200)
    table = Table(
        title=f"Linear layer, M={M}, fp32, {common.THREADS} threads, target {target.target_dict['mcpu']} "
        "(median ms; speedup = baseline / sparse)"
    )
    for column in (
        "out x in",
        "pattern",
        "sparsity",
        "kernel",
        "torch dense",
        "ORT dense",
        "TVM dense",
        "DeepSparse",
        "sparse",
        "vs torch",
        "vs ORT",
        "vs DeepSparse",
        "max err",
    ):
        table.add_column(column, justify="right")
    dense_cache = {}
    for (out, inp), kind, sparsity in cases(args):
        if (out, inp) not in dense_cache:
            w = (rng.standard_normal((out, inp)) / np.sqrt(inp)).astype(np.float32)
            b = rng.standard_normal(out).astype(np.float32)
            x = rng.standard_normal((M, inp)).astype(np.float32)
            dense_cache[(out, inp)] = (
                w,
                b,
                x,
                TvmLayer(w, b, target).bind(x),
                session.make_session(ort_linear(w, b), threads=common.THREADS),
            )
        w, b, x, tvm_dense, ort = dense_cache[(out, inp)]
        pruned, weight = sparse_weight(kind, sparsity, w)
        layer = TvmLayer(weight, b, target).bind(x)
        xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
        candidates = {
            "torch": lambda: torch.nn.functional.linear(xt, wt, bt),
            "ort": lambda: ort.run(None, {"X": x}),
            "tvm_dense": tvm_dense,
            "sparse": layer,
        }
        peer = None
        if deepsparse_peer.available():
            import tempfile

            import onnx as onnx_lib

            with tempfile.TemporaryDirectory(prefix="bench-layer-") as work:
                path = os.path.join(work, "layer.onnx")
                onnx_lib.save(ort_linear(pruned, b, batch=True), path)
                peer = deepsparse_peer.DeepSparse(path, {"X": x[None]}, threads=common.THREADS)
            candidates["deepsparse"] = peer
        with torch.no_grad():
            times = common.interleaved(candidates)
        if peer is not None:
            peer.close()
        layer()
        error = float(np.abs(layer.output() - (x @ pruned.T + b)).max())
        table.add_row(
            f"{out}x{inp}",
            kind,
            f"{sparsity:.0%}",
            layer.kernel.name,
            f"{times['torch']:.3f}",
            f"{times['ort']:.3f}",
            f"{times['tvm_dense']:.3f}",
            f"{times['deepsparse']:.3f}" if "deepsparse" in times else "-",
            f"{times['sparse']:.3f}",
            f"{times['torch'] / times['sparse']:.2f}x",
            f"{times['ort'] / times['sparse']:.2f}x",
            f"{times['deepsparse'] / times['sparse']:.2f}x" if "deepsparse" in times else "-",
            f"{error:.1e}",
        )
        console.print(
            f"[dim]{out}x{inp} {kind} {sparsity:.0%}: sparse {times['sparse']:.3f} ms, "
            f"torch {times['torch']:.3f} ms[/dim]"
        )
    console.print(table)


if __name__ == "__main__":
    main()
