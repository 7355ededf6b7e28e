"""What several subcommands share: loading MODEL once and checking a result numerically."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import onnx
import onnx_ir as ir

from sparsecc.backends.ort import session
from sparsecc.compiler import frontends
from sparsecc.compiler.op_support import check_supported_ops
from sparsecc.tools import present


@dataclasses.dataclass
class Source:
    """MODEL as given on the command line, exported/normalised once."""

    label: str
    proto: onnx.ModelProto
    inputs: dict[str, np.ndarray]
    size_bytes: int  # of the ONNX file given, or of the dense export


def load_source(model: str) -> Source:
    """Resolve a `.onnx` path or `zoo:NAME`; zoo models are exported (with a spinner)."""
    with present.status(f"loading {model}"):
        ir_model, inputs = frontends.resolve_model(model)
        check_supported_ops(ir_model)
        proto = ir.serde.serialize_model(ir_model)
    if inputs is None:
        inputs = session.random_inputs(proto)
    is_file = not model.startswith("zoo:") and os.path.exists(model)
    size = os.path.getsize(model) if is_file else proto.ByteSize()
    return Source(model, proto, inputs, size)


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
