"""`sparsecc demo`: the main job on the bundled BERT-style model, start to finish.

Sparsify it with the zoo's default spec, check with onnxruntime that the sparsified
file computes what the pruned dense model computes, show what was gained on disk,
then compile it with TVM and compare speed against dense runs of the same weights.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx_ir as ir

from sparsecc.compiler import api
from sparsecc.compiler.onnx_save import save_onnx
from sparsecc.tools import present
from sparsecc.tools.commands.common import load_source
from sparsecc.tools.commands.sparsify import check_outputs


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "demo",
        help="sparsify the bundled BERT-style model and check it",
        epilog="examples:\n  sparsecc demo\n  sparsecc demo --model mlp --no-compile -o demo-out/",  # the formatter (cli.py) keeps its lines
    )
    parser.add_argument("--model", default="bert", help="zoo model name (default: bert)")
    parser.add_argument("--spec", help="override the zoo model's default spec")
    parser.add_argument("-o", "--output-dir", help="keep the written ONNX files here")
    parser.add_argument("--no-compile", action="store_true", help="skip the TVM compile and speed comparison")
    parser.set_defaults(run=run)


def run(args) -> int:
    from sparsecc import models

    zoo = models.get(args.model)
    spec = args.spec or zoo.default_spec
    present.console.rule(f"sparsecc demo: zoo:{zoo.name} ({zoo.description})")
    source = load_source(f"zoo:{zoo.name}")
    present.console.print(f"spec: [bold]{spec}[/bold]\n")

    with present.status("sparsifying"):
        result = api.sparsify_ir(source.proto, spec, source.inputs, backend="onnxruntime")
        sparse = ir.serde.serialize_model(result.model)
    present.console.print(present.weight_table(result.report, title="What sparsecc did per weight"))
    present.console.print(present.pass_table(result.passes))
    with present.status("checking outputs with onnxruntime"):
        facts = check_outputs(source, spec, sparse, portable=False)

    out_dir = Path(args.output_dir or tempfile.mkdtemp(prefix="sparsecc-demo-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    dense_path, sparse_path = out_dir / f"{zoo.name}-dense.onnx", out_dir / f"{zoo.name}-sparse.onnx"
    save_onnx(source.proto, dense_path)
    save_onnx(sparse, sparse_path)
    dense_size, sparse_size = dense_path.stat().st_size, sparse_path.stat().st_size
    present.console.print(
        present.key_value_table(
            "Result",
            [
                ("dense ONNX", f"{present.human_bytes(dense_size)}  ({dense_path})"),
                ("sparsified ONNX", f"{present.human_bytes(sparse_size)}  ({sparse_path})"),
                ("size reduction", f"{dense_size / sparse_size:.2f}x smaller"),
                *facts,
            ],
        )
    )
    if not args.no_compile:
        compile_and_compare(zoo.name, spec)
    return 0


def compile_and_compare(name: str, spec: str) -> None:
    """Compile the pruned model dense and sparse with TVM and time them against onnxruntime and torch."""
    from sparsecc.tools.benchmark import run_benchmark, speedup_table

    with present.status("compiling with TVM (dense and sparse) and timing"):
        result = run_benchmark(f"zoo:{name}", spec)
    present.console.print(speedup_table(result, f"zoo:{name}: the same pruned weights, run four ways"))
    present.console.print(
        f"TVM sparse vs onnxruntime on the pruned dense model: max relative difference {result.max_rel_error:.1e}"
    )
