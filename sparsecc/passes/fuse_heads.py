"""fuse-heads: each attention layer -> one `PatternAttention` per group of heads with one pattern.

The head-pattern table comes from the constructor (a spec's) or from the model's metadata,
where search-heads left it. Per layer, heads with equal patterns form a group (groups in order
of first appearance, skipped heads last): that is the layer's new head order. Skipped heads
are not computed; their outputs are zeros.

Heads are put in that order inside the weights where the graph allows it, so no Gather runs:
- Q, K, V: when each is `MatMul(X, W) [+ b] -> Reshape([B, N, H, d]) -> Transpose(0, 2, 1, 3)`
  with W and b constant initializers used by that projection only, W's columns and b are
  permuted by head, and each group reads its heads with one Slice. Otherwise each group takes
  its heads with a Gather (a Slice when they happen to be contiguous).
- The output: when the output projection (`attention_heads.output_projection`) has a constant
  weight used there only, its rows are permuted, and the groups' outputs concatenated (skipped
  heads as zeros) feed it directly. Otherwise a Gather puts the heads back in their order.
Either way each layer computes what the masked-dense model does (`attention_heads.apply_masks`),
up to float rounding; the log says where a Gather stays, and why.

Each group, and each layer's skipped heads, becomes an `AttentionGroup` row of the context's
report (a backend fills in its kernel).

Not done yet: dropping the skipped heads' weights (their Q/K/V columns are still computed).
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from sparsecc.errors import SpecError
from sparsecc.ops import pattern_attention
from sparsecc.passes.attention_heads import AttentionLayer, attention_layers, output_projection
from sparsecc.passes.context import AttentionGroup, CompileContext
from sparsecc.sparsity.attention_patterns import HeadPattern, TokenLayout, density
from sparsecc.sparsity.head_table import METADATA_KEY, HeadTable

logger = logging.getLogger(__name__)


class FuseHeadsPass(ir.passes.InPlacePass):
    """Rewrite attention layers into PatternAttention groups after a head-pattern table."""

    def __init__(self, table: HeadTable | None = None, context: CompileContext | None = None):
        super().__init__()
        self.table = table
        self.context = context  # where the groups are reported, when given

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
            groups = _fuse(layer, index, list(heads.patterns), table.layout)
            if self.context is not None:
                self.context.attention.extend(groups)
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


# -- heads inside the weights ------------------------------------------------------------------------
def _private_constant(value: ir.Value | None) -> str | None:
    """Why `value` cannot be permuted in place (None: a constant initializer with one use)."""
    if value is None or value.const_value is None or not value.is_initializer():
        return "not a constant initializer"
    if value.is_graph_input() or value.is_graph_output():
        return f"'{value.name}' is a graph input or output"
    if len(list(value.uses())) != 1:
        return f"'{value.name}' is used elsewhere"
    return None


def _producer(value: ir.Value, op_type: str) -> ir.Node | None:
    """The standard-domain `op_type` node that makes `value`, when `value` has no other use."""
    node = value.producer()
    if node is None or node.op_type != op_type or node.domain != "" or len(list(value.uses())) != 1:
        return None
    return None if value.is_graph_output() else node


def _input_projection(x: ir.Value, heads: int, head_dim: int) -> tuple[list[ir.Value], str]:
    """The constants holding `x`'s heads along their last axis ([W] or [W, b]), or [] and why not."""
    transpose = _producer(x, "Transpose")
    if transpose is None or list(transpose.attributes.get_ints("perm", [])) != [0, 2, 1, 3]:
        return [], f"'{x.name}' is not made by Transpose(0, 2, 1, 3)"
    reshape = _producer(transpose.inputs[0], "Reshape")
    y = None if reshape is None else reshape.inputs[0]
    if y is None or y.shape is None or y.shape.rank() != 3 or y.shape[2] != heads * head_dim:
        return [], f"'{x.name}' is not a Reshape of [B, N, {heads * head_dim}] into heads"
    constants, node = [], y.producer()
    if node is not None and node.op_type == "Add" and node.domain == "" and len(list(y.uses())) == 1:
        bias = next((v for v in node.inputs if v is not None and v.const_value is not None), None)
        other = next((v for v in node.inputs if v is not bias), None)
        if bias is None or other is None or bias.shape is None or list(bias.shape) != [heads * head_dim]:
            return [], f"the bias Add of '{x.name}' has no 1-D constant bias"
        constants.append(bias)
        y, node = other, other.producer()
    if node is None or node.op_type != "MatMul" or node.domain != "" or len(list(y.uses())) != 1:
        return [], f"'{x.name}' is not a MatMul's output"
    w = node.inputs[1]
    if w is None or w.shape is None or w.shape.rank() != 2 or w.shape[1] != heads * head_dim:
        return [], f"the MatMul of '{x.name}' has no [D, {heads * head_dim}] weight"
    constants.insert(0, w)
    why = next((why for c in constants if (why := _private_constant(c))), None)
    return ([], why) if why else (constants, "")


def _output_projection(layer: AttentionLayer, value_dim: int) -> tuple[ir.Value | None, str]:
    """The output projection's weight [H*dv, D] when its rows can be permuted, or None and why not."""
    matmul = output_projection(layer.node)
    if matmul is None:
        return None, "no output projection of the form Transpose -> Reshape -> MatMul"
    w = matmul.inputs[1]
    if w.shape is None or w.shape.rank() != 2 or w.shape[0] != layer.heads * value_dim:
        return None, f"the output projection's weight is not [{layer.heads * value_dim}, D]"
    why = _private_constant(w)
    return (None, why) if why else (w, "")


def _permute_heads(value: ir.Value, order: list[int], axis: int) -> None:
    """Reorder the heads (equal chunks along `axis`) of a constant in place."""
    array = value.const_value.numpy()
    shape = list(array.shape)
    split = [*shape[:axis], len(order), shape[axis] // len(order), *shape[axis + 1 :]]
    permuted = np.take(array.reshape(split), order, axis=axis).reshape(shape)
    value.const_value = ir.tensor(np.ascontiguousarray(permuted), name=value.const_value.name or value.name)


def _heads_into_weights(layer: AttentionLayer, order: list[int], value_dim: int) -> tuple[bool, bool]:
    """Permute the heads of Q/K/V's and the output projection's weights into `order` where the
    graph allows it; (inputs permuted, output permuted)."""
    q, k, v = layer.node.inputs[:3]
    found = [
        _input_projection(q, layer.heads, layer.head_dim),
        _input_projection(k, layer.heads, layer.head_dim),
        _input_projection(v, layer.heads, value_dim),
    ]
    inputs_ok = all(constants for constants, _ in found) and len({id(x) for x in (q, k, v)}) == 3
    if inputs_ok:
        for constants, _ in found:
            for c in constants:
                _permute_heads(c, order, axis=c.shape.rank() - 1)
    else:
        why = next((why for constants, why in found if not constants), "Q, K and V are not distinct values")
        logger.info("fuse-heads %s: Q, K, V heads gathered at run time: %s", layer.node.name, why)
    w_o, why = _output_projection(layer, value_dim)
    if w_o is not None:
        _permute_heads(w_o, order, axis=0)
    else:
        logger.info("fuse-heads %s: output heads reordered by a Gather at run time: %s", layer.node.name, why)
    return inputs_ok, w_o is not None


# -- the rewrite ------------------------------------------------------------------------------------
def _fuse(
    layer: AttentionLayer, index: int, patterns: list[HeadPattern], layout: TokenLayout
) -> list[AttentionGroup]:
    node, graph = layer.node, layer.node.graph
    q, k, v = node.inputs[:3]
    batch, _, tokens, dv = v.shape
    scale = node.attributes.get_float("scale", 1.0 / np.sqrt(layer.head_dim))
    groups = _groups(patterns)
    skipped = [h for h, p in enumerate(patterns) if p.mode == "skip"]
    order = [h for _, heads in groups for h in heads] + skipped  # the new head order
    identity = order == list(range(len(patterns)))
    inputs_permuted, output_permuted = (True, True) if identity else _heads_into_weights(layer, order, dv)
    position = {head: i for i, head in enumerate(order)}  # where each head sits in Q, K, V now
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

    outputs, rows = [], []
    for g, (pattern, heads) in enumerate(groups):
        at = [position[h] for h in heads] if inputs_permuted else heads
        qg, kg, vg = (take(x, at, f"group{g}.{t}") for x, t in ((q, "q"), (k, "k"), (v, "v")))
        fused = pattern_attention.make_node(
            qg, kg, vg, pattern, layout, head_dim=layer.head_dim, scale=scale, name=f"{node.name}.group{g}"
        )
        new_nodes.append(fused)
        outputs.append(fused.outputs[0])
        rows.append(
            AttentionGroup(
                node.name,
                index,
                pattern.mode,
                tuple(heads),
                density(pattern, layout),
                fused.name,
                pattern.to_dict(),
            )
        )
    if skipped:  # zeros for the skipped heads, after the groups
        zero_shape = const(f"{node.name}.zero_shape", np.array([batch, len(skipped), tokens, dv], np.int64))
        zero = ir.Node(
            "",
            "ConstantOfShape",
            [zero_shape],
            [ir.AttrTensor("value", ir.tensor(np.zeros(1, np.float32)))],
            name=f"{node.name}.zero_heads",
        )
        zero.outputs[0].shape, zero.outputs[0].type = (
            ir.Shape([batch, len(skipped), tokens, dv]),
            ir.TensorType(ir.DataType.FLOAT),
        )
        new_nodes.append(zero)
        outputs.append(zero.outputs[0])
        rows.append(AttentionGroup(node.name, index, "skip", tuple(skipped), 0.0, pattern={"mode": "skip"}))
    shape = [batch, len(patterns), tokens, dv]
    out = outputs[0] if len(outputs) == 1 else add("Concat", outputs, f"{node.name}.concat", shape, axis=1)
    if not output_permuted:
        back = [position[h] for h in range(len(patterns))]
        out = add(
            "Gather",
            [out, const(f"{node.name}.order", np.array(back, np.int64))],
            f"{node.name}.reorder",
            shape,
            axis=1,
        )
    graph.insert_before(node, new_nodes)
    ir.convenience.replace_all_uses_with(node.outputs[0], out)
    if node.outputs[0].is_graph_output():
        graph.outputs[graph.outputs.index(node.outputs[0])] = out
    graph.remove(node, safe=True)
    reorder = _reorder_label(identity, inputs_permuted, output_permuted)
    for row in rows:
        row.reorder = reorder
    return rows


def _reorder_label(identity: bool, inputs_permuted: bool, output_permuted: bool) -> str:
    """How the layer's heads were grouped, for the report."""
    if identity:
        return "none needed"
    if inputs_permuted and output_permuted:
        return "in the weights"
    parts = ["Q/K/V: weights" if inputs_permuted else "Q/K/V: Gather"]
    parts.append("output: weights" if output_permuted else "output: Gather")
    return ", ".join(parts)


def _attr(name: str, value) -> ir.Attr:
    return ir.AttrInt64(name, int(value))
