"""`sparsecc compile MODEL --spec S [--target T] [--tune N] -o OUT`: native code (TVM) or a checked ONNX (onnxruntime)."""

from __future__ import annotations

from sparsecc.tools import present
from sparsecc.tools.commands.common import add_model_argument, add_spec_argument


def add_parser(sub) -> None:
    parser = sub.add_parser("compile", help="compile to a native .sccpkg artifact with TVM")
    add_model_argument(parser)
    add_spec_argument(parser, required=True)
    parser.add_argument("--target", "-t", default="cpu", help="cpu (default), x86_64, aarch64, cuda[:sm_XX]")
    parser.add_argument(
        "--backend",
        default="tvm",
        help="tvm (native code, default) or onnxruntime (writes the sparsified .onnx)",
    )
    parser.add_argument("--tune", type=int, default=0, help="autotuning trials (0: default schedules)")
    parser.add_argument(
        "--rpc", metavar="HOST:PORT:KEY", help="tune by measuring on a device behind an RPC tracker"
    )
    parser.add_argument(
        "--measure", action="store_true", help="time each sparse kernel against dense (report)"
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT.sccpkg")
    parser.set_defaults(run=run)


def run(args) -> int:
    import sparsecc
    from sparsecc import backends

    backend = backends.get(args.backend)
    target = backend.resolve_target(args.target)  # a bad target fails before the slow steps
    model = args.model
    with present.status(f"compiling {model} for {target.name}"), present.log_lines("sparsecc.backends"):
        compiled = sparsecc.compile(
            model,
            args.spec,
            target=args.target,
            tune=args.tune,
            measure=args.measure,
            rpc=args.rpc,
            backend=args.backend,
        )
    present.console.print(
        present.kernel_table(compiled.report, f"{model} for {target.name} ({backend.name})")
    )
    with present.status("writing the artifact"):
        compiled.save(args.output)
    present.console.print(f"wrote {args.output}")
    return 0
