"""`sparsecc sparsify MODEL --spec S -o OUT.onnx [--portable]`: ONNX in, sparsified ONNX out.

Before anything is written, onnxruntime runs the result and the pruned dense model
on the same inputs; a mismatch beyond CHECK_TOLERANCE writes nothing and fails.
"""

from __future__ import annotations

import onnx_ir as ir

from sparsecc import files
from sparsecc.backends.ort import session
from sparsecc.compiler import api
from sparsecc.tools import present
from sparsecc.tools.commands.common import add_model_argument, add_spec_argument, load_source

CHECK_TOLERANCE = 1e-5  # max |sparse - pruned dense| / max |pruned dense|


def add_parser(sub) -> None:
    parser = sub.add_parser("sparsify", help="write a sparsified ONNX model that any ONNX runtime runs")
    add_model_argument(parser)
    add_spec_argument(parser, required=True)
    parser.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    parser.add_argument(
        "--portable", action="store_true", help="standard ONNX only: pruned dense weights, no sparsecc ops"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    parser.add_argument(
        "--for",
        dest="backend",
        default="onnxruntime",
        metavar="BACKEND",
        help="whose cost model picks the formats: onnxruntime (default: sparse where the file gets smaller) "
        "or tvm (where sparsecc's kernels get faster on --target)",
    )
    parser.add_argument("--target", "-t", default="cpu", help="with --for tvm: the target (default: cpu)")
    parser.set_defaults(run=run)


def run(args) -> int:
    source = load_source(args.model)
    with present.status("running the pass pipeline"):
        result = api.sparsify_ir(
            source.proto,
            args.spec,
            source.inputs,
            portable=args.portable,
            verify=args.debug,
            backend=args.backend,
            target=args.target,
        )
        proto = ir.serde.serialize_model(result.model)
    present.console.print(
        present.weight_table(result.report, title=f"{args.model} with spec '{result.spec}'")
    )
    for message in result.warnings:
        present.warn(message)
    facts = [
        ("input size", present.human_bytes(source.size_bytes)),
        ("output size", present.human_bytes(proto.ByteSize())),
        ("size ratio", f"{proto.ByteSize() / source.size_bytes:.3f}"),
        ("sparse layers", f"{sum(r.format != 'dense' for r in result.report)} of {len(result.report)}"),
    ]
    if not args.no_check:
        with present.status("checking outputs with onnxruntime"):
            agreement = check_outputs(source, args.spec, proto, args.portable)
        facts += agreement
    present.console.print(present.key_value_table("Result", facts))
    files.write_bytes(args.output, proto.SerializeToString())
    present.console.print(f"wrote {args.output}")
    return 0


def check_outputs(source, spec, proto, portable: bool) -> list[tuple[str, str]]:
    """Compare with the pruned dense model (the reference); raise if they disagree."""
    facts = []
    if not portable:
        reference = ir.serde.serialize_model(
            api.sparsify_ir(source.proto, spec, source.inputs, portable=True).model
        )
        agreement = session.compare(proto, reference, source.inputs, tolerance=CHECK_TOLERANCE)
        facts.append(
            ("max |sparse - pruned dense|", f"{agreement.max_abs_diff:.2e} ({agreement.relative:.1e} rel.)")
        )
        if not agreement.ok:
            raise RuntimeError(
                f"sparsified model disagrees with the pruned dense model: max abs diff {agreement.max_abs_diff:.3e}"
                f" > {CHECK_TOLERANCE} x {agreement.max_magnitude:.3e}; please report this as a sparsecc bug"
            )
        facts.append(("onnxruntime check", f"[green]ok[/green] (<= {CHECK_TOLERANCE:g} rel.)"))
    drift = session.compare(proto, source.proto, source.inputs)
    facts.append(
        ("max |output - input model|", f"{drift.max_abs_diff:.2e} ({drift.relative:.1e} rel., from pruning)")
    )
    return facts
