"""The linear layers the TVM backend runs with its own kernels, and the tokens each one sees.

Kernel selection (and tuning) needs each layer's weight and its static number of rows of
X (`m`, leading dimensions folded) before anything is lowered. The IR knows `m` for the
graphs exporters write with static shapes; where it does not (a TorchScript export with
shapes computed at run time), one onnxruntime run on the example inputs measures it.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import onnx
import onnx_ir as ir

from sparsecc import ops
from sparsecc.backends.tvm.kernels.conv_cpu import ConvGeometry, Epilogue
from sparsecc.ops.metadata import WEIGHT_NAME
from sparsecc.passes.conv import match_conv
from sparsecc.passes.linear import match_linear, weight_name

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class LinearLayer:
    """One layer to lower: `node` computes X[m, in] @ W.T (+ bias) for a weight known now."""

    node: str  # the node's name (unique in the graph)
    weight: ops.SparseWeight | np.ndarray  # sparse, or the dense W[out, in]
    bias: np.ndarray | None
    m: int
    name: str  # the user-facing weight name: the report row it fills
    bias_add: str | None = None  # a dense layer's `Add(Y, b)` node, whose bias the kernel adds


def _candidates(model: ir.Model) -> list[tuple[ir.Node, str]]:
    """(node, name) for sparse ops, and MatMul of a float X by a constant 2-D float matrix."""
    found = []
    for node in model.graph:
        if ops.is_conv_node(node):
            continue  # find_conv_layers
        if ops.is_sparse_node(node):
            found.append((node, node.metadata_props.get(WEIGHT_NAME) or node.name))
        elif node.op_type == "MatMul" and node.domain in ("", "ai.onnx") and len(node.inputs) == 2:
            x, wt = node.inputs
            tensor = None if wt is None else wt.const_value
            if tensor is None or tensor.dtype != ir.DataType.FLOAT or len(tensor.shape) != 2:
                continue
            if (
                x is None
                or x.dtype not in (ir.DataType.FLOAT, None)
                or (x.shape is not None and len(x.shape) < 2)
            ):
                continue
            found.append((node, weight_name(wt)))
    return found


def _static_rows(value: ir.Value) -> int | None:
    shape = value.shape
    if shape is None or len(shape) < 2 or not all(isinstance(d, int) for d in shape):
        return None
    return int(math.prod(shape[:-1]))


def _measured_shapes(model: ir.Model, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, tuple]:
    """Run the model once in onnxruntime with `names` as extra outputs; their shapes."""
    import onnxruntime as ort

    proto = ir.serde.serialize_model(model)
    known = {o.name for o in proto.graph.output}
    for name in names:
        if name not in known:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    values = session.run(names, {k: v for k, v in feeds.items() if k in wanted})
    return {name: tuple(value.shape) for name, value in zip(names, values)}


def find_layers(
    model: ir.Model, feeds: dict[str, np.ndarray], tokens: int | None = None
) -> list[LinearLayer]:
    """Every layer the lowering gives one of our kernels, with its `m` for these inputs. `tokens`: the
    rows every linear sees where the IR leaves them symbolic (a decoder's one-token step), known
    without a run (a run of a model past 2 GB would need its weights serialised once more)."""
    candidates = _candidates(model)
    rows = {node.name: _static_rows(node.inputs[0]) or tokens for node, _ in candidates}
    missing = [node.inputs[0].name for node, _ in candidates if rows[node.name] is None]
    if missing:
        logger.info("measuring the input shapes of %d linear layers with onnxruntime", len(missing))
        shapes = _measured_shapes(model, sorted(set(missing)), feeds)
        for node, _ in candidates:
            shape = shapes.get(node.inputs[0].name)
            if rows[node.name] is None and shape is not None and len(shape) >= 2:
                rows[node.name] = int(math.prod(shape[:-1]))
    layers = []
    for node, name in candidates:
        if rows[node.name] is None:
            continue  # rank-1 X after all: TVM's own matmul
        bias_add = None
        if ops.is_sparse_node(node):
            weight, bias = ops.weight_from_node(node), ops.bias_of(node)
        else:
            weight, bias = np.ascontiguousarray(node.inputs[1].const_value.numpy().T, np.float32), None
            match = match_linear(node)
            if match is not None and match.add is not None:  # the kernel adds the bias (one pass over Y less)
                bias, bias_add = match.b().astype(np.float32), match.add.name
        layers.append(LinearLayer(node.name, weight, bias, rows[node.name], name, bias_add))
    return layers


@dataclasses.dataclass
class ConvLayer:
    """One Conv to lower with the Conv kernel, and the nodes after it whose work the kernel does."""

    node: str  # the Conv (or sparse Conv-form) node's name
    weight: ops.SparseWeight | np.ndarray  # sparse, or the dense W[O, C/group * kh * kw]
    bias: np.ndarray | None
    geometry: ConvGeometry
    name: str  # the user-facing weight name: the report row it fills
    epilogue: Epilogue
    residual: str | None = None  # the value added to Y (an Add after the Conv), when fused
    absorbed: tuple[str, ...] = ()  # the Add / Relu / Clip nodes the kernel applies (they pass Y on)
    input: str = ""  # the value X
    output: str = ""  # the value the kernel writes: Y, or the last absorbed node's output


@dataclasses.dataclass(frozen=True)
class ConvCall:
    """How the importer calls one Conv kernel: what it absorbs, and the layouts it reads and writes
    (blocked: [N, C/L, H, W, L], see `layouts.py`; else NCHW)."""

    residual: str | None
    absorbed: tuple[str, ...]
    out_shape: tuple[int, int, int, int]  # NCHW
    blocked_input: bool = False
    blocked_output: bool = False


def _only_use(value: ir.Value, op_types: tuple[str, ...]) -> ir.Node | None:
    """The one node using `value` when it is one of `op_types` (standard domain) and value is internal."""
    uses = list(value.uses())
    if len(uses) != 1 or value.is_graph_output():
        return None
    node = uses[0].node
    return node if node.op_type in op_types and node.domain in ("", "ai.onnx") else None


def _clip_bounds(node: ir.Node) -> tuple[float, float] | None:
    bounds = []
    for index, default in ((1, -np.inf), (2, np.inf)):
        value = node.inputs[index] if len(node.inputs) > index else None
        if value is None:
            bounds.append(default)
        elif value.const_value is not None and value.const_value.numpy().size == 1:
            bounds.append(float(value.const_value.numpy().reshape(())))
        else:
            return None
    return bounds[0], bounds[1]


def _epilogue(conv: ir.Node, claimed: set[str]) -> tuple[Epilogue, str | None, tuple[str, ...], str]:
    """Conv -> [Add(residual)] -> [Relu | Clip with constant bounds]: what the kernel can apply, and
    the value it then writes.

    `claimed`: nodes another Conv's kernel applies already (two Convs meet at a ResNet block's Add)."""
    y, residual, absorbed = conv.outputs[0], None, []
    add = _only_use(y, ("Add",))
    if add is not None and add.name not in claimed:
        other = add.inputs[1] if add.inputs[0] is y else add.inputs[0]
        if other is not None and other is not y and other.shape == y.shape and other.const_value is None:
            residual, y = other.name, add.outputs[0]
            absorbed.append(add.name)
    activation, clip = "none", (0.0, 6.0)
    after = _only_use(y, ("Relu", "Clip"))
    if after is not None and after.name in claimed:
        after = None
    if after is not None and after.op_type == "Relu":
        activation = "relu"
    elif after is not None and (bounds := _clip_bounds(after)) is not None:
        activation, clip = "clip", bounds
    if activation != "none":
        absorbed.append(after.name)
        y = after.outputs[0]
    return Epilogue(residual is not None, activation, clip), residual, tuple(absorbed), y.name


def _geometry(node: ir.Node, x_shape: tuple, out: int, kernel: tuple[int, int]) -> ConvGeometry:
    get = node.attributes
    return ConvGeometry(
        *(int(d) for d in x_shape),
        out,
        *kernel,
        strides=tuple(get.get_ints("strides", (1, 1))),
        pads=tuple(get.get_ints("pads", (0, 0, 0, 0))),
        dilations=tuple(get.get_ints("dilations", (1, 1))),
        groups=get.get_int("group", 1),
    )


def _conv_weight(node: ir.Node):
    """(W[O, K] or SparseWeight, bias, kernel (kh, kw), name) of a Conv the kernel can take, or None."""
    if ops.is_conv_node(node):
        weight = ops.weight_from_node(node)
        kernel = tuple(node.attributes.get_ints("kernel_shape"))
        return weight, ops.bias_of(node), kernel, node.metadata_props.get(WEIGHT_NAME) or node.name
    match = match_conv(node)
    if match is None:
        return None
    kernel = match.attributes()["kernel_shape"]
    bias = match.b()
    return match.w(), None if bias is None else bias.astype(np.float32), kernel, match.name


def find_conv_layers(model: ir.Model, feeds: dict[str, np.ndarray]) -> list[ConvLayer]:
    """Every 2-D Conv with a constant weight (dense or a sparse Conv form), its static geometry and
    the epilogue it absorbs; input shapes the IR does not know are measured with onnxruntime."""
    found = [(node, w) for node in model.graph if (w := _conv_weight(node)) is not None]
    shapes = {
        node.name: tuple(node.inputs[0].shape)
        for node, _ in found
        if node.inputs[0].shape is not None
        and len(node.inputs[0].shape) == 4
        and all(isinstance(d, int) for d in node.inputs[0].shape)
    }
    missing = sorted({node.inputs[0].name for node, _ in found if node.name not in shapes})
    if missing:
        measured = _measured_shapes(model, missing, feeds)
        for node, _ in found:
            shape = measured.get(node.inputs[0].name)
            if node.name not in shapes and shape is not None and len(shape) == 4:
                shapes[node.name] = shape
    layers, claimed = [], set()
    for node, (weight, bias, kernel, name) in found:
        if node.name not in shapes:
            continue
        epilogue, residual, absorbed, output = _epilogue(node, claimed)
        claimed.update(absorbed)
        geometry = _geometry(node, shapes[node.name], weight.shape[0], kernel)
        layers.append(
            ConvLayer(
                node.name,
                weight,
                bias,
                geometry,
                name,
                epilogue,
                residual,
                absorbed,
                node.inputs[0].name,
                output,
            )
        )
    return layers
