"""`sparsecc sparsify MODEL --spec S -o OUT.onnx [--portable] [--input NAME=x.npy]`: ONNX in, sparsified ONNX out.

Before anything is written, onnxruntime runs the result and the pruned dense model
on the same inputs (--input arrays, else synthetic ones); a mismatch beyond CHECK_TOLERANCE
writes nothing and fails. When no weight gets sparser, the input model is written unchanged.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx_ir as ir
from rich.markup import escape

from sparsecc.backends.ort import session
from sparsecc.compiler import api, onnx_save
from sparsecc.errors import InputError
from sparsecc.tools import present
from sparsecc.tools.commands.common import (
    add_input_argument,
    add_model_argument,
    add_spec_argument,
    load_source,
    parse_inputs,
)

CHECK_TOLERANCE = 1e-5  # max |sparse - pruned dense| / max |pruned dense|


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "sparsify",
        help="write a sparsified ONNX model that any ONNX runtime runs",
        epilog="examples:\n  sparsecc sparsify model.onnx --spec '*ffn*=block(1,16)@0.9; *attn*=2:4' -o model.sparse.onnx\n  sparsecc sparsify zoo:mlp --spec 'layers.2.weight=2:4' --portable -o mlp.onnx",  # the formatter (cli.py) keeps its lines
    )
    add_model_argument(parser)
    add_spec_argument(parser, required=True)
    parser.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    parser.add_argument(
        "--portable", action="store_true", help="standard ONNX only: pruned dense weights, no sparsecc ops"
    )
    add_input_argument(
        parser, help="an input for the output check (repeat for each input; default: synthetic)"
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
    source = load_source(args.model, parse_inputs(args.input) or None)
    with present.status("running the pass pipeline"):
        result = api.sparsify_ir(
            source.given,  # the pipeline's frontend reads it as it would the file (no second copy)
            args.spec,
            source.inputs,
            portable=args.portable,
            verify=args.debug,
            backend=args.backend,
            target=args.target,
        )
        # nothing sparser than it was: the input model is the best output (no converted opset, no new names)
        proto = ir.serde.serialize_model(result.model) if result.changed_weights else source.given
        result.model = None  # its weights are in `proto` now (a big model holds both otherwise)
    present.console.print(
        present.weight_table(result.report, title=f"{args.model} with spec '{result.spec}'")
    )
    for message in result.warnings:
        present.warn(message)
    # weights from their dims, in and out alike: ByteSize() serializes, and an .onnx file whose
    # weights are external data is smaller than they are
    input_bytes, output_bytes = onnx_save.model_bytes(source.given), onnx_save.model_bytes(proto)
    facts = [
        ("input weights", present.human_bytes(input_bytes)),
        ("output weights", present.human_bytes(output_bytes)),
        ("size ratio", f"{output_bytes / input_bytes:.3f}" if input_bytes else "- (no weights)"),
        ("sparse layers", f"{sum(r.format != 'dense' for r in result.report)} of {len(result.report)}"),
    ]
    if not result.changed_weights:
        facts.append(("output", "the input model, unchanged (no weight was pruned or stored sparse)"))
    elif not args.no_check:
        with present.status("checking outputs with onnxruntime"):
            facts += check_outputs(source, args.spec, proto, args.portable)
    present.console.print(present.key_value_table("Result", facts))
    onnx_save.save_onnx(proto, args.output)  # external data beside it past 2 GB
    present.console.print(f"wrote {args.output}")
    return 0


def check_outputs(source, spec, proto, portable: bool) -> list[tuple[str, str]]:
    """Compare with the pruned dense model (the reference); raise if they disagree.

    Runs on the --input arrays, else on synthetic inputs; skipped (one line says why) when none
    can be made or the input model itself does not run on them."""
    if source.inputs is None:
        return _skipped(f"{source.no_inputs_reason}; give inputs with --input NAME=file.npy")
    want, why = session.try_run(source.runnable, source.inputs)
    if want is None and source.inputs_given:
        raise InputError(f"the input model does not run on the inputs given: {why}")
    if want is None:
        return _skipped(f"the input model does not run on synthetic inputs ({why}); give inputs with --input")
    got = _run_from_file(proto, source.inputs)
    facts = []
    if not portable:
        agreement = session.agreement(got, _reference_outputs(source, spec), tolerance=CHECK_TOLERANCE)
        facts.append(
            ("max |sparse - pruned dense|", f"{agreement.max_abs_diff:.2e} ({agreement.relative:.1e} rel.)")
        )
        if not agreement.ok:
            raise RuntimeError(
                f"sparsified model disagrees with the pruned dense model: max abs diff {agreement.max_abs_diff:.3e}"
                f" > {CHECK_TOLERANCE} x {agreement.max_magnitude:.3e}; please report this as a sparsecc bug"
            )
        facts.append(("onnxruntime check", f"[green]ok[/green] (<= {CHECK_TOLERANCE:g} rel.)"))
    drift = session.agreement(got, want)
    facts.append(
        ("max |output - input model|", f"{drift.max_abs_diff:.2e} ({drift.relative:.1e} rel., from pruning)")
    )
    return facts


def _reference_outputs(source, spec) -> list:
    """The pruned dense model's outputs."""
    return _run_from_file(
        api.sparsify_ir(source.given, spec, source.inputs, portable=True).model, source.inputs
    )


def _run_from_file(model, inputs) -> list:
    """onnxruntime's outputs for `model`, read from a temporary file with external data, and run as
    written (no folding of reference bodies into dense weights). From bytes onnxruntime holds a
    serialized copy besides its own, and folding makes more; on a 0.25 GiB 2:4 model the output's
    session peaked at +1.23 GiB from bytes with folding, +0.45 GiB as written, and the input
    model's at +0.62 GiB from bytes, +0.19 GiB from its file."""
    with tempfile.TemporaryDirectory(prefix="sparsecc-check-") as folder:
        path = Path(folder) / "model.onnx"
        onnx_save.save_onnx(model, path, external_data_threshold=0)
        return session.run(str(path), inputs, optimize=False)


def _skipped(reason: str) -> list[tuple[str, str]]:
    present.warn(f"output check skipped: {escape(reason)}")
    return [("onnxruntime check", "skipped (see the warning)")]
