"""Convolutions as weighted layers: what the sparsity passes see of a Conv.

A `Conv(X, W[, b])` with a constant float32 W `[O, C/group, kh, kw]` (2-D, NCHW) is a layer
whose weight is the matrix `W[O, C/group * kh * kw]`: the spec, `analyze-sparsity`, `prune`,
`dense-to-sparse` and the report treat it as they treat a linear layer's W (`linear.py`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx_ir as ir

from sparsecc.passes.linear import (
    LinearMatch,
    constant_of,
    find_linears,
    initializer_name,
    release_mapped,
    replace_weight,
    set_weight,
    weight_name,
)
from sparsecc.passes.pruned_weight import pruned_weight


@dataclasses.dataclass
class ConvMatch:
    """One Conv with a constant weight."""

    conv: ir.Node
    x: ir.Value
    weight: ir.Value  # initializer [O, C/group, kh, kw]
    bias: ir.Value | None  # initializer [O]

    @property
    def output(self) -> ir.Value:
        return self.conv.outputs[0]

    @property
    def name(self) -> str:
        return weight_name(self.weight)

    @property
    def initializer_name(self) -> str:
        return initializer_name(self.weight)

    @property
    def names(self) -> tuple[str, str]:
        return self.name, self.initializer_name

    @property
    def shape(self) -> tuple[int, int]:
        """The flattened W's shape [O, C/group * kh * kw]."""
        o, *rest = self.weight.const_value.shape
        return int(o), int(math.prod(rest))

    @property
    def tokens(self) -> int | None:
        """Output positions per call (N x OH x OW), when the IR knows them: the GEMM's rows."""
        shape = self.output.shape
        if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape):
            return None
        return int(shape[0] * shape[2] * shape[3])

    def w(self) -> np.ndarray:
        """W[O, C/group * kh * kw], float32."""
        w = np.array(self.weight.const_value.numpy().reshape(self.shape), dtype=np.float32, order="C")
        release_mapped(self.weight.const_value)
        return w

    def b(self) -> np.ndarray | None:
        return None if self.bias is None else self.bias.const_value.numpy()

    def as_stored(self, array: np.ndarray) -> np.ndarray:
        """An array shaped like the flattened W[O, C/group * kh * kw] as the initializer lays it out."""
        return array.reshape(tuple(int(d) for d in self.weight.const_value.shape))

    def attributes(self) -> dict[str, int | tuple[int, ...]]:
        """Conv's attributes with ONNX's defaults filled in (explicit pads: auto_pad is refused)."""
        kh, kw = self.weight.const_value.shape[2:]
        get = self.conv.attributes
        return {
            "kernel_shape": (int(kh), int(kw)),
            "strides": tuple(get.get_ints("strides", (1, 1))),
            "pads": tuple(get.get_ints("pads", (0, 0, 0, 0))),
            "dilations": tuple(get.get_ints("dilations", (1, 1))),
            "group": get.get_int("group", 1),
        }


def match_conv(node: ir.Node) -> ConvMatch | None:
    """A 2-D Conv with a constant float32 weight (and bias), explicit pads; or None."""
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
        return None
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    tensor = constant_of(w)
    if x is None or tensor is None or tensor.dtype != ir.DataType.FLOAT or len(tensor.shape) != 4:
        return None
    if bias is not None and constant_of(bias) is None:
        return None
    if node.attributes.get_string("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return None
    return ConvMatch(node, x, w, bias)


def find_convs(graph: ir.Graph) -> list[ConvMatch]:
    return [m for m in (match_conv(n) for n in graph) if m is not None]


WeightedMatch = LinearMatch | ConvMatch


def find_weighted(graph: ir.Graph) -> list[WeightedMatch]:
    """Every linear layer and Conv of the main graph whose weight the spec can select, in graph order."""
    order = {id(node): i for i, node in enumerate(graph)}
    found = [*find_linears(graph), *find_convs(graph)]
    return sorted(found, key=lambda m: order[id(m.conv if isinstance(m, ConvMatch) else m.matmul)])


def replace_conv_weight(match: ConvMatch, w: np.ndarray) -> None:
    """Give the Conv a new flattened W; a weight shared with other nodes is copied, not changed."""
    shape = match.weight.const_value.shape
    match.weight = set_weight(match.conv, 1, np.ascontiguousarray(w.reshape(shape), dtype=np.float32))


def replace_weighted(match: WeightedMatch, w: np.ndarray) -> None:
    """Give a linear layer or a Conv a new (flattened) W[out, in]."""
    if isinstance(match, ConvMatch):
        replace_conv_weight(match, w)
    else:
        replace_weight(match, w)


def prune_weighted(match: WeightedMatch, keep: np.ndarray) -> None:
    """Zero W[out, in] where `keep` is False, lazily (`pruned_weight.py`): the values are computed
    when a later pass or a writer reads them."""
    node, index = (match.conv, 1) if isinstance(match, ConvMatch) else (match.matmul, 1)
    tensor = pruned_weight(match.weight.const_value, match.as_stored(keep))
    match.weight = set_weight(node, index, tensor)
