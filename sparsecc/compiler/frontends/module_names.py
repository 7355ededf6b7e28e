"""Module names for the linear weights of an ONNX file, from what its exporter recorded.

Exporters rename weights (`val_37`, `onnx::MatMul_402`) but record where each node came
from: the dynamo exporter as `pkg.torch.onnx.name_scopes` metadata (the module path, then
the op), the TorchScript exporter in node names (`/encoder/layer.0/intermediate/dense/
MatMul`); optimum and HF exports follow one of the two. A weight consumed by a MatMul or
Gemm (directly or through a Transpose) gets `<module path>.weight` as its user-facing
name, so spec selectors, `inspect` and reports speak the model's own language. Its
initializer name is kept too (selectors match both).
"""

from __future__ import annotations

import ast
import logging

import onnx_ir as ir

from sparsecc.ops.metadata import INITIALIZER_NAME, WEIGHT_NAME

logger = logging.getLogger(__name__)

NAME_SCOPES = (
    "pkg.torch.onnx.name_scopes"  # dynamo: "['', 'encoder', ..., 'encoder.layer.0.output.dense', 'linear_5']"
)


FOLDED_BY = "pkg.onnxscript.rewriter.rule_name"  # dynamo: the optimizer's rules that rewrote the node


def module_path(node: ir.Node) -> str | None:
    """The module that produced `node`, or None when the exporter did not say."""
    scopes = node.metadata_props.get(NAME_SCOPES)
    if scopes:
        try:
            names = ast.literal_eval(scopes)
        except (ValueError, SyntaxError):
            names = None
        if isinstance(names, list) and len(names) >= 2 and isinstance(names[-2], str):
            return names[-2] or None  # the last entry is the op inside the module
    if node.name and node.name.startswith("/"):  # TorchScript: /module/path/Op
        parts = [part for part in node.name.split("/") if part][:-1]
        return ".".join(parts) or None
    return None


def _weight_initializer(node: ir.Node) -> ir.Value | None:
    """The constant matrix a MatMul/Gemm multiplies by (looking through one Transpose), or a Conv's weight."""
    if (
        node.op_type not in ("MatMul", "Gemm", "Conv")
        or node.domain not in ("", "ai.onnx")
        or len(node.inputs) < 2
    ):
        return None
    if node.op_type == "Conv":
        value = node.inputs[1]
        return (
            value
            if value is not None and value.const_value is not None and len(value.const_value.shape) == 4
            else None
        )
    value = node.inputs[1]
    producer = value.producer() if value is not None else None
    if producer is not None and producer.op_type == "Transpose" and producer.inputs:
        value = producer.inputs[0]
    if value is None or value.const_value is None or len(value.const_value.shape) != 2:
        return None
    return value


def tag_module_names(model: ir.Model) -> int:
    """Set WEIGHT_NAME (and INITIALIZER_NAME) on linear weights that have none; returns how many."""
    tagged = 0
    for node in model.graph:
        value = _weight_initializer(node)
        if value is None or WEIGHT_NAME in value.metadata_props:
            continue
        value.metadata_props[INITIALIZER_NAME] = value.name
        path = module_path(node)
        if node.op_type == "Conv" and "BatchNorm" in node.metadata_props.get(FOLDED_BY, ""):
            # the exporter folded a batch norm into this Conv and kept the norm's scope; the
            # initializer keeps the Conv's parameter name
            value.metadata_props[WEIGHT_NAME] = value.name
            tagged += 1
        elif path is not None:
            value.metadata_props[WEIGHT_NAME] = f"{path}.weight"
            tagged += 1
    logger.info("named %d linear weights after the modules the exporter recorded", tagged)
    return tagged
