"""Build sparse-op nodes from weight formats, and read the formats back from nodes."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparsecc.errors import VerificationError
from sparsecc.ops.formats import BsrWeight, CsrWeight, NmWeight, SparseWeight
from sparsecc.ops.schema import BSR_MATMUL, CSR_MATMUL, DOMAIN, NM_MATMUL, WEIGHT_INPUTS


def _op_and_attributes(weight: SparseWeight) -> tuple[str, list[ir.Attr]]:
    shape = ir.AttrInt64s("shape", list(weight.shape))
    if isinstance(weight, BsrWeight):
        return BSR_MATMUL, [shape, ir.AttrInt64s("block", list(weight.block))]
    if isinstance(weight, NmWeight):
        return NM_MATMUL, [shape, ir.AttrInt64("n", weight.n), ir.AttrInt64("m", weight.m)]
    if isinstance(weight, CsrWeight):
        return CSR_MATMUL, [shape]
    raise TypeError(f"not a sparse weight format: {type(weight).__name__}")


def _unique_name(graph: ir.Graph, name: str) -> str:
    if name not in graph.initializers:
        return name
    suffix = 1
    while f"{name}.{suffix}" in graph.initializers:
        suffix += 1
    return f"{name}.{suffix}"


def _initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    name = _unique_name(graph, name)
    tensor = ir.tensor(np.ascontiguousarray(array), name=name)
    value = ir.Value(
        name=name, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype), const_value=tensor
    )
    graph.register_initializer(value)
    return value


def make_linear_node(
    weight: SparseWeight, x: ir.Value, bias: ir.Value | None, *, name: str, graph: ir.Graph
) -> ir.Node:
    """The sparse node computing `x @ W.T (+ bias)`; its constants become initializers of `graph`.

    The node is not inserted: the caller places it and rewires the uses.
    """
    op_type, attributes = _op_and_attributes(weight)
    inputs = [x] + [
        _initializer(graph, f"{name}.{label}", array)
        for label, array in zip(WEIGHT_INPUTS[op_type], weight.arrays())
    ]
    if bias is not None:
        inputs.append(bias)
    node = ir.Node(DOMAIN, op_type, inputs, attributes=attributes, name=name, num_outputs=1)
    out = node.outputs[0]
    out.dtype = ir.DataType.FLOAT
    if x.shape is not None and len(x.shape) >= 1:
        out.shape = ir.Shape([*x.shape[:-1], weight.shape[0]])
    return node


def constant_array(node: ir.Node, index: int) -> np.ndarray:
    value = node.inputs[index] if index < len(node.inputs) else None
    tensor = None if value is None else value.const_value
    if tensor is None:
        label = value.name if value is not None else f"input {index}"
        raise VerificationError(
            f"{node.op_type} node '{node.name}': {label} must be a constant (initializer)"
        )
    return tensor.numpy()


def weight_from_node(node: ir.Node) -> SparseWeight:
    """The weight format held by a sparse node's constant inputs."""
    if node.op_type not in WEIGHT_INPUTS or node.domain != DOMAIN:
        raise VerificationError(f"node '{node.name}' ({node.domain}::{node.op_type}) is not a sparse op")
    attrs = node.attributes
    shape = tuple(attrs.get_ints("shape", ()))
    arrays = [constant_array(node, i + 1) for i in range(len(WEIGHT_INPUTS[node.op_type]))]
    if node.op_type == BSR_MATMUL:
        return BsrWeight(*arrays, shape=shape, block=tuple(attrs.get_ints("block", ())))
    if node.op_type == NM_MATMUL:
        return NmWeight(*arrays, shape=shape, n=attrs.get_int("n", 0), m=attrs.get_int("m", 0))
    return CsrWeight(*arrays, shape=shape)


def bias_of(node: ir.Node) -> np.ndarray | None:
    """The constant bias of a sparse node, or None."""
    index = 1 + len(WEIGHT_INPUTS[node.op_type])
    if len(node.inputs) <= index or node.inputs[index] is None:
        return None
    return constant_array(node, index)
