"""Build sparse-op nodes from weights and read weights back from nodes, for every registered op."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparsecc.errors import VerificationError
from sparsecc.ops.base import DOMAIN, OPS, SparseWeight, op_of
from sparsecc.ops.metadata import INITIALIZER_NAME, WEIGHT_NAME


def is_sparse_node(node: ir.Node) -> bool:
    return node.domain == DOMAIN and node.op_type in OPS


def is_conv_node(node: ir.Node) -> bool:
    """A sparse op's Conv form (X in NCHW)."""
    return is_sparse_node(node) and OPS[node.op_type].conv


def _attr(name: str, value) -> ir.Attr:
    return ir.AttrInt64s(name, list(value)) if isinstance(value, tuple) else ir.AttrInt64(name, int(value))


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
    weight: SparseWeight,
    x: ir.Value,
    bias: ir.Value | None,
    *,
    name: str,
    graph: ir.Graph,
    names: dict[str, str] | None = None,
) -> ir.Node:
    """The sparse node computing `x @ W.T (+ bias)`; its constants become initializers of `graph`.

    `names` (WEIGHT_NAME / INITIALIZER_NAME -> value) is kept as the node's metadata so reports
    can name the layer. The node is not inserted: the caller places it and rewires the uses.
    """
    op = op_of(weight)
    inputs = [x] + [
        _initializer(graph, f"{name}.{label}", array) for label, array in zip(op.inputs, weight.arrays())
    ]
    if bias is not None:
        inputs.append(bias)
    attributes = [_attr(key, value) for key, value in op.attribute_values(weight).items()]
    node = ir.Node(DOMAIN, op.op_type, inputs, attributes=attributes, name=name, num_outputs=1)
    for key in (WEIGHT_NAME, INITIALIZER_NAME):
        if names and names.get(key):
            node.metadata_props[key] = names[key]
    out = node.outputs[0]
    out.dtype = ir.DataType.FLOAT
    if x.shape is not None and len(x.shape) >= 1:
        out.shape = ir.Shape([*x.shape[:-1], weight.shape[0]])
    return node


def make_conv_node(
    weight: SparseWeight,
    x: ir.Value,
    bias: ir.Value | None,
    conv_attributes: dict[str, int | tuple[int, ...]],
    *,
    name: str,
    graph: ir.Graph,
    names: dict[str, str] | None = None,
) -> ir.Node:
    """The Conv-form sparse node (`conv.py`) of a Conv whose flattened weight is `weight`.

    `conv_attributes`: kernel_shape, strides, pads, dilations, group, all given. Not inserted."""
    from sparsecc.ops.conv import conv_op_of

    op = conv_op_of(weight)
    node = make_linear_node(weight, x, bias, name=name, graph=graph, names=names)
    node.op_type = op.op_type
    for key, value in conv_attributes.items():
        node.attributes[key] = _attr(key, value)
    node.outputs[0].shape = None  # the caller copies the Conv's output shape
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


def attribute_values(node: ir.Node) -> dict:
    """The node's attributes as the op declares them (ints -> tuple, int -> int; missing -> absent)."""
    values = {}
    for attribute in op_of(node.op_type).attributes:
        attr = node.attributes.get(attribute.name)
        if attr is not None:
            values[attribute.name] = tuple(attr.value) if attribute.count is not None else int(attr.value)
    return values


def weight_from_node(node: ir.Node) -> SparseWeight:
    """The weight held by a sparse node's constant inputs."""
    if not is_sparse_node(node):
        raise VerificationError(f"node '{node.name}' ({node.domain}::{node.op_type}) is not a sparse op")
    op = op_of(node.op_type)
    arrays = [constant_array(node, i + 1) for i in range(len(op.inputs))]
    return op.weight_from(arrays, attribute_values(node))


def bias_of(node: ir.Node) -> np.ndarray | None:
    """The constant bias of a sparse node, or None."""
    index = 1 + len(op_of(node.op_type).inputs)
    if len(node.inputs) <= index or node.inputs[index] is None:
        return None
    return constant_array(node, index)
