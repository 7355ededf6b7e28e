"""`sparsecc opt MODEL -p PIPELINE [--print-ir-after-all] -o OUT.onnx`: run chosen passes, like mlir-opt."""

from __future__ import annotations

import onnx_ir as ir

from sparsecc.compiler import api
from sparsecc.compiler.onnx_save import save_onnx
from sparsecc.compiler.pipeline import DEFAULT_PIPELINE, PASSES
from sparsecc.tools import present
from sparsecc.tools.commands.common import add_model_argument, add_spec_argument, load_source


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "opt",
        help="run a pass pipeline and write the IR",
        epilog="examples:\n  sparsecc opt zoo:mlp -p canonicalize,analyze-sparsity --print-ir-after-all -o mlp.onnx\n  sparsecc opt model.onnx -p canonicalize,prune,dense-to-sparse --spec '*=2:4' -o out.onnx",  # the formatter (cli.py) keeps its lines
    )
    add_model_argument(parser)
    parser.add_argument(
        "-p",
        "--pipeline",
        required=True,
        help=f"comma-separated passes ({', '.join(PASSES)}); default pipeline: {DEFAULT_PIPELINE}",
    )
    add_spec_argument(parser, required=False, default="existing")
    parser.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass")
    parser.add_argument("--verify-each", action="store_true", help="verify the IR after every pass")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    parser.set_defaults(run=run)


def run(args) -> int:
    source = load_source(args.model)

    def print_ir(name: str, model: ir.Model) -> None:
        present.console.rule(f"IR Dump After {name}")
        present.console.print(str(model.graph), markup=False, highlight=False)

    result = api.sparsify_ir(
        source.proto,
        args.spec,
        source.inputs,
        pipeline=args.pipeline,
        verify=args.verify_each or args.debug,
        after_pass=print_ir if args.print_ir_after_all else None,
    )
    present.console.print(present.pass_table(result.passes))
    save_onnx(result.model, args.output)
    present.console.print(f"wrote {args.output}")
    return 0
