"""`sparsecc inspect MODEL [--spec S] [--html report.html]`: what sparsity is there, what would be done."""

from __future__ import annotations

from sparsecc.compiler import api
from sparsecc.passes.conv import find_weighted
from sparsecc.tools import present
from sparsecc.tools.commands.common import add_model_argument, add_spec_argument, load_source


def add_parser(sub) -> None:
    parser = sub.add_parser("inspect", help="report per-weight sparsity and the format each weight would get")
    add_model_argument(parser)
    add_spec_argument(parser, required=False, default="existing")
    parser.add_argument(
        "--html", metavar="REPORT.html", help="also write an HTML report with sparsity heatmaps"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    source = load_source(args.model)
    weights = {}

    def keep_weights(name, model):
        if name == "prune":
            weights.update({m.name: m.w() for m in find_weighted(model.graph)})

    result = api.sparsify_ir(
        source.proto, args.spec, source.inputs, after_pass=keep_weights, verify=args.debug
    )
    present.console.print(
        present.weight_table(result.report, title=f"{args.model} with spec '{result.spec}'")
    )
    for message in result.warnings:
        present.warn(message)
    if args.html:
        from sparsecc.tools.html_report import write_html

        write_html(args.html, f"sparsecc inspect {args.model}", result.report, weights)
        present.console.print(f"HTML report written to {args.html}")
    return 0
