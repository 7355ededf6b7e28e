"""The canonical linear form that every sparsity pass works on.

After `canonicalize`, a linear layer with a constant weight is
`MatMul(X, Wt)` with `Wt` a 2-D float initializer holding `W^T` ([in, out]),
optionally followed by `Add(Y, b)` with `b` a 1-D initializer [out] when `Y`
feeds nothing else. Only standard ONNX: a canonical model still runs anywhere.
Each weight initializer carries its user-facing name in metadata (`ops.metadata`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np
import onnx_ir as ir

from sparsecc.ops.metadata import INITIALIZER_NAME, WEIGHT_NAME


@dataclasses.dataclass
class LinearMatch:
    """One linear layer in canonical form."""

    matmul: ir.Node
    x: ir.Value
    weight: ir.Value  # initializer holding W^T [in, out]
    add: ir.Node | None
    bias: ir.Value | None  # initializer [out]

    @property
    def output(self) -> ir.Value:
        return (self.add or self.matmul).outputs[0]

    @property
    def name(self) -> str:
        return weight_name(self.weight)

    @property
    def initializer_name(self) -> str:
        return initializer_name(self.weight)

    @property
    def names(self) -> tuple[str, str]:
        """What spec selectors match: the user-facing name and the initializer name."""
        return self.name, self.initializer_name

    @property
    def tokens(self) -> int | None:
        """Rows of X per call (its leading dimensions multiplied), when the IR knows them."""
        shape = self.x.shape
        if shape is None or len(shape) < 2 or not all(isinstance(d, int) for d in shape[:-1]):
            return None
        return int(math.prod(shape[:-1]))

    @property
    def shape(self) -> tuple[int, int]:
        """W's shape [out, in]."""
        inp, out = self.weight.const_value.shape
        return int(out), int(inp)

    def w(self) -> np.ndarray:
        """W[out, in] in torch layout, float32."""
        w = np.ascontiguousarray(self.weight.const_value.numpy().T, dtype=np.float32)
        release_mapped(self.weight.const_value)
        return w

    def b(self) -> np.ndarray | None:
        return None if self.bias is None else self.bias.const_value.numpy()

    def as_stored(self, array: np.ndarray) -> np.ndarray:
        """An array shaped like W[out, in] as the initializer lays it out (W^T; a view)."""
        return array.T


def release_mapped(tensor: ir.TensorProtocol) -> None:
    """Unmap a weight the frontend left on disk (`external_weights.py`; it maps again when read):
    a pass that read every weight would otherwise hold them all in memory as mapped pages."""
    if isinstance(tensor, ir.ExternalTensor):
        with contextlib.suppress(BufferError):  # a caller still holds a view: it stays mapped
            tensor.release()


def weight_name(value: ir.Value) -> str:
    return value.metadata_props.get(WEIGHT_NAME) or value.name or "<unnamed>"


def initializer_name(value: ir.Value) -> str:
    return value.metadata_props.get(INITIALIZER_NAME) or value.name or ""


def copy_names(source: ir.Value, target: ir.Value) -> None:
    """Carry a weight's names over to the initializer that replaces it."""
    target.metadata_props[WEIGHT_NAME] = weight_name(source)
    target.metadata_props[INITIALIZER_NAME] = initializer_name(source)


def constant_of(value: ir.Value | None) -> ir.TensorProtocol | None:
    """The tensor of an initializer (not a graph input that could be overridden)."""
    if value is None or value.const_value is None or value.is_graph_input():
        return None
    return value.const_value


def is_float_weight(value: ir.Value, rank: int) -> bool:
    tensor = constant_of(value)
    return tensor is not None and tensor.dtype == ir.DataType.FLOAT and len(tensor.shape) == rank


def match_bias_add(matmul: ir.Node, out_features: int) -> tuple[ir.Node, ir.Value] | tuple[None, None]:
    """The `Add(Y, b)` right after the MatMul, when b is a constant [out] and Y feeds only it."""
    y = matmul.outputs[0]
    uses = list(y.uses())
    if len(uses) != 1 or y.is_graph_output():
        return None, None
    add = uses[0].node
    if add.op_type != "Add" or add.domain not in ("", "ai.onnx"):
        return None, None
    other = add.inputs[1 - uses[0].idx]
    if other is None or not is_float_weight(other, 1) or other.const_value.shape[0] != out_features:
        return None, None
    return add, other


def match_linear(node: ir.Node) -> LinearMatch | None:
    """A canonical linear rooted at this MatMul node, or None."""
    if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx") or len(node.inputs) != 2:
        return None
    x, wt = node.inputs
    if x is None or wt is None or not is_float_weight(wt, 2) or constant_of(x) is not None:
        return None
    add, bias = match_bias_add(node, wt.const_value.shape[1])
    return LinearMatch(node, x, wt, add, bias)


def find_linears(graph: ir.Graph) -> list[LinearMatch]:
    """Every canonical linear of the main graph, in graph order."""
    return [m for m in (match_linear(n) for n in graph) if m is not None]


def replace_weight(match: LinearMatch, w: np.ndarray) -> None:
    """Give the layer a new W[out, in]; a weight shared with other nodes is copied, not changed."""
    match.weight = set_weight(match.matmul, 1, np.ascontiguousarray(w.T, dtype=np.float32))


def set_weight(node: ir.Node, index: int, values: np.ndarray | ir.TensorProtocol) -> ir.Value:
    """Put `values` (an array or a tensor) in the initializer that is input `index` of `node` (a
    linear's W^T, a Conv's W); an initializer other nodes use too gets a copy for this node.
    Returns the initializer now used."""
    weight = node.inputs[index]
    tensor = ir.tensor(values) if isinstance(values, np.ndarray) else values
    if len(list(weight.uses())) == 1:
        tensor.name = weight.name
        weight.const_value = tensor
        return weight
    name = f"{weight.name}.{node.name}"
    tensor.name = name
    new = ir.Value(
        name=name,
        shape=ir.Shape(tensor.shape),
        type=ir.TensorType(ir.DataType.FLOAT),
        const_value=tensor,
    )
    copy_names(weight, new)
    node.graph.register_initializer(new)
    node.replace_input_with(index, new)
    return new
