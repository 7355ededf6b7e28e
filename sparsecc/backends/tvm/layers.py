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
from sparsecc.ops.metadata import WEIGHT_NAME
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


def find_layers(model: ir.Model, feeds: dict[str, np.ndarray]) -> list[LinearLayer]:
    """Every layer the lowering gives one of our kernels, with its `m` for these inputs."""
    candidates = _candidates(model)
    rows = {node.name: _static_rows(node.inputs[0]) for node, _ in candidates}
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
