"""transformers models as users export them: sparsecc against onnxruntime, torch and DeepSparse.

    python bench/bench_real.py [--models bert-base-dynamo,...] [--configs dense,unstructured90,...]
                               [--rounds 3] [--runs 10] [--profile] [--markdown out.md]

Each model is a transformers model with seeded random weights (`sparsecc.models.hf`), pruned in
torch by a spec (the masks sparsecc's patterns impose), then exported with `torch.onnx.export`
(dynamo at opset 18, or TorchScript at opset 17). Every candidate runs that same file:
onnxruntime, sparsecc (`compile(path, "existing")`), DeepSparse 1.8.0 on an opset-17 copy
(its own virtualenv, bench/deepsparse_env.sh; skipped when absent), and torch on the pruned
module. One process, interleaved rounds with a settle pause, 2 threads everywhere.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import common
import deepsparse_peer
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import sparsecc
from sparsecc.backends.ort import session
from sparsecc.models import hf
from sparsecc.sparsity.spec import SparsitySpec

# name -> spec on torch parameter names; "all weights": every linear weight, and every Conv2d with
# >= CONV_MIN_OUTPUTS outputs (a ResNet's, the configs)
CONFIGS = {
    "dense": None,
    "unstructured90": "unstructured@0.9",
    "unstructured80": "unstructured@0.8",
    "block16x1_90": "block(16,1)@0.9",
    "block4x4_80": "block(4,4)@0.8",
    "ffn1x16_90_qkv24": "*attention.output*=dense; *output.dense*=block(1,16)@0.9; *intermediate*=block(1,16)@0.9; *attention.self*=2:4",
}
DEFAULT_MODELS = "bert-base-dynamo"
LABELS = {
    "dense": "dense",
    "unstructured90": "all weights 90% unstructured",
    "unstructured80": "all weights 80% unstructured",
    "block16x1_90": "all weights 16x1 blocks at 90%",
    "block4x4_80": "all weights 4x4 blocks at 80%",
    "ffn1x16_90_qkv24": "FFN 1x16 blocks at 90%, q/k/v 2:4",
}


# Convolutions with fewer outputs stay dense (the stem's 64 outputs count): the configs
CONV_MIN_OUTPUTS = 64


def linear_weights(module):
    """(parameter name, tensor, transposed?) of every linear layer: nn.Linear and GPT-2's Conv1D,
    and of every Conv2d with >= CONV_MIN_OUTPUTS outputs (its weight flattened to [O, C*kh*kw])."""
    for name, child in module.named_modules():
        if isinstance(child, torch.nn.Linear) or (
            isinstance(child, torch.nn.Conv2d) and child.out_channels >= CONV_MIN_OUTPUTS
        ):
            yield f"{name}.weight", child.weight, False
        elif type(child).__name__ == "Conv1D":  # transformers' GPT-2 layer: weight [in, out]
            yield f"{name}.weight", child.weight, True


def prune(module, spec_text: str | None) -> int:
    """Zero the weights the spec selects, in place; returns how many weights were pruned."""
    if spec_text is None:
        return 0
    spec, count = SparsitySpec.parse(spec_text), 0
    with torch.no_grad():
        for name, weight, transposed in linear_weights(module):
            rule = spec.rule_for(name)
            if rule is None:
                continue
            w = weight.detach().numpy()
            w = w.T if transposed else w.reshape(w.shape[0], -1)
            mask = rule.pattern.keep_mask(np.ascontiguousarray(w))
            if mask is not None:
                mask = mask.T if transposed else mask.reshape(weight.shape)
                weight.mul_(torch.from_numpy(mask.astype(np.float32)))
                count += 1
    return count


TUNED = "sparsecc tuned"  # the --tune build's column


def parse_model(text: str) -> tuple[str, str, str]:
    family, size, exporter = text.split("-")
    return family, size, exporter


def measure(model_name: str, config: str, args, console: Console) -> dict:
    work = tempfile.mkdtemp(prefix="bench-real-")
    try:
        return _measure(model_name, config, args, console, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # two exports of BERT-base are ~0.8 GB


def _measure(model_name: str, config: str, args, console: Console, work: str) -> dict:
    family, size, exporter = parse_model(model_name)
    module, inputs = hf.build(family, size)
    pruned = prune(module, CONFIGS[config])
    path = os.path.join(work, "model.onnx")
    feeds = hf.export_onnx(module, inputs, path, exporter, 18 if exporter == "dynamo" else 17)
    started = time.perf_counter()
    compiled = sparsecc.compile(path, "existing", example_inputs=feeds)
    compile_s = time.perf_counter() - started
    tuned, tuned_s = None, None
    if args.tune:
        started = time.perf_counter()  # fresh records: every trial runs
        tuned = sparsecc.compile(
            path, "existing", example_inputs=feeds, tune=args.tune, records_path=os.path.join(work, "records")
        )
        tuned_s = time.perf_counter() - started
    ort = session.make_session(path, threads=common.THREADS)
    reference = ort.run(None, feeds)[0]
    error = float(np.abs(compiled(**feeds) - reference).max() / np.abs(reference).max())
    torch_args = tuple(inputs.values())
    candidates = {
        "onnxruntime": lambda: ort.run(None, feeds),
        "torch": lambda: module(*torch_args),
        "sparsecc": lambda: compiled(**feeds),
    }
    if tuned is not None:
        candidates[TUNED] = lambda: tuned(**feeds)
    peer, ds_error = None, None
    if deepsparse_peer.available():
        # DeepSparse reads opset <= 17 and rejects some down-converted ops: it gets its own
        # export of the same pruned module at opset 17
        path17 = os.path.join(work, "model17.onnx")
        # (dynamo cannot write ResNet's ReduceMean at opset 17: its copy comes from TorchScript)
        hf.export_onnx(module, inputs, path17, "torchscript" if family == "resnet" else exporter, 17)
        try:
            peer = deepsparse_peer.DeepSparse(path17, feeds, threads=common.THREADS)
            ds_error = float(np.abs(peer.outputs()[0] - reference).max() / np.abs(reference).max())
            candidates["DeepSparse"] = peer
        except RuntimeError as failure:  # not `error`: the except clause would unbind it
            console.print(
                f"[yellow]{model_name} {config}: DeepSparse failed: {str(failure).splitlines()[0]}[/yellow]"
            )
            peer = None
    with torch.no_grad():
        times = common.interleaved(candidates, rounds=args.rounds, runs=args.runs)
    formats = {}
    for row in compiled.report:
        key = f"{row['runs']} ({row['kernel']})"
        formats[key] = formats.get(key, 0) + 1
    result = {
        "model": model_name,
        "config": config,
        "times": times,
        "error": error,
        "deepsparse_error": ds_error,
        "compile_s": compile_s,
        "tuned_s": tuned_s,
        "tuned_trials": tuned.tuning_trials if tuned is not None else None,
        "pruned": pruned,
        "formats": formats,
    }
    if peer is not None:
        peer.close()  # its threads would spin beside the profile
    if args.profile:
        result["profile"] = compiled.profile(**feeds, runs=3)
    console.print(
        f"[dim]{model_name} {config}: "
        + ", ".join(f"{k} {milliseconds(v)} ms" for k, v in times.items())
        + f"; max rel err {error:.1e}; compile {compile_s:.0f} s; {formats}[/dim]"
    )
    if tuned is not None:
        console.print(
            f"[dim]{model_name} {config}: tune={args.tune} compiled in {tuned_s:.0f} s with "
            f"{tuned.tuning_trials} trials; {times['sparsecc']:.1f} ms untuned, {times[TUNED]:.1f} ms tuned "
            f"({times['sparsecc'] / times[TUNED]:.2f}x)[/dim]"
        )
    return result


def milliseconds(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"  # small models: 0.1 ms is 10%


def ratio(times: dict, baseline: str) -> str:
    return f"{times[baseline] / times['sparsecc']:.2f}x" if baseline in times else "-"


def table(results: list[dict]) -> Table:
    t = Table(
        title=f"median ms, {common.THREADS} threads, one interleaved run per row; ratio = baseline / sparsecc"
    )
    tuned = any(TUNED in r["times"] for r in results)
    columns = (
        "model",
        "weights",
        "onnxruntime",
        "torch",
        "DeepSparse",
        "sparsecc",
        *((TUNED,) if tuned else ()),
        "vs ORT",
        "vs torch",
        "vs DeepSparse",
        "max rel err",
    )
    for column in columns:
        t.add_column(column, justify="left" if column in ("model", "weights") else "right")
    for r in results:
        times = r["times"]
        t.add_row(
            r["model"],
            LABELS[r["config"]],
            *(
                milliseconds(times[c]) if c in times else "-"
                for c in ("onnxruntime", "torch", "DeepSparse", "sparsecc", *((TUNED,) if tuned else ()))
            ),
            ratio(times, "onnxruntime"),
            ratio(times, "torch"),
            ratio(times, "DeepSparse"),
            f"{r['error']:.1e}",
        )
    return t


def markdown(results: list[dict]) -> str:
    lines = [
        "| model | weights | onnxruntime | torch | DeepSparse | sparsecc | vs ORT | vs torch | vs DeepSparse |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        times = r["times"]
        cells = [
            milliseconds(times[c]) if c in times else "-"
            for c in ("onnxruntime", "torch", "DeepSparse", "sparsecc")
        ]
        lines.append(
            f"| {r['model']} | {LABELS[r['config']]} | "
            + " | ".join(cells)
            + f" | {ratio(times, 'onnxruntime')} | {ratio(times, 'torch')} | {ratio(times, 'DeepSparse')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS, help="family-size-exporter, comma separated")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"from {', '.join(CONFIGS)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--tune",
        type=int,
        default=0,
        help="also time sparsecc tuned with N trials per kernel (fresh records)",
    )
    parser.add_argument("--profile", action="store_true", help="print sparsecc's time per function group")
    parser.add_argument("--markdown", help="also write the table as markdown to this file")
    args = parser.parse_args()
    torch.set_num_threads(common.THREADS)
    console = Console(width=200)
    if not deepsparse_peer.available():
        console.print(
            "[yellow]DeepSparse is not installed (bash bench/deepsparse_env.sh): its column stays empty[/yellow]"
        )
    results = []
    for model_name in args.models.split(","):
        for config in args.configs.split(","):
            results.append(measure(model_name, config, args, console))
            if args.profile:
                profile = Table(title=f"{model_name} {config}: sparsecc time per function group")
                for column in ("function", "calls", "ms", "ms per call"):
                    profile.add_column(column, justify="left" if column == "function" else "right")
                for entry in results[-1]["profile"][:12]:
                    profile.add_row(
                        entry.group[:70],
                        str(entry.calls),
                        f"{entry.total_ms:.2f}",
                        f"{entry.per_call_ms:.3f}",
                    )
                console.print(profile)
    console.print(table(results))
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(markdown(results))


if __name__ == "__main__":
    main()
