"""`sparsecc sparsify MODEL --spec S -o OUT.onnx [--portable] [--input NAME=x.npy]`: ONNX in, sparsified ONNX out.

Before anything is written, onnxruntime runs the result and the pruned dense model
on the same inputs (--input arrays, else synthetic ones); a mismatch beyond CHECK_TOLERANCE
writes nothing and fails. When no weight gets sparser, the input model is written unchanged.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from pathlib import Path

import onnx
from rich.markup import escape

from sparsecc.backends.ort import session
from sparsecc.compiler import api, onnx_save
from sparsecc.compiler.frontends.external_weights import has_external_data
from sparsecc.errors import InputError
from sparsecc.tools import present
from sparsecc.tools.commands.common import (
    add_calibration_argument,
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
    add_calibration_argument(parser)
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
            calibration=args.calibration,
        )
    present.console.print(
        present.weight_table(result.report, title=f"{args.model} with spec '{result.spec}'")
    )
    for message in result.warnings:
        present.warn(message)
    # nothing sparser than it was: the input model is the best output (no converted opset, no new names)
    output = result.model if result.changed_weights else source.given
    result.model = None  # from here on `output` is the only reference: freed once written
    # weights from their dims, in and out alike (an .onnx whose weights are external data is smaller)
    input_bytes, output_bytes = onnx_save.model_bytes(source.given), onnx_save.model_bytes(output)
    facts = [
        ("input weights", present.human_bytes(input_bytes)),
        ("output weights", present.human_bytes(output_bytes)),
        ("size ratio", f"{output_bytes / input_bytes:.3f}" if input_bytes else "- (no weights)"),
        ("sparse layers", f"{sum(r.format != 'dense' for r in result.report)} of {len(result.report)}"),
    ]
    # written beside OUT first and checked there; moved into place only if the check passes
    with onnx_save.staged_output(args.output) as staged:
        with present.status(f"writing {args.output}"):
            if result.changed_weights or not source.is_file or has_external_data(Path(source.label)):
                onnx_save.save_onnx(output, staged)  # external data beside it past 2 GB
            else:
                shutil.copyfile(source.label, staged)  # unchanged: the input file, byte for byte
        del output  # the sparse IR: the checks below hold one onnxruntime session at a time
        source.release()  # and the input model: the reference pipeline reads its file again
        gc.collect()  # an IR is a graph of cycles (values <-> nodes): freed by the collector only
        if not result.changed_weights:
            facts.append(("output", "the input model, unchanged (no weight was pruned or stored sparse)"))
        elif not args.no_check:
            with present.status("checking outputs with onnxruntime"):
                facts += check_outputs(source, args.spec, staged, args.portable, args.calibration)
    present.console.print(present.key_value_table("Result", facts))
    present.console.print(f"wrote {args.output}")
    return 0


def check_outputs(
    source, spec, written: Path | onnx.ModelProto, portable: bool, calibration=None
) -> list[tuple[str, str]]:
    """Compare the model `written` with the pruned dense model (the reference); raise if they disagree.

    Runs on the --input arrays, else on synthetic inputs; skipped (one line says why) when none
    can be made or the input model itself does not run on them. `written` runs as written (no
    folding of reference bodies into dense weights: less memory for a one-off run)."""
    if source.inputs is None:
        return _skipped(f"{source.no_inputs_reason}; give inputs with --input NAME=file.npy")
    want, why = session.try_run(source.runnable, source.inputs)
    if want is None and source.inputs_given:
        raise InputError(f"the input model does not run on the inputs given: {why}")
    if want is None:
        return _skipped(f"the input model does not run on synthetic inputs ({why}); give inputs with --input")
    got = session.run(str(written) if isinstance(written, Path) else written, source.inputs, optimize=False)
    facts = []
    if not portable:
        reference = _reference_outputs(source, spec, calibration)
        agreement = session.agreement(got, reference, tolerance=CHECK_TOLERANCE)
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


def _reference_outputs(source, spec, calibration=None) -> list:
    """The pruned dense model's outputs (pruned again, with the same calibration data)."""
    pruned = api.sparsify_ir(source.runnable, spec, source.inputs, portable=True, calibration=calibration)
    model, pruned.model = pruned.model, None
    with tempfile.TemporaryDirectory(prefix="sparsecc-check-") as folder:
        path = Path(folder) / "model.onnx"
        onnx_save.save_onnx(model, path, external_data_threshold=0)
        del model
        gc.collect()  # the pruned IR (cycles) before onnxruntime loads its copy
        return session.run(str(path), source.inputs, optimize=False)


def _skipped(reason: str) -> list[tuple[str, str]]:
    present.warn(f"output check skipped: {escape(reason)}")
    return [("onnxruntime check", "skipped (see the warning)")]
