"""What weighted layers see on calibration data: the Gram matrix X^T X of their inputs.

The model runs in onnxruntime with each asked-for layer's input X as an extra graph output,
one calibration batch at a time; each batch's rows of X (a linear's tokens, a Conv's im2col
patches, in the column order of its flattened W) are folded into X^T X (float64) and dropped.
Memory holds the statistics and one batch's activations, never the whole data.

`stages` orders layers for methods that prune layer after layer (SparseGPT): a stage holds the
layers whose inputs depend on no layer of a later stage, so pruning stage by stage, and measuring
each stage with the earlier ones pruned, lets every layer see its pruned predecessors' outputs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from sparsecc.passes.conv import ConvMatch, WeightedMatch


def layer_node(match: WeightedMatch) -> ir.Node:
    return match.conv if isinstance(match, ConvMatch) else match.matmul


def stages(graph: ir.Graph, layers: list[WeightedMatch]) -> list[list[int]]:
    """Indices into `layers`, grouped: stage k's inputs depend only on layers of stages < k."""
    index = {id(layer_node(m)): i for i, m in enumerate(layers)}
    level: dict[int, int] = {}  # id(value) -> 1 + the latest stage it depends on (0: none)
    stage_of: dict[int, int] = {}
    for node in graph:  # graph order is topological
        below = max((level.get(id(v), 0) for v in node.inputs if v is not None), default=0)
        i = index.get(id(node))
        if i is not None:
            stage_of[i] = level.get(id(layers[i].x), 0)
            below = max(below, stage_of[i] + 1)
        for value in node.outputs:
            level[id(value)] = below
    grouped: dict[int, list[int]] = {}
    for i in sorted(stage_of):
        grouped.setdefault(stage_of[i], []).append(i)
    return [grouped[k] for k in sorted(grouped)]


def input_grams(model: ir.Model, layers: list[WeightedMatch], batches: Iterable) -> list[np.ndarray]:
    """X^T X (float64 [in, in]) of each layer's input rows over all `batches` ({input: array})."""
    values = list({id(m.x): m.x for m in layers}.values())
    grams = [np.zeros((m.shape[1], m.shape[1]), dtype=np.float64) for m in layers]
    with tempfile.TemporaryDirectory(prefix="sparsecc-calibrate-") as folder:
        session = session_with_outputs(model, values, Path(folder))
        wanted = [v.name for v in values if not v.is_graph_input()]
        for batch in batches:
            fetched = dict(zip(wanted, session.run(wanted, batch))) if wanted else {}
            for match, gram in zip(layers, grams):
                x = batch[match.x.name] if match.x.is_graph_input() else fetched[match.x.name]
                rows = _rows(match, x).astype(np.float64)
                gram += rows.T @ rows
    return grams


def session_with_outputs(model: ir.Model, values: list[ir.Value], folder: Path) -> ort.InferenceSession:
    """onnxruntime on `model` with `values` as extra outputs (the model is left as it was). Saved
    with external data, so that models past protobuf's 2 GB load too."""
    outputs = model.graph.outputs
    kept = len(outputs)
    untyped = [v for v in values if v.type is None]
    for value in untyped:
        value.type = ir.TensorType(ir.DataType.FLOAT)  # a layer's input: float32 (its weight's dtype)
    outputs.extend(v for v in values if not v.is_graph_input() and not v.is_graph_output())
    try:
        ir.save(model, folder / "model.onnx", external_data="weights.bin", size_threshold_bytes=1024)
    finally:
        del outputs[kept:]
        for value in untyped:
            value.type = None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])


def _rows(match: WeightedMatch, x: np.ndarray) -> np.ndarray:
    """The rows the layer's W[out, in] multiplies: [tokens, in]."""
    if isinstance(match, ConvMatch):
        return im2col(x, match.attributes())
    return x.reshape(-1, x.shape[-1])


def im2col(x: np.ndarray, attributes: dict) -> np.ndarray:
    """A 2-D Conv's input patches [N*OH*OW, C*kh*kw] (group 1), columns ordered as W[O, C, kh, kw]
    flattens."""
    kh, kw = attributes["kernel_shape"]
    (sh, sw), (dh, dw) = attributes["strides"], attributes["dilations"]
    top, left, bottom, right = attributes["pads"]
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    window = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    patches = np.lib.stride_tricks.sliding_window_view(padded, window, axis=(2, 3))
    patches = patches[:, :, ::sh, ::sw, ::dh, ::dw]  # [N, C, OH, OW, kh, kw]
    return patches.transpose(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1] * kh * kw)
