"""`sparsecc inspect MODEL [--spec S] [--html report.html]`: what sparsity is there, what would be done."""

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
        "inspect",
        help="report per-weight sparsity and the format each weight would get",
        epilog="examples:\n  sparsecc inspect model.onnx\n  sparsecc inspect zoo:bert --spec '*mlp.fc*=block(16,1)@0.9' --html report.html",  # the formatter (cli.py) keeps its lines
    )
    add_model_argument(parser)
    add_spec_argument(parser, required=False, default="existing")
    add_calibration_argument(parser)
    parser.add_argument(
        "--html",
        metavar="REPORT.html",
        help="also write an HTML report: summary, sparsity chart per layer, table, heatmaps "
        "(with an attention: spec, the heads' patterns; with --calibration, measured attention maps)",
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from sparsecc.tools import html_report

    source = load_source(args.model)
    data = html_report.sparsify_for_report(
        source.proto, args.spec, source.inputs, verify=args.debug, calibration=args.calibration
    )
    result = data.result
    present.console.print(
        present.weight_table(result.report, title=f"{args.model} with spec '{result.spec}'")
    )
    if result.context.attention:
        present.console.print(present.attention_table(result.context.attention))
    for message in result.warnings:
        present.warn(message)
    if args.html:
        data.write_page(
            args.html,
            f"sparsecc inspect {args.model}",
            result.report,
            subtitle=f"spec '{result.spec}'; formats priced by the {result.context.cost_model.name}",
        )
        present.console.print(f"HTML report written to {args.html}")
    return 0
