"""The ONNX frontend: read and check a file or proto, and convert it to one opset."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from sparsecc.compiler.frontends.common import OPSET
from sparsecc.compiler.frontends.external_weights import keep_on_disk, on_disk
from sparsecc.compiler.frontends.weightless import with_weights, without_weights
from sparsecc.errors import ModelError

logger = logging.getLogger(__name__)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_onnx_file(path: Path) -> onnx.ModelProto:
    """Read an .onnx file with one-line errors for the usual mistakes.

    Big weights stored as external data stay on disk (see `external_weights.py`): the proto
    refers to them by absolute path, and onnx-ir maps them into memory when a pass reads one."""
    if not path.exists():
        raise ModelError(f"model file '{path}' does not exist; check the path")
    if path.is_dir():
        raise ModelError(f"model path '{path}' is a directory; give an .onnx file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
        keep_on_disk(proto, path.parent)
    except (DecodeError, OSError, ValueError, onnx.checker.ValidationError) as error:
        raise ModelError(
            f"'{path}' is not a readable ONNX model (corrupted or truncated?): {_first_line(error)}; re-export it"
        ) from error
    _check_self_consistent(proto, path)
    return proto


def _first_non_text(graph: onnx.GraphProto) -> str | None:
    """Where a name is not UTF-8 (protobuf hands such strings over as bytes; the checker then fails
    to decode its own message), or None."""
    for index, node in enumerate(graph.node):
        for what, text in (("name", node.name), ("op type", node.op_type), ("domain", node.domain)):
            if not isinstance(text, str):
                return f"the {what} {text!r} of node {index}"
        for text in (*node.input, *node.output, *(attribute.name for attribute in node.attribute)):
            if not isinstance(text, str):
                return f"the name {text!r} used by node {index} ({node.op_type!r})"
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        if not isinstance(value.name, str):
            return f"the value name {value.name!r}"
    return None


# Protobuf cannot serialise a message over 2 GiB, and shape inference serialises the model.
_INFERENCE_LIMIT = (2 << 30) - (64 << 20)


def _check_self_consistent(proto: onnx.ModelProto, path: Path) -> None:
    """Refuse a file that contradicts itself (a damaged or hand-edited one): initializer data that does
    not fill its dims, or shapes that cannot hold (a MatMul that cannot multiply, value_info that
    disagrees with what the nodes compute). onnxruntime refuses these too, later and with a traceback."""
    garbled = _first_non_text(proto.graph)
    if garbled:
        raise ModelError(f"'{path}' is damaged: {garbled} is not UTF-8 text; re-export it")
    for tensor in proto.graph.initializer:
        if on_disk(tensor):  # its size was checked against its dims when the file was read
            continue
        try:
            onnx.numpy_helper.to_array(tensor)
        except (ValueError, TypeError, KeyError) as error:  # data vs dims, unknown or undefined type
            raise ModelError(
                f"'{path}': initializer '{tensor.name}' (dims {list(tensor.dims)}) does not hold data of that "
                f"shape and type ({_first_line(error)}); the file is damaged, re-export it"
            ) from None
    light = without_weights(proto)  # inference copies its proto ~3 times (weightless.py)
    if light.ByteSize() > _INFERENCE_LIMIT:  # upb's ByteSize serializes: never on the weights
        logger.info("%s is over 2 GiB: shapes not cross-checked before onnxruntime loads it", path)
        return
    try:
        onnx.shape_inference.infer_shapes(light, check_type=True, strict_mode=True)
    except onnx.shape_inference.InferenceError as error:
        raise ModelError(
            f"'{path}' has shapes or types that contradict each other: {_first_line(error)}; "
            "the file is damaged or was edited by hand, re-export it"
        ) from None


def from_proto(proto: onnx.ModelProto, label: str = "the model") -> ir.Model:
    """Check a ModelProto, convert it to OPSET and return its IR."""
    if not proto.graph.node and not proto.graph.output:
        raise ModelError(f"{label} has an empty graph; is it really an ONNX model?")
    proto = _as_ir4(proto)
    # the checker and the version converter serialize what they get (copies of every weight, and a
    # ValueError past protobuf's 2 GiB): they see the graph with big weights as typed inputs
    light = without_weights(proto)
    try:
        onnx.checker.check_model(light)
    except onnx.checker.ValidationError as error:
        raise ModelError(f"{label} is not a valid ONNX model: {_first_line(error)}") from error
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and opset != OPSET:
        proto = with_weights(_convert_opset(light, opset, label), proto)
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
    # the converter keeps the IR version; new opsets need a newer one (an IR-3 Pad at opset 23 has
    # its pads as an initializer that IR 3 would require to be a graph input)
    converted.ir_version = max(
        converted.ir_version, onnx.helper.find_min_ir_version_for(converted.opset_import, ignore_unknown=True)
    )
    logger.info("converted %s from opset %d to %d", label, opset, OPSET)
    return converted


def _as_ir4(proto: onnx.ModelProto) -> onnx.ModelProto:
    """An IR < 4 model as IR 4: its initializers are weights, not graph inputs.

    IR 3 had to list every initializer as a graph input (IR 4 made that optional and the listed
    ones overridable), so old exporters' weights look like inputs, which sparsecc would not touch;
    some IR-3 files omit them from the inputs anyway (onnxruntime runs those too)."""
    if proto.ir_version >= 4:
        return proto
    upgraded = onnx.ModelProto()
    upgraded.CopyFrom(proto)
    upgraded.ir_version = 4
    weights = {tensor.name for tensor in proto.graph.initializer}
    inputs = [value for value in upgraded.graph.input if value.name not in weights]
    del upgraded.graph.input[:]
    upgraded.graph.input.extend(inputs)
    logger.info(
        "read an IR-%d model as IR 4 (%d initializers are weights, not inputs)",
        proto.ir_version,
        len(weights),
    )
    return upgraded


def _carry_node_metadata(source: onnx.ModelProto, converted: onnx.ModelProto) -> None:
    """The version converter drops node metadata (where the exporter recorded module names); restore it by name."""
    metadata = {
        node.name: node.metadata_props for node in source.graph.node if node.name and node.metadata_props
    }
    for node in converted.graph.node:
        if node.name in metadata and not node.metadata_props:
            node.metadata_props.extend(metadata[node.name])
