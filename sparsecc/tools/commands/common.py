"""What several subcommands share: loading MODEL once, reading --input arrays, checking a result numerically."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from sparsecc.backends.ort import session
from sparsecc.compiler import frontends
from sparsecc.compiler.frontends.inputs import example_feeds
from sparsecc.compiler.op_support import check_supported_ops
from sparsecc.errors import InputError
from sparsecc.tools import present


@dataclasses.dataclass
class Source:
    """MODEL as given on the command line, exported/normalised once."""

    label: str
    ir_model: ir.Model  # after the frontend: opset OPSET, unique names (a file's tensors are not copied)
    inputs: dict[str, np.ndarray] | None  # --input arrays, the zoo's example, or synthetic; None: none made
    original: onnx.ModelProto | None = None  # the file as read (the export for zoo models)
    inputs_given: bool = False  # `inputs` are the user's (--input) or the zoo's, not synthetic
    no_inputs_reason: str = ""  # why `inputs` is None

    @functools.cached_property
    def proto(self) -> onnx.ModelProto:
        """`ir_model` as a proto, made on first use (it copies every weight)."""
        return ir.serde.serialize_model(self.ir_model)

    @property
    def is_file(self) -> bool:
        return not self.label.startswith("zoo:")

    @property
    def runnable(self) -> onnx.ModelProto | str:
        """What onnxruntime, or a second pipeline run, should read for the model as given: its file
        when there is one (see `release`)."""
        return self.label if self.is_file else self.given

    def release(self) -> None:
        """Let go of a file's model (read again from `label` when needed): a file whose weights are
        inside the .onnx is held whole by protobuf, a second copy of the weights during the checks."""
        if self.is_file:
            self.original = None
            self.ir_model = None
            self.__dict__.pop("proto", None)

    @property
    def given(self) -> onnx.ModelProto:
        """The model as the user gave it (what "unchanged" means)."""
        return self.original if self.original is not None else self.proto


def load_source(model: str, inputs: dict[str, np.ndarray] | None = None) -> Source:
    """Resolve a `.onnx` path or `zoo:NAME`; zoo models are exported (with a spinner).

    `inputs` (from --input) are checked against the model's inputs; without them, inputs are
    synthesised where the input types allow (see `session.random_inputs`)."""
    with present.status(f"loading {model}"):
        is_file = not model.startswith("zoo:")
        original = frontends.load_onnx_file(Path(model)) if is_file else None
        ir_model, example = frontends.resolve_model(original if is_file else model, inputs, label=model)
        check_supported_ops(ir_model)
    source = Source(model, ir_model, None, original, inputs_given=example is not None)
    if example is not None:
        source.inputs = example_feeds(ir_model, example)
    else:
        try:
            source.inputs = session.random_inputs(source.given)
        except InputError as error:
            source.no_inputs_reason = str(error)
    return source


def add_model_argument(parser) -> None:
    parser.add_argument("model", metavar="MODEL", help="an .onnx file or zoo:NAME (see sparsecc/models)")


def add_spec_argument(parser, required: bool, default: str | None = None) -> None:
    parser.add_argument(
        "--spec",
        "-s",
        required=required,
        default=default,
        help="sparsity spec: shorthand ('*ffn*=block(1,16)@0.9; *attn*=2:4'), or a .yaml/.json file",
    )


def add_calibration_argument(parser) -> None:
    parser.add_argument(
        "--calibration",
        metavar="FILE.npz",
        help="input batches for the methods that need data (wanda, sparsegpt): one array per model "
        "input, batches stacked on axis 0; also reports each pruned weight's reconstruction error",
    )


def add_input_argument(parser, help: str) -> None:
    parser.add_argument("--input", "-i", action="append", default=[], metavar="NAME=file.npy", help=help)


def parse_inputs(pairs: list[str]) -> dict[str, np.ndarray]:
    """`NAME=file.npy` pairs (repeated --input) -> {name: array}; a bad pair or file is an InputError."""
    feeds = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--input {pair!r} must look like NAME=file.npy")
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:  # EOFError: an empty file
            raise InputError(f"cannot read input '{name}' from {path!r}: {error}") from None
        if not isinstance(array, np.ndarray):  # an .npz archive
            raise InputError(f"input '{name}': {path!r} holds several arrays; give one array as an .npy file")
        feeds[name] = array
    return feeds
