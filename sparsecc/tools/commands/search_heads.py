"""`sparsecc search-heads MODEL --calibration FILE.npz -o heads.yaml`: choose each attention head's pattern.

The token layout comes from --spec (a YAML/JSON spec with an `attention:` section, whose eps,
lambda, modes and costs are used too) or from --frames/--frame-tokens/--text/--text-first. The
table written is what a spec's `attention: {heads: heads.yaml}` reads back (edit it freely).
With --measured-costs (or the spec's `costs: measured`) a mode's cost is its PatternAttention
kernel's time relative to dense attention, timed here on this CPU, instead of its FLOP ratio.
"""

from __future__ import annotations

from rich.table import Table

from sparsecc.compiler import api
from sparsecc.errors import InputError
from sparsecc.files import write_bytes
from sparsecc.sparsity.head_table import METADATA_KEY, HeadTable
from sparsecc.sparsity.spec import SparsitySpec
from sparsecc.tools import present
from sparsecc.tools.commands.common import add_model_argument, load_source

EXAMPLES = """examples:
  sparsecc search-heads zoo:video_dit --calibration calib.npz --frames 4 --frame-tokens 64 --text 16 -o heads.yaml
  sparsecc search-heads model.onnx --calibration calib.npz --spec attention.yaml -o heads.yaml
  sparsecc search-heads model.onnx --calibration calib.npz --spec attention.yaml --measured-costs -o heads.yaml"""


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "search-heads", help="choose a pattern per attention head (Sparse-vDiT)", epilog=EXAMPLES
    )
    add_model_argument(parser)
    parser.add_argument(
        "--calibration",
        required=True,
        metavar="FILE.npz",
        help="input batches: one array per model input, batches stacked on axis 0",
    )
    parser.add_argument(
        "--spec", "-s", help="a .yaml/.json spec with an 'attention:' section (layout, eps, ...)"
    )
    parser.add_argument("--frames", type=int, help="latent frames (without --spec)")
    parser.add_argument("--frame-tokens", type=int, help="latent tokens per frame (without --spec)")
    parser.add_argument("--text", type=int, default=0, help="text tokens (default 0)")
    parser.add_argument("--text-first", action="store_true", help="text tokens come before the latent ones")
    parser.add_argument("--eps", type=float, help="keep a head full when every mode's loss exceeds this")
    parser.add_argument(
        "--lambda", dest="lam", type=float, help="weight of the cost in the loss (default 0.5)"
    )
    parser.add_argument(
        "--measured-costs",
        action="store_true",
        help="price each mode by its kernel's time on this CPU relative to dense attention (default: FLOPs)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="heads.yaml")
    parser.set_defaults(run=run)


def _spec(args) -> SparsitySpec:
    if args.spec:
        spec = SparsitySpec.parse(args.spec)
        if spec.attention is None:
            raise InputError(f"--spec {args.spec!r} has no 'attention:' section")
        section = spec.attention.to_dict()
    else:
        if args.frames is None or args.frame_tokens is None:
            raise InputError(
                "give the token layout: --frames and --frame-tokens (or --spec with an attention section)"
            )
        layout = {
            "frames": args.frames,
            "frame_tokens": args.frame_tokens,
            "text": args.text,
            "text_first": args.text_first,
        }
        section = {"layout": layout}
    section["heads"] = "search"
    if args.eps is not None:
        section["eps"] = args.eps
    if args.lam is not None:
        section["lambda"] = args.lam
    if args.measured_costs:
        section["costs"] = "measured"
    return SparsitySpec.parse({"attention": section})


def run(args) -> int:
    spec = _spec(args)
    source = load_source(args.model)
    measured = spec.attention.costs == "measured"  # the kernels are timed by the tvm backend, here
    with present.status("searching head patterns"):
        result = api.sparsify_ir(
            source.ir_model,
            spec,
            pipeline="canonicalize,fuse-attention,search-heads",
            calibration=args.calibration,
            backend="tvm" if measured else "onnxruntime",
        )
    text = result.model.metadata_props.get(METADATA_KEY)
    if text is None:
        raise InputError(
            f"{args.model}: no attention layer of {spec.attention.layout.tokens} tokens was found"
        )
    table = HeadTable.from_yaml(text)
    present.console.print(_summary(table))
    write_bytes(args.output, text.encode())
    present.console.print(f"wrote {args.output}")
    return 0


def _summary(table: HeadTable) -> Table:
    summary = Table(title="Head patterns")
    summary.add_column("layer")
    for mode in ("full", "diag", "mdiag", "vstripe", "blocks", "skip"):
        summary.add_column(mode, justify="right")
    for index, layer in enumerate(table.layers):
        modes = [p.mode for p in layer.patterns]
        summary.add_row(
            layer.name or str(index),
            *(str(modes.count(m)) for m in ("full", "diag", "mdiag", "vstripe", "blocks", "skip")),
        )
    return summary
