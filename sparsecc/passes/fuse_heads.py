"""fuse-heads: each attention layer -> one `PatternAttention` per group of heads with one pattern.

The head-pattern table comes from the constructor (a spec's) or from the model's metadata,
where search-heads left it. Per layer, heads with equal patterns form a group (in order of
first appearance); each group takes its heads of Q, K, V (a Slice when they are contiguous,
a Gather otherwise) and runs one PatternAttention; skipped heads are not computed at all.
The groups' outputs are concatenated and put back in the original head order, skipped heads
as zeros, so the layer's consumers (its output projection) see the same tensor as in the
masked-dense model (`attention_heads.apply_masks`), up to float rounding.

Not done yet: permuting the Q/K/V projections' rows and the output projection's columns so
the groups are contiguous in the weights and the final reorder disappears (and dropping the
skipped heads' weights); the reorder here is a Gather of the attention output.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparsecc.errors import SpecError
from sparsecc.ops import pattern_attention
from sparsecc.passes.attention_heads import AttentionLayer, attention_layers
from sparsecc.sparsity.attention_patterns import HeadPattern, TokenLayout
from sparsecc.sparsity.head_table import METADATA_KEY, HeadTable


class FuseHeadsPass(ir.passes.InPlacePass):
    """Rewrite attention layers into PatternAttention groups after a head-pattern table."""

    def __init__(self, table: HeadTable | None = None):
        super().__init__()
        self.table = table

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        table = self.table
        if table is None and METADATA_KEY in model.metadata_props:
            table = HeadTable.from_yaml(model.metadata_props[METADATA_KEY])
        if table is None:
            return ir.passes.PassResult(model, False)
        layers = attention_layers(model, table.layout)
        if len(layers) != len(table.layers):
            raise SpecError(
                f"the head-pattern table has {len(table.layers)} layers, the model {len(layers)} attention "
                f"layers of {table.layout.tokens} tokens"
            )
        modified = False
        for index, (layer, heads) in enumerate(zip(layers, table.layers)):
            if len(heads.patterns) != layer.heads:
                raise SpecError(
                    f"head-pattern table layer {index}: {len(heads.patterns)} heads, the model's has {layer.heads}"
                )
            if all(p.mode == "full" for p in heads.patterns):
                continue
            _fuse(layer, list(heads.patterns), table.layout)
            modified = True
        if modified:
            pattern_attention.attach_function(model)
        return ir.passes.PassResult(model, modified)


def _groups(patterns: list[HeadPattern]) -> list[tuple[HeadPattern, list[int]]]:
    groups: dict[HeadPattern, list[int]] = {}
    for head, pattern in enumerate(patterns):
        if pattern.mode != "skip":
            groups.setdefault(pattern, []).append(head)
    return list(groups.items())


def _fuse(layer: AttentionLayer, patterns: list[HeadPattern], layout: TokenLayout) -> None:
    node, graph = layer.node, layer.node.graph
    q, k, v = node.inputs[:3]
    batch, _, tokens, dv = v.shape
    scale = node.attributes.get_float("scale", 1.0 / np.sqrt(layer.head_dim))
    new_nodes: list[ir.Node] = []

    def add(op_type: str, inputs, name: str, shape, **attributes) -> ir.Value:
        created = ir.Node("", op_type, inputs, [_attr(n, a) for n, a in attributes.items()], name=name)
        created.outputs[0].shape, created.outputs[0].type = ir.Shape(shape), ir.TensorType(ir.DataType.FLOAT)
        new_nodes.append(created)
        return created.outputs[0]

    def const(name: str, array: np.ndarray) -> ir.Value:
        value = ir.Value(
            name=name,
            shape=ir.Shape(array.shape),
            type=ir.TensorType(ir.DataType.INT64),
            const_value=ir.tensor(array, name=name),
        )
        graph.register_initializer(value)
        return value

    def take(x: ir.Value, heads: list[int], tag: str) -> ir.Value:
        shape = [x.shape[0], len(heads), x.shape[2], x.shape[3]]
        name = f"{node.name}.{tag}"
        if heads == list(range(heads[0], heads[-1] + 1)):
            starts, ends, axes = (
                const(f"{name}.{t}", np.array([a], np.int64))
                for t, a in (("start", heads[0]), ("end", heads[-1] + 1), ("axis", 1))
            )
            return add("Slice", [x, starts, ends, axes], name, shape)
        return add("Gather", [x, const(f"{name}.heads", np.array(heads, np.int64))], name, shape, axis=1)

    outputs, order = [], []
    for g, (pattern, heads) in enumerate(_groups(patterns)):
        qg, kg, vg = (take(x, heads, f"group{g}.{t}") for x, t in ((q, "q"), (k, "k"), (v, "v")))
        fused = pattern_attention.make_node(
            qg, kg, vg, pattern, layout, head_dim=layer.head_dim, scale=scale, name=f"{node.name}.group{g}"
        )
        new_nodes.append(fused)
        outputs.append(fused.outputs[0])
        order.extend(heads)
    skipped = [h for h, p in enumerate(patterns) if p.mode == "skip"]
    if skipped:  # one zero head that every skipped head reads
        zero_shape = const(f"{node.name}.zero_shape", np.array([batch, 1, tokens, dv], np.int64))
        zero = ir.Node(
            "",
            "ConstantOfShape",
            [zero_shape],
            [ir.AttrTensor("value", ir.tensor(np.zeros(1, np.float32)))],
            name=f"{node.name}.zero_head",
        )
        zero.outputs[0].shape, zero.outputs[0].type = (
            ir.Shape([batch, 1, tokens, dv]),
            ir.TensorType(ir.DataType.FLOAT),
        )
        new_nodes.append(zero)
        outputs.append(zero.outputs[0])
    shape = [batch, len(order) + bool(skipped), tokens, dv]
    out = outputs[0] if len(outputs) == 1 else add("Concat", outputs, f"{node.name}.concat", shape, axis=1)
    position = {head: i for i, head in enumerate(order)}
    back = [position.get(h, len(order)) for h in range(len(patterns))]
    if back != list(range(shape[1])):
        out = add(
            "Gather",
            [out, const(f"{node.name}.order", np.array(back, np.int64))],
            f"{node.name}.reorder",
            [batch, len(patterns), tokens, dv],
            axis=1,
        )
    graph.insert_before(node, new_nodes)
    ir.convenience.replace_all_uses_with(node.outputs[0], out)
    if node.outputs[0].is_graph_output():
        graph.outputs[graph.outputs.index(node.outputs[0])] = out
    graph.remove(node, safe=True)


def _attr(name: str, value) -> ir.Attr:
    return ir.AttrInt64(name, int(value))
