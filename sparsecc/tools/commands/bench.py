"""`sparsecc bench MODEL --spec S [--target T]`: onnxruntime dense, TVM dense, TVM sparse (and torch)."""

from __future__ import annotations

from sparsecc.tools import present
from sparsecc.tools.commands.common import add_model_argument, add_spec_argument


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "bench",
        help="time dense and sparse builds of MODEL in one process",
        epilog="examples:\n  sparsecc bench zoo:bert --spec '*mlp.fc*=block(16,1)@0.9'\n  sparsecc bench model.onnx --spec existing --profile",  # the formatter (cli.py) keeps its lines
    )
    add_model_argument(parser)
    add_spec_argument(parser, required=True)
    parser.add_argument("--target", "-t", default="cpu", help="a target that runs here (default: cpu)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--profile", action="store_true", help="also print where the sparse build's time goes, per function"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from sparsecc.backends.tvm.target import resolve_target
    from sparsecc.errors import SparseccError
    from sparsecc.tools.benchmark import run_benchmark, speedup_table

    target = resolve_target(args.target)
    if not target.runs_here:
        raise SparseccError(f"target {target.name} does not run on this machine; bench with --target cpu")
    with present.status(f"compiling and timing {args.model}"):
        result = run_benchmark(args.model, args.spec, target=target, rounds=args.rounds, profile=args.profile)
    present.console.print(speedup_table(result, f"{args.model}, spec '{args.spec}', target {target.name}"))
    present.console.print(f"max |TVM sparse - onnxruntime| / max |onnxruntime| = {result.max_rel_error:.1e}")
    if result.profile:
        present.console.print(
            present.profile_table(result.profile, "TVM sparse: time per function group (one call)")
        )
    return 0
