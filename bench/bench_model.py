"""Model benchmark: a BERT-base-sized encoder, sparse through sparsecc+TVM vs dense baselines.

    python bench/bench_model.py [--layers 12] [--threads 2]

12 layers, hidden 768, FFN 3072, 12 heads, seq 128, batch 1. FFN weights pruned to 90%
in 16x1 blocks, attention q/k/v projections to 2:4 (attention.output.dense is matched by
`*.output.dense.weight` and pruned like the FFN). All candidates run the SAME pruned
weights: onnxruntime dense and torch dense on the pruned dense model, TVM dense
(our dense kernels) and TVM sparse. One process, interleaved rounds, 2 threads everywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import common
import numpy as np
import onnx_ir as ir
import torch
from rich.console import Console
from rich.table import Table

import sparsecc
from sparsecc.backends.ort import session
from sparsecc.compiler import api
from sparsecc.models.bert import BertConfig, build_bert
from sparsecc.passes.linear import find_linears

SPEC = (
    "*intermediate.dense.weight=block(16,1)@0.9; *.output.dense.weight=block(16,1)@0.9; *attention.self*=2:4"
)


def load_pruned_weights(module: torch.nn.Module, pruned: ir.Model) -> None:
    """Copy the pruned weights back into the torch module, so torch runs the same numbers."""
    params = dict(module.named_parameters())
    with torch.no_grad():
        for match in find_linears(pruned.graph):
            params[match.name].copy_(torch.from_numpy(match.w()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument(
        "--tune",
        type=int,
        default=0,
        help="also time the sparse model tuned with N trials per kernel (fresh records)",
    )
    args = parser.parse_args()
    torch.set_num_threads(common.THREADS)
    console = Console(width=160)
    config = BertConfig(layers=args.layers, hidden=768, heads=12, ffn=3072, seq=128)
    module, (ids,) = build_bert(config)
    started = time.perf_counter()
    result = api.sparsify_ir(module, SPEC, (ids,), portable=True)
    load_pruned_weights(module, result.model)
    pruned = ir.serde.serialize_model(result.model)
    feeds = result.example_inputs
    console.print(f"pruned in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    sparse = sparsecc.compile(pruned, "existing", example_inputs=feeds)
    dense = sparsecc.compile(pruned, "dense", example_inputs=feeds)
    console.print(f"compiled both in {time.perf_counter() - started:.1f} s")
    candidates = {}
    if args.tune:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as records:
            tuned = sparsecc.compile(
                pruned, "existing", example_inputs=feeds, tune=args.tune, records_path=records
            )
        console.print(
            f"tuned in {time.perf_counter() - started:.1f} s ({tuned.tuning_trials} trials, MetaSchedule + grid search)"
        )
        candidates[f"TVM sparse, tuned ({args.tune} trials)"] = lambda: tuned(x)
    ort = session.make_session(pruned, threads=common.THREADS)
    x = feeds["input_ids"]
    xt = torch.from_numpy(x)
    reference = ort.run(None, {"input_ids": x})[0]
    error = float(np.abs(sparse(x) - reference).max() / np.abs(reference).max())
    with torch.no_grad():
        torch_error = float(np.abs(module(xt).numpy() - reference).max() / np.abs(reference).max())
        times = common.interleaved(
            {
                "onnxruntime dense": lambda: ort.run(None, {"input_ids": x}),
                "torch dense": lambda: module(xt),
                "TVM dense (sparsecc kernels)": lambda: dense(x),
                "TVM sparse (sparsecc)": lambda: sparse(x),
                **candidates,
            },
            rounds=3,
            runs=5,
        )
    table = Table(
        title=f"BERT-base-sized encoder ({args.layers} layers, seq 128, batch 1), fp32, "
        f"{common.THREADS} threads: median ms"
    )
    for column in ("candidate", "ms", "sparse speedup vs it"):
        table.add_column(column, justify="right")
    for name, ms in times.items():
        table.add_row(name, f"{ms:.1f}", f"{ms / times['TVM sparse (sparsecc)']:.2f}x")
    console.print(table)
    formats = {}
    for row in sparse.report:
        formats[row["format"]] = formats.get(row["format"], 0) + 1
    console.print(
        f"layers by format: {formats}; max |sparse - ORT| / max|ORT| = {error:.1e}; "
        f"torch vs ORT {torch_error:.1e}"
    )


if __name__ == "__main__":
    main()
