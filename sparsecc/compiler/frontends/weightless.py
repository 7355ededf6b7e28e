"""A model's structure without its big weights, for checks that only need types and shapes.

ONNX's shape inference takes a ModelProto, serializes it, parses it in C++ and returns a
new proto: about three transient copies of every weight (measured: peak RSS 4.7x the
weights while loading a 128 MiB model, 1.5x without them; bench/bench_memory.py). Declaring
each big initializer as a graph input of the same type and shape gives inference the same
facts at the cost of the graph alone.
"""

from __future__ import annotations

import math

import onnx

# Initializers up to this size stay: shapes, axes and other small constants that inference
# reads by value (Reshape's target shape, Slice's starts) are never this big.
KEEP_BYTES = 1024


def without_weights(proto: onnx.ModelProto, keep_bytes: int = KEEP_BYTES) -> onnx.ModelProto:
    """A copy of `proto` whose initializers over `keep_bytes` are typed graph inputs instead."""
    light = onnx.ModelProto()
    light.ir_version = proto.ir_version
    light.opset_import.extend(proto.opset_import)
    light.functions.extend(proto.functions)
    graph, source = light.graph, proto.graph
    graph.name = source.name
    for field in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(graph, field).extend(getattr(source, field))
    declared = {value.name for value in source.input}
    for tensor in source.initializer:
        if tensor_nbytes(tensor) <= keep_bytes:
            graph.initializer.append(tensor)
        elif tensor.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    return light


def with_weights(
    light: onnx.ModelProto, source: onnx.ModelProto, keep_bytes: int = KEEP_BYTES
) -> onnx.ModelProto:
    """`light` (made by `without_weights(source)`, then transformed without renaming values, as the
    version converter does) with `source`'s big initializers back in place of their typed inputs."""
    big = [tensor for tensor in source.graph.initializer if tensor_nbytes(tensor) > keep_bytes]
    restored = {tensor.name for tensor in big} - {value.name for value in source.graph.input}
    inputs = [value for value in light.graph.input if value.name not in restored]
    del light.graph.input[:]
    light.graph.input.extend(inputs)
    light.graph.initializer.extend(big)
    return light


def tensor_nbytes(tensor: onnx.TensorProto) -> int:
    """From dims and type: reading `raw_data` would copy it."""
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, TypeError, ValueError):  # strings, undefined: sized by count alone
        itemsize = 1
    return math.prod(tensor.dims) * itemsize
