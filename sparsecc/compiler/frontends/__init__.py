"""Frontends: bring a torch module, an ONNX file or proto, or a zoo model into one IR.

Every model leaves here as an `onnx_ir.Model` at default-domain opset `OPSET` with unique
node and value names (onnx-ir's NameFixPass: the one place names are assigned), and with
each linear weight tagged with its user-facing name: the torch parameter it holds (torch
modules) or the module path the exporter recorded (ONNX files).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import NameFixPass

from sparsecc.compiler.frontends.common import OPSET
from sparsecc.compiler.frontends.module_names import tag_module_names
from sparsecc.compiler.frontends.onnx_file import from_proto, load_onnx_file
from sparsecc.errors import ModelError

__all__ = ["OPSET", "load_model", "load_onnx_file", "resolve_model"]


def resolve_model(
    model, example_inputs=None, label: str | None = None
) -> tuple[ir.Model, dict[str, np.ndarray] | None]:
    """The IR of `model` and, when known, example inputs keyed by graph input name.

    `model`: a torch.nn.Module (with `example_inputs`: a tensor, a tuple, or a dict of
    keyword arguments), an onnx.ModelProto, an onnx_ir.Model (copied), a path to an
    .onnx file, or "zoo:NAME". `label` names a proto in errors (its file, say).
    """
    if isinstance(model, str) and model.startswith("zoo:"):
        from sparsecc import models

        zoo = models.get(model[len("zoo:") :])
        return resolve_model(zoo.module, zoo.example_inputs if example_inputs is None else example_inputs)
    if isinstance(model, (str, os.PathLike)):
        ir_model, feeds = (
            from_proto(load_onnx_file(Path(model)), label=str(model)),
            _numpy_inputs(example_inputs),
        )
    elif isinstance(model, onnx.ModelProto):
        ir_model, feeds = from_proto(model, label=label or "the model"), _numpy_inputs(example_inputs)
    elif isinstance(model, ir.Model):
        ir_model, feeds = from_proto(ir.serde.serialize_model(model)), _numpy_inputs(example_inputs)
    elif _is_torch_module(model):
        from sparsecc.compiler.frontends.torch_module import export_module

        ir_model, feeds = export_module(model, example_inputs)
    else:
        raise ModelError(
            f"cannot read a model from {type(model).__name__}; give a torch.nn.Module, an ONNX ModelProto, "
            "a path to an .onnx file, or 'zoo:NAME'"
        )
    tag_module_names(ir_model)
    NameFixPass()(ir_model)
    return ir_model, feeds


def load_model(model, example_inputs=None) -> ir.Model:
    return resolve_model(model, example_inputs)[0]


def _is_torch_module(obj) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(obj, torch.nn.Module)


def _numpy_inputs(example_inputs) -> dict[str, np.ndarray] | None:
    if example_inputs is None:
        return None
    if isinstance(example_inputs, dict):
        return {k: np.asarray(v) for k, v in example_inputs.items()}
    raise ModelError("example inputs for an ONNX model must be a dict {input name: numpy array}")
