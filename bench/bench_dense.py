"""Dense linear layers: sparsecc's dense kernels against onnxruntime's MatMul and torch, by tokens.

    python bench/bench_dense.py [--tokens 1,8,32,128,512] [--shapes 768x768,3072x768,768x3072]

Y = X W^T + b for BERT-base's shapes at each token count; the kernel the TVM backend picks
(GEMV for 1-4 tokens, the GEMM micro-kernel above). One process, interleaved rounds with a
settle pause, 2 threads everywhere; ratio = onnxruntime / sparsecc (above 1: sparsecc faster).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import common
import numpy as np
import onnx
import onnxruntime as ort
import torch
import tvm
from rich.console import Console
from rich.table import Table

from sparsecc.backends.tvm.env import configure_tvm
from sparsecc.backends.tvm.kernels.rules import make_kernel
from sparsecc.backends.tvm.target import resolve_target


def ort_session(w: np.ndarray, b: np.ndarray) -> ort.InferenceSession:
    out, inp = w.shape
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["X", "W"], ["T"]), onnx.helper.make_node("Add", ["T", "B"], ["Y"])],
        "g",
        [onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, ["M", inp])],
        [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, ["M", out])],
        [onnx.numpy_helper.from_array(np.ascontiguousarray(w.T), "W"), onnx.numpy_helper.from_array(b, "B")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)], ir_version=10)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = common.THREADS, 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="1,8,32,128,512")
    parser.add_argument("--shapes", default="768x768,3072x768,768x3072", help="out x in, comma separated")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    configure_tvm()
    torch.set_num_threads(common.THREADS)
    target = resolve_target("cpu")
    console = Console(width=160)
    table = Table(
        title=f"dense linear, fp32, {common.THREADS} threads, {target.target_dict.get('mcpu')} "
        "(median ms of per-round medians; ratio = baseline / sparsecc)"
    )
    for column in ("out x in", "tokens", "kernel", "onnxruntime", "torch", "sparsecc", "vs ORT", "vs torch"):
        table.add_column(column, justify="right")
    rng = np.random.default_rng(0)
    for text in args.shapes.split(","):
        out, inp = (int(v) for v in text.split("x"))
        w = rng.standard_normal((out, inp)).astype(np.float32)
        b = rng.standard_normal(out).astype(np.float32)
        session = ort_session(w, b)
        wt, bt = torch.from_numpy(w), torch.from_numpy(b)
        for m in (int(v) for v in args.tokens.split(",")):
            x = rng.standard_normal((m, inp)).astype(np.float32)
            kernel = make_kernel(w, b, m, target)
            func = tvm.compile(kernel.prim_func, target=target.target).jit()["main"]
            device = tvm.cpu()
            tensors = [
                tvm.runtime.tensor(a, device) for a in (x, *kernel.constants, np.zeros((m, out), np.float32))
            ]
            func(*tensors)
            error = float(np.abs(tensors[-1].numpy() - (x @ w.T + b)).max())
            assert error < 1e-2, f"{text} m={m}: error {error}"
            xt = torch.from_numpy(x)
            with torch.no_grad():
                times = common.interleaved(
                    {
                        "ort": lambda: session.run(None, {"X": x}),
                        "torch": lambda: torch.nn.functional.linear(xt, wt, bt),
                        "sparsecc": lambda: func(*tensors),
                    },
                    rounds=args.rounds,
                )
            table.add_row(
                text,
                str(m),
                kernel.name,
                f"{times['ort']:.3f}",
                f"{times['torch']:.3f}",
                f"{times['sparsecc']:.3f}",
                f"{times['ort'] / times['sparsecc']:.2f}x",
                f"{times['torch'] / times['sparsecc']:.2f}x",
            )
            console.print(f"[dim]{text} m={m}: {times}[/dim]")
    console.print(table)


if __name__ == "__main__":
    main()
