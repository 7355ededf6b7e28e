"""What search-heads and fuse-heads share: the attention layers of a model and their heads.

An attention layer is an opset-23 `Attention` node (what fuse-attention leaves) over 4-D
Q, K, V [B, H, N, d] without mask, past or causality, whose N is the layout's token count.
Its output projection, when the graph has the usual form

    Attention -> Transpose(0, 2, 1, 3) -> Reshape([B, N, H*d]) -> MatMul(., W_o)

(W_o constant, [H*d, D]) weights each head's contribution: the search measures errors there.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx_ir as ir

from sparsecc.sparsity.attention_patterns import HeadPattern, TokenLayout, pattern_mask

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class AttentionLayer:
    node: ir.Node
    heads: int
    head_dim: int
    out_proj: np.ndarray | None  # W_o [H*d, D] when found


def _only_use(value: ir.Value, op_type: str) -> ir.Node | None:
    uses = list(value.uses())
    if len(uses) == 1 and uses[0][0].op_type == op_type and uses[0][0].domain == "":
        return uses[0][0]
    return None


def output_projection(node: ir.Node) -> ir.Node | None:
    """The MatMul that projects the heads' concatenated outputs, when the graph has that form."""
    transpose = _only_use(node.outputs[0], "Transpose")
    if transpose is None or list(transpose.attributes.get_ints("perm", [])) != [0, 2, 1, 3]:
        return None
    reshape = _only_use(transpose.outputs[0], "Reshape")
    matmul = None if reshape is None else _only_use(reshape.outputs[0], "MatMul")
    if matmul is None or matmul.inputs[0] is not reshape.outputs[0] or matmul.inputs[1].const_value is None:
        return None
    return matmul


def attention_layers(model: ir.Model, layout: TokenLayout) -> list[AttentionLayer]:
    """The model's attention layers in graph order (the others are logged and left alone)."""
    layers = []
    for node in model.graph:
        if node.op_type != "Attention" or node.domain != "":
            continue
        q, k, v = node.inputs[:3]
        shapes = [x.shape for x in (q, k, v)]
        if any(s is None or s.rank() != 4 or not all(isinstance(d, int) for d in s) for s in shapes):
            logger.info("attention %s: Q, K, V are not 4-D with static shapes; left dense", node.name)
            continue
        if len(node.inputs) > 3 and any(x is not None for x in node.inputs[3:]):
            logger.info("attention %s has a mask or past inputs; left dense", node.name)
            continue
        if node.attributes.get_int("is_causal", 0) or shapes[0][2] != layout.tokens or shapes[0] != shapes[1]:
            logger.info(
                "attention %s: causal, or not %d tokens self-attention; left dense", node.name, layout.tokens
            )
            continue
        heads, head_dim = shapes[0][1], shapes[0][3]
        matmul = output_projection(node)
        w_o = None if matmul is None else matmul.inputs[1].const_value.numpy()
        if w_o is not None and w_o.shape[0] != heads * shapes[2][3]:
            w_o = None
        layers.append(AttentionLayer(node, heads, head_dim, w_o))
    return layers


def head_masks(patterns, layout: TokenLayout) -> np.ndarray:
    """[H, N, N] bool masks of one layer's heads (a skipped head's: full, its output is gated)."""
    return np.stack([pattern_mask(p, layout) for p in patterns])


def apply_masks(model: ir.Model, node: ir.Node, patterns: list[HeadPattern], layout: TokenLayout) -> None:
    """Rewrite `node` into the masked-dense form of `patterns`: an additive [1, H, N, N] mask
    (0 / -inf) and, when heads are skipped, a [1, H, 1, 1] gate of 0/1 on its output."""
    graph = node.graph
    bias = np.where(head_masks(patterns, layout), 0.0, -np.inf).astype(np.float32)[None]
    mask = _constant(graph, f"{node.name}.pattern_mask", bias)
    masked = ir.Node(
        "", "Attention", [*node.inputs[:3], mask], node.attributes.values(), name=f"{node.name}.masked"
    )
    graph.insert_after(node, masked)
    out = masked.outputs[0]
    out.shape, out.type = node.outputs[0].shape, node.outputs[0].type
    if any(p.mode == "skip" for p in patterns):
        gate = np.array([p.mode != "skip" for p in patterns], np.float32).reshape(1, -1, 1, 1)
        mul = ir.Node(
            "", "Mul", [out, _constant(graph, f"{node.name}.head_gate", gate)], name=f"{node.name}.gated"
        )
        graph.insert_after(masked, mul)
        mul.outputs[0].shape, mul.outputs[0].type = out.shape, out.type
        out = mul.outputs[0]
    ir.convenience.replace_all_uses_with(node.outputs[0], out)
    if node.outputs[0].is_graph_output():
        graph.outputs[graph.outputs.index(node.outputs[0])] = out
    graph.remove(node, safe=True)


def _constant(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    value = ir.Value(
        name=name,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
        const_value=ir.tensor(array, name=name),
    )
    graph.register_initializer(value)
    return value
