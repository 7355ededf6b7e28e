"""The shapes a static-shape backend builds a KV-cache decoder for: one token per step, any cache length.

A decoder exported one step with its cache (`models/llama.py`, optimum) has symbolic token and
cache lengths. Backends whose kernels need a static number of rows (the TVM backend) build the
*decode step*: batch 1, one new token, and the cache and mask lengths left symbolic, so one
compiled model serves every cache length up to the model's maximum without recompiling. The
prompt then runs through the same step one token at a time (`backends/generation.py`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from sparsecc.backends.base import TensorSpec
from sparsecc.backends.generation import DecoderSignature
from sparsecc.compiler.frontends.inputs import graph_inputs, input_specs, numpy_dtype
from sparsecc.errors import ModelError

EXAMPLE_PAST = 3  # cache length of the example inputs kernel selection runs on


@dataclasses.dataclass(frozen=True)
class DecodeStep:
    specs: list[TensorSpec]  # -1 where the length stays symbolic (cache, mask)
    feeds: dict[str, np.ndarray]  # one token after EXAMPLE_PAST cached ones
    tokens: int = 1  # rows each linear layer sees per call


def decode_step(model: ir.Model, outputs: list[dict]) -> DecodeStep | None:
    """The one-token step of `model`, or None when it is not a decoder exported with its KV cache."""
    dynamic = input_specs(model, None, keep_dynamic=True)
    try:
        signature = DecoderSignature.of(
            dynamic, [TensorSpec(o["name"], tuple(o["shape"]), o["dtype"]) for o in outputs]
        )
    except ModelError:
        return None
    values = {v.name: v for v in graph_inputs(model)}
    ids_dims = list(values[signature.ids].shape or ())
    past_dim = (values[signature.cache[0].past].shape or [None] * 4)[2]
    if len(ids_dims) != 2:
        return None

    def length(dim, position: int) -> int:
        """The example length of one dimension (batch and new tokens 1, the cache EXAMPLE_PAST)."""
        if isinstance(dim, int):
            return dim
        if dim is not None and (dim == ids_dims[0] or dim == ids_dims[1] or position == 0):
            return 1  # batch, or the new tokens
        if dim is not None and dim == past_dim:
            return EXAMPLE_PAST
        return EXAMPLE_PAST + 1  # the mask (past + new): any other symbolic length

    specs, feeds = [], {}
    rng = np.random.default_rng(0)
    for value in graph_inputs(model):
        dims = list(value.shape or ())
        example = tuple(length(d, i) for i, d in enumerate(dims))
        symbolic = tuple(-1 if not isinstance(d, int) and n != 1 else n for d, n in zip(dims, example))
        dtype = numpy_dtype(value)
        if value.name == signature.ids:
            feeds[value.name] = np.full(example, 1, dtype)
        elif dtype.kind in "iu":
            feeds[value.name] = np.ones(example, dtype)
        else:
            feeds[value.name] = rng.standard_normal(example).astype(dtype)
        specs.append(TensorSpec(value.name, symbolic, str(dtype)))
    return DecodeStep(specs, feeds)
