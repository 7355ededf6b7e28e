"""The inputs a compile is built for: checked example inputs, or inputs made up for static shapes."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from sparsecc.backends.base import TensorSpec
from sparsecc.backends.ort import session
from sparsecc.errors import InputError, ModelError


def graph_inputs(model: ir.Model) -> list[ir.Value]:
    """The inputs a caller feeds (initializers listed as inputs by old IR versions excluded)."""
    return [v for v in model.graph.inputs if v.const_value is None]


def numpy_dtype(value: ir.Value) -> np.dtype:
    return np.dtype(value.dtype.numpy()) if value.dtype is not None else np.dtype(np.float32)


def is_static(model: ir.Model) -> bool:
    return all(v.shape is not None and all(isinstance(d, int) for d in v.shape) for v in graph_inputs(model))


def example_feeds(
    model: ir.Model, given: dict[str, np.ndarray] | None, allow_dynamic: bool = False
) -> dict[str, np.ndarray] | None:
    """`given` checked against the graph's inputs, or seeded random inputs when the shapes are static
    (None for dynamic shapes when `allow_dynamic`: a backend that runs them needs no example)."""
    values = graph_inputs(model)
    if given is None and allow_dynamic and not is_static(model):
        return None
    if given is None:
        for value in values:
            if value.shape is None or not all(isinstance(d, int) for d in value.shape):
                raise ModelError(
                    f"input '{value.name}' has a dynamic shape; pass example_inputs so sparsecc can compile "
                    "for a static shape"
                )
        try:
            return session.random_inputs(ir.serde.serialize_model(model))
        except InputError as error:
            raise InputError(f"{error}; pass example_inputs (numpy arrays by input name)") from None
    names = [v.name for v in values]
    missing, unknown = [n for n in names if n not in given], sorted(set(given) - set(names))
    if missing or unknown:
        raise ModelError(
            f"example inputs {sorted(given)} do not match the model's inputs {names}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unknown {unknown})" if unknown else "")
        )
    for value in values:
        array = np.asarray(given[value.name])
        if value.shape is not None and len(value.shape) != array.ndim:
            raise ModelError(
                f"example input '{value.name}' has rank {array.ndim}, the model's input has rank {len(value.shape)}"
            )
        for axis, dim in enumerate(value.shape or ()):
            if isinstance(dim, int) and dim != array.shape[axis]:
                raise ModelError(
                    f"example input '{value.name}' has shape {array.shape}, but the model fixes dimension {axis} "
                    f"to {dim} (model input shape {list(value.shape)})"
                )
        if value.dtype == ir.DataType.STRING and array.dtype.kind in "OUS":
            continue  # strings: numpy keeps them as str_ (.npy files) or objects
        if array.dtype != numpy_dtype(value):
            raise ModelError(
                f"example input '{value.name}' has dtype {array.dtype}, the model's input is {numpy_dtype(value)}"
            )
    return {name: np.ascontiguousarray(given[name]) for name in names}


def input_specs(
    model: ir.Model, feeds: dict[str, np.ndarray] | None, keep_dynamic: bool = False
) -> list[TensorSpec]:
    """The shapes the backend builds for: the feeds' (static), or the model's with -1 where it has a
    symbolic dimension (`keep_dynamic`, for backends that run dynamic shapes)."""
    if keep_dynamic:
        return [
            TensorSpec(
                v.name, tuple(d if isinstance(d, int) else -1 for d in (v.shape or ())), str(numpy_dtype(v))
            )
            for v in graph_inputs(model)
        ]
    return [
        TensorSpec(v.name, tuple(feeds[v.name].shape), str(feeds[v.name].dtype)) for v in graph_inputs(model)
    ]


def output_specs(model: ir.Model) -> list[dict]:
    """Name, shape (-1 where not static) and numpy dtype of each graph output."""
    specs = []
    for value in model.graph.outputs:
        dims = [d if isinstance(d, int) else -1 for d in (value.shape or ())]
        dtype = (
            onnx.helper.tensor_dtype_to_np_dtype(value.dtype.value) if value.dtype is not None else np.float32
        )
        specs.append({"name": value.name, "shape": dims, "dtype": str(np.dtype(dtype))})
    return specs
