"""bf16 benchmark: sparsecc's bf16-weight kernels against its float32 ones, per layer and per model.

    python bench/bench_bf16.py [--layers-only | --model-only] [--model-layers 4] [--shapes 768x768]

Layers: (out, in) in {(768,768), (3072,768), (768,3072)} at M=128 and 256, dense and BSR 16x1 at
90%, each as a float32 and a bf16-weight kernel (`compile(..., dtype="bfloat16")` builds the same),
against torch `F.linear` in float32 and in bf16 (weights and X bf16) and onnxruntime float32
MatMul+Add. Model: a BERT-base-sized zoo encoder (hidden 768, FFN 3072, 12 heads, seq 128; FFN 16x1
blocks at 90%, q/k/v 2:4, as bench_model.py) compiled sparse and dense in float32 and bf16, against
onnxruntime float32 and torch bf16 on the same pruned weights; plus a transformers BertModel
(tests/hf_bert.py) for accuracy. Errors are max |Y - ref| / max |ref| against float32 (float64
numpy for layers, onnxruntime for models). One process, interleaved rounds, 2 threads everywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import bench_layers as layer_bench
import common
import numpy as np
import onnx_ir as ir
import torch
import tvm
from bench_model import SPEC, load_pruned_weights
from rich.console import Console
from rich.table import Table

import sparsecc
from sparsecc.backends.ort import session
from sparsecc.backends.tvm.kernels.rules import make_kernel
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.compiler import api
from sparsecc.models.bert import BertConfig, build_bert
from sparsecc.ops import BsrWeight
from sparsecc.ops.precision import TOLERANCE
from sparsecc.sparsity.masks import block_mask

SHAPES = ((768, 768), (3072, 768), (768, 3072))
TOKENS = (128, 256)


class TvmLayer:
    """One kernel built alone, called on bound tensors."""

    def __init__(self, weight, bias, m, target, dtype):
        self.kernel = make_kernel(weight, bias, m, target, dtype=dtype)
        self.module = tvm.compile(self.kernel.prim_func, target=target.target).jit()
        dev = tvm.cpu()
        self.constants = [tvm.runtime.tensor(c, dev) for c in self.kernel.constants]
        self.y = tvm.runtime.tensor(np.zeros((m, weight.shape[0]), np.float32), dev)
        self.args = None

    def bind(self, x):
        self.args = [tvm.runtime.tensor(x, tvm.cpu()), *self.constants, self.y]
        return self

    def __call__(self):
        self.module["main"](*self.args)

    def output(self):
        return self.y.numpy()


def relative(y, ref) -> float:
    return float(np.abs(np.asarray(y, np.float64) - ref).max() / np.abs(ref).max())


def bench_layers(console, shapes, target) -> None:
    table = Table(title=f"one linear layer, {common.THREADS} threads: median ms (error vs float32)")
    for column in (
        "shape",
        "M",
        "torch fp32",
        "torch bf16",
        "ORT fp32",
        "dense fp32",
        "dense bf16",
        "bf16/fp32 dense",
        "BSR16x1 fp32",
        "BSR16x1 bf16",
        "bf16/fp32 sparse",
        "kernels (bf16)",
    ):
        table.add_column(column, justify="right")
    rng = np.random.default_rng(0)
    for out, inp in shapes:
        w = (rng.standard_normal((out, inp)) / np.sqrt(inp)).astype(np.float32)
        b = rng.standard_normal(out).astype(np.float32) * 0.1
        pruned = w * block_mask(w, (16, 1), 0.9)
        bsr = BsrWeight.from_dense(pruned, (16, 1))
        for m in TOKENS:
            x = rng.standard_normal((m, inp)).astype(np.float32)
            ref_dense = x.astype(np.float64) @ w.T.astype(np.float64) + b
            ref_sparse = x.astype(np.float64) @ pruned.T.astype(np.float64) + b
            layers = {
                "dense fp32": TvmLayer(w, b, m, target, "float32").bind(x),
                "dense bf16": TvmLayer(w, b, m, target, "bfloat16").bind(x),
                "BSR16x1 fp32": TvmLayer(bsr, b, m, target, "float32").bind(x),
                "BSR16x1 bf16": TvmLayer(bsr, b, m, target, "bfloat16").bind(x),
            }
            layer_bench.M = m  # ort_linear's X rows
            ort = session.make_session(layer_bench.ort_linear(w, b), threads=common.THREADS)
            xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
            xb, wb, bb = xt.bfloat16(), wt.bfloat16(), bt.bfloat16()
            with torch.no_grad():
                candidates = {
                    "torch fp32": lambda: torch.nn.functional.linear(xt, wt, bt),
                    "torch bf16": lambda: torch.nn.functional.linear(xb, wb, bb),
                    "ORT fp32": lambda: ort.run(None, {"X": x}),
                    **layers,
                }
                times = common.interleaved(candidates, rounds=3, runs=10)
                torch_bf16 = torch.nn.functional.linear(xb, wb, bb).float().numpy()
            errors = {"torch bf16": relative(torch_bf16, ref_dense)}
            for name, layer in layers.items():
                layer()
                errors[name] = relative(layer.output(), ref_sparse if "BSR" in name else ref_dense)
            cell = {n: f"{t:.3f}" + (f" ({errors[n]:.0e})" if n in errors else "") for n, t in times.items()}
            table.add_row(
                f"{out}x{inp}",
                str(m),
                cell["torch fp32"],
                cell["torch bf16"],
                cell["ORT fp32"],
                cell["dense fp32"],
                cell["dense bf16"],
                f"{times['dense fp32'] / times['dense bf16']:.2f}x",
                cell["BSR16x1 fp32"],
                cell["BSR16x1 bf16"],
                f"{times['BSR16x1 fp32'] / times['BSR16x1 bf16']:.2f}x",
                f"{layers['dense bf16'].kernel.name}, {layers['BSR16x1 bf16'].kernel.name}",
            )
            for name in ("dense bf16", "BSR16x1 bf16"):
                assert errors[name] <= TOLERANCE["bfloat16"], f"{out}x{inp} M={m} {name}: {errors[name]:.1e}"
    console.print(table)


def bench_model(console, n_layers: int) -> None:
    config = BertConfig(layers=n_layers, hidden=768, heads=12, ffn=3072, seq=128)
    module, (ids,) = build_bert(config)
    result = api.sparsify_ir(module, SPEC, (ids,), portable=True)
    load_pruned_weights(module, result.model)
    pruned = ir.serde.serialize_model(result.model)
    feeds = result.example_inputs
    started = time.perf_counter()
    builds = {
        f"TVM {kind} {dtype}": sparsecc.compile(
            pruned, "existing" if kind == "sparse" else "dense", example_inputs=feeds, dtype=dtype
        )
        for kind in ("sparse", "dense")
        for dtype in ("float32", "bfloat16")
    }
    console.print(f"compiled 4 builds in {time.perf_counter() - started:.1f} s")
    x = feeds["input_ids"]
    ort = session.make_session(pruned, threads=common.THREADS)
    reference = ort.run(None, {"input_ids": x})[0].astype(np.float64)
    xt = torch.from_numpy(x)
    module_bf16 = build_bert(config)[0]
    load_pruned_weights(module_bf16, result.model)
    module_bf16 = module_bf16.to(torch.bfloat16)
    with torch.no_grad():
        errors = {name: relative(cm(x), reference) for name, cm in builds.items()}
        errors["torch bf16"] = relative(module_bf16(xt).float().numpy(), reference)
        times = common.interleaved(
            {
                "onnxruntime fp32": lambda: ort.run(None, {"input_ids": x}),
                "torch bf16": lambda: module_bf16(xt),
                **{name: (lambda cm=cm: cm(x)) for name, cm in builds.items()},
            },
            rounds=3,
            runs=5,
        )
    table = Table(
        title=f"BERT-base-sized zoo encoder ({n_layers} layers, seq 128), {common.THREADS} threads: median ms"
    )
    for column in ("candidate", "ms", "error vs ORT fp32"):
        table.add_column(column, justify="right")
    for name, ms in times.items():
        table.add_row(name, f"{ms:.1f}", f"{errors[name]:.1e}" if name in errors else "reference")
    console.print(table)
    sparse32, sparse16 = times["TVM sparse float32"], times["TVM sparse bfloat16"]
    console.print(
        f"bf16 sparse over fp32 sparse: {sparse32 / sparse16:.2f}x; bf16 dense over fp32 dense: "
        f"{times['TVM dense float32'] / times['TVM dense bfloat16']:.2f}x; bf16 sparse over ORT fp32: "
        f"{times['onnxruntime fp32'] / sparse16:.2f}x"
    )
    kernels = {}
    for row in builds["TVM sparse bfloat16"].report:
        kernels[row["kernel"]] = kernels.get(row["kernel"], 0) + 1
    console.print(f"bf16 sparse build, layers by kernel: {kernels}")
    assert errors["TVM sparse bfloat16"] <= TOLERANCE["bfloat16"], errors


def check_hf_bert(console) -> None:
    from tests.hf_bert import make_hf_bert

    model, inputs = make_hf_bert()
    example = (inputs["input_ids"], inputs["attention_mask"])
    with torch.no_grad():
        reference = model(**inputs).last_hidden_state.double().numpy()
    for dtype in ("float32", "bfloat16"):
        cm = sparsecc.compile(model, "dense", example_inputs=example, dtype=dtype)
        out = cm(*(t.numpy() for t in example))
        out = out[0] if isinstance(out, tuple) else out
        error = relative(out, reference)
        console.print(f"transformers BertModel (tests/hf_bert.py), {dtype}: error vs torch fp32 {error:.1e}")
        assert error <= TOLERANCE[dtype], error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers-only", action="store_true")
    parser.add_argument("--model-only", action="store_true")
    parser.add_argument("--model-layers", type=int, default=4, help="encoder layers of the zoo BERT")
    parser.add_argument("--shapes", help="out x in, comma separated, e.g. 768x768,3072x768")
    args = parser.parse_args()
    torch.set_num_threads(common.THREADS)
    console = Console(width=200)
    target = resolve_target("cpu")
    console.print(f"target {target.target_dict}, vdpbf16ps: {target.bf16_dot}")
    shapes = SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in text.split("x")) for text in args.shapes.split(",")]
    if not args.model_only:
        bench_layers(console, shapes, target)
    if not args.layers_only:
        bench_model(console, args.model_layers)
        check_hf_bert(console)


if __name__ == "__main__":
    main()
