"""`sparsecc compile MODEL --spec S [--target T] [--tune N] -o OUT.sccpkg`: native code through TVM."""

from __future__ import annotations

from sparsecc.compiler import present
from sparsecc.compiler.commands.common import add_model_argument, add_spec_argument


def add_parser(sub) -> None:
    parser = sub.add_parser("compile", help="compile to a native .sccpkg artifact with TVM")
    add_model_argument(parser)
    add_spec_argument(parser, required=True)
    parser.add_argument("--target", "-t", default="cpu", help="cpu (default), x86_64, aarch64, cuda[:sm_XX]")
    parser.add_argument("--tune", type=int, default=0, help="autotuning trials (0: default schedules)")
    parser.add_argument(
        "--rpc", metavar="HOST:PORT:KEY", help="tune by measuring on a device behind an RPC tracker"
    )
    parser.add_argument(
        "--measure", action="store_true", help="time each sparse kernel against dense (report)"
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT.sccpkg")
    parser.set_defaults(run=run)


def report_table(report: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("weight", "shape", "density", "format", "kernel", "est.", "measured"):
        table.add_column(column, justify="left" if column in ("weight", "format", "kernel") else "right")
    for row in report:
        speed = "-" if row.get("est_speedup") is None else f"{row['est_speedup']:.2f}x"
        measured = "-" if row.get("measured_speedup") is None else f"{row['measured_speedup']:.2f}x"
        shape = f"{row['shape'][0]}x{row['shape'][1]}"
        table.add_row(
            row["name"],
            shape,
            f"{row['density']:.3f}",
            row["format"],
            row.get("kernel") or "-",
            speed,
            measured,
        )
    return table


def run(args) -> int:
    import sparsecc
    from sparsecc.backends.tvm.target import resolve_target

    target = resolve_target(args.target)  # a bad target fails before the slow steps
    model = args.model
    with present.status(f"compiling {model} for {target.name}"), present.log_lines("sparsecc.backends.tvm"):
        compiled = sparsecc.compile(
            model, args.spec, target=target, tune=args.tune, measure=args.measure, rpc=args.rpc
        )
    present.console.print(report_table(compiled.report, f"{model} for {target.name}"))
    with present.status("writing the artifact"):
        compiled.save(args.output)
    present.console.print(f"wrote {args.output}")
    return 0
