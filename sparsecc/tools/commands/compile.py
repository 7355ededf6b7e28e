"""`sparsecc compile MODEL --spec S [--target T] [--tune N] -o OUT`: native code (TVM) or a checked ONNX (onnxruntime)."""

from __future__ import annotations

from sparsecc.tools import present
from sparsecc.tools.commands.common import (
    add_calibration_argument,
    add_model_argument,
    add_spec_argument,
    load_source,
)


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "compile",
        help="compile to a native .sccpkg artifact with TVM",
        epilog="examples:\n  sparsecc compile zoo:mlp --spec 'layers.0.weight=block(16,1)@0.9' -o mlp.sccpkg\n  sparsecc compile model.onnx --spec existing --tune 32 -o model.sccpkg\n  sparsecc compile model.onnx --spec '*=2:4' --target aarch64 -o model-arm.sccpkg",  # the formatter (cli.py) keeps its lines
    )
    add_model_argument(parser)
    add_spec_argument(parser, required=True)
    parser.add_argument("--target", "-t", default="cpu", help="cpu (default), x86_64, aarch64, cuda[:sm_XX]")
    parser.add_argument(
        "--backend",
        default="tvm",
        help="tvm (native code, default) or onnxruntime (writes the sparsified .onnx)",
    )
    add_calibration_argument(parser)
    parser.add_argument("--tune", type=int, default=0, help="autotuning trials (0: default schedules)")
    parser.add_argument(
        "--dtype",
        default="float32",
        help="weight precision: float32 (default), bfloat16 or float16; accumulation stays float32",
    )
    parser.add_argument(
        "--rpc", metavar="HOST:PORT:KEY", help="tune by measuring on a device behind an RPC tracker"
    )
    parser.add_argument(
        "--measure", action="store_true", help="time each sparse kernel against dense (report)"
    )
    parser.add_argument(
        "--html",
        metavar="REPORT.html",
        help="also write an HTML report: summary, per-layer chart and table (measured with --measure)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT.sccpkg")
    parser.set_defaults(run=run)


def run(args) -> int:
    import sparsecc
    from sparsecc import backends

    backend = backends.get(args.backend)
    target = backend.resolve_target(args.target)  # a bad target fails before the slow steps
    model = args.model
    # The page needs W after pruning, which a compiled model does not keep: export MODEL once and
    # run the (deterministic) sparsity pipeline a second time for it.
    source = load_source(model) if args.html else None
    with present.status(f"compiling {model} for {target.name}"), present.log_lines("sparsecc.backends"):
        compiled = sparsecc.compile(
            source.proto if source else model,
            args.spec,
            source.inputs if source else None,
            target=args.target,
            tune=args.tune,
            measure=args.measure,
            rpc=args.rpc,
            backend=args.backend,
            dtype=args.dtype,
            calibration=args.calibration,
        )
    present.console.print(
        present.kernel_table(compiled.report, f"{model} for {target.name} ({backend.name})")
    )
    attention = _attention_groups(compiled)
    if attention:
        present.console.print(present.attention_table(attention))
    with present.status("writing the artifact"):
        compiled.save(args.output)
    present.console.print(f"wrote {args.output}")
    if source is not None:
        _write_html(args, source, compiled, f"{target.name} ({backend.name})")
    return 0


def _attention_groups(compiled) -> list[dict]:
    """The compiled model's PatternAttention groups with their kernels (TVM's manifest)."""
    return (getattr(compiled, "manifest", None) or {}).get("attention", [])


def _write_html(args, source, compiled, where: str) -> None:
    from sparsecc.tools import html_report

    data = html_report.sparsify_for_report(
        source.proto,
        args.spec,
        source.inputs,
        target=args.target,
        backend=args.backend,
        calibration=args.calibration,
    )
    measured = "kernels measured against dense here" if args.measure else "not measured (add --measure)"
    data.write_page(
        args.html,
        f"sparsecc compile {args.model} for {where}",
        compiled.report,
        subtitle=f"spec '{data.result.spec}'; {measured}",
        attention_groups=_attention_groups(compiled) or None,
    )
    present.console.print(f"HTML report written to {args.html}")
