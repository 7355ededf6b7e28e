"""The ONNX frontend: read and check a file or proto, and convert it to one opset."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from sparsecc.compiler.frontends.common import OPSET
from sparsecc.errors import ModelError

logger = logging.getLogger(__name__)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_onnx_file(path: Path) -> onnx.ModelProto:
    """Read an .onnx file (external data included) with one-line errors for the usual mistakes."""
    if not path.exists():
        raise ModelError(f"model file '{path}' does not exist; check the path")
    if path.is_dir():
        raise ModelError(f"model path '{path}' is a directory; give an .onnx file")
    try:
        return onnx.load(str(path), load_external_data=True)
    except (DecodeError, OSError, ValueError, onnx.checker.ValidationError) as error:
        raise ModelError(
            f"'{path}' is not a readable ONNX model (corrupted or truncated?): {_first_line(error)}; re-export it"
        ) from error


def from_proto(proto: onnx.ModelProto, label: str = "the model") -> ir.Model:
    """Check a ModelProto, convert it to OPSET and return its IR."""
    if not proto.graph.node and not proto.graph.output:
        raise ModelError(f"{label} has an empty graph; is it really an ONNX model?")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        raise ModelError(f"{label} is not a valid ONNX model: {_first_line(error)}") from error
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and opset != OPSET:
        proto = _convert_opset(proto, opset, label)
    return ir.serde.deserialize_model(proto)


def _convert_opset(proto: onnx.ModelProto, opset: int, label: str) -> onnx.ModelProto:
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(proto, OPSET)
    except (RuntimeError, ValueError, onnx.checker.ValidationError) as error:  # raised per adapter
        raise ModelError(
            f"{label} uses opset {opset} and could not be converted to opset {OPSET}: {_first_line(error)}; "
            f"re-export it at opset {OPSET}"
        ) from error
    _carry_node_metadata(proto, converted)
    logger.info("converted %s from opset %d to %d", label, opset, OPSET)
    return converted


def _carry_node_metadata(source: onnx.ModelProto, converted: onnx.ModelProto) -> None:
    """The version converter drops node metadata (where the exporter recorded module names); restore it by name."""
    metadata = {
        node.name: node.metadata_props for node in source.graph.node if node.name and node.metadata_props
    }
    for node in converted.graph.node:
        if node.name in metadata and not node.metadata_props:
            node.metadata_props.extend(metadata[node.name])
