"""Frontends: bring a torch module, an ONNX file or proto, or a zoo model into one IR.

Every model leaves here as an `onnx_ir.Model` at default-domain opset `OPSET`, and,
for torch models, with each linear weight initializer tagged with the torch
parameter it came from (`PARAM_KEY`), so spec selectors can use torch names even
where the exporter renamed (`val_37`) or transposed the weight.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from sparsecc.errors import ModelError

logger = logging.getLogger(__name__)

OPSET = 23
LAYOUT_KEY = "sparsecc.param_layout"  # "W": initializer holds W[out, in]; "W^T": it holds the transpose


def resolve_model(model, example_inputs=None) -> tuple[ir.Model, dict[str, np.ndarray] | None]:
    """The IR of `model` and, when known, example inputs keyed by graph input name.

    `model`: a torch.nn.Module (with `example_inputs`: a tensor, a tuple, or a dict of
    keyword arguments), an onnx.ModelProto, an onnx_ir.Model (copied), a path to an
    .onnx file, or "zoo:NAME".
    """
    if isinstance(model, str) and model.startswith("zoo:"):
        from sparsecc import models

        zoo = models.get(model[len("zoo:") :])
        return resolve_model(zoo.module, zoo.example_inputs if example_inputs is None else example_inputs)
    if isinstance(model, (str, os.PathLike)):
        proto = load_onnx_file(Path(model))
        return from_proto(proto, label=str(model)), _numpy_inputs(example_inputs, None)
    if isinstance(model, onnx.ModelProto):
        return from_proto(model), _numpy_inputs(example_inputs, None)
    if isinstance(model, ir.Model):
        return from_proto(ir.serde.serialize_model(model)), _numpy_inputs(example_inputs, None)
    if _is_torch_module(model):
        from sparsecc.compiler.frontend_torch import export_module

        return export_module(model, example_inputs)
    raise ModelError(
        f"cannot read a model from {type(model).__name__}; give a torch.nn.Module, an ONNX ModelProto, "
        "a path to an .onnx file, or 'zoo:NAME'"
    )


def load_model(model, example_inputs=None) -> ir.Model:
    return resolve_model(model, example_inputs)[0]


def _is_torch_module(obj) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(obj, torch.nn.Module)


def _numpy_inputs(example_inputs, names) -> dict[str, np.ndarray] | None:
    if example_inputs is None:
        return None
    if isinstance(example_inputs, dict):
        return {k: np.asarray(v) for k, v in example_inputs.items()}
    raise ModelError("example inputs for an ONNX model must be a dict {input name: numpy array}")


def load_onnx_file(path: Path) -> onnx.ModelProto:
    """Read an .onnx file (external data included) with one-line errors for the usual mistakes."""
    if not path.exists():
        raise ModelError(f"model file '{path}' does not exist; check the path")
    if path.is_dir():
        raise ModelError(f"model path '{path}' is a directory; give an .onnx file")
    try:
        return onnx.load(str(path), load_external_data=True)
    except Exception as error:  # DecodeError, OSError for missing external data, ...
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelError(
            f"'{path}' is not a readable ONNX model (corrupted or truncated?): {reason}; re-export it"
        ) from None


def from_proto(proto: onnx.ModelProto, label: str = "the model") -> ir.Model:
    """Check a ModelProto, convert it to OPSET and return its IR."""
    if not proto.graph.node and not proto.graph.output:
        raise ModelError(f"{label} has an empty graph; is it really an ONNX model?")
    try:
        onnx.checker.check_model(proto)
    except (onnx.checker.ValidationError, Exception) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{label} is not a valid ONNX model: {first}") from None
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and opset != OPSET:
        proto = _convert_opset(proto, opset, label)
    return ir.serde.deserialize_model(proto)


def _convert_opset(proto: onnx.ModelProto, opset: int, label: str) -> onnx.ModelProto:
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(proto, OPSET)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(
            f"{label} uses opset {opset} and could not be converted to opset {OPSET}: {first}; "
            f"re-export it at opset {OPSET}"
        ) from None
    logger.info("converted %s from opset %d to %d", label, opset, OPSET)
    return converted


@contextlib.contextmanager
def quiet():
    """Silence the chatter third-party exporters print to stdout/stderr."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
