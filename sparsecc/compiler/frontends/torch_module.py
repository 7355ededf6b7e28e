"""The torch frontend: `torch.onnx.export(dynamo=True)` plus parameter-name recovery.

The exporter folds transposes into new constants (`val_97` holding `W^T`) and renames
them, so names alone do not lead back to the module. Values do: each 2-D float
initializer is matched to the torch parameter holding the same bytes as W or W^T.
"""

from __future__ import annotations

import hashlib
import logging
import warnings

import numpy as np
import onnx_ir as ir

from sparsecc.compiler.frontends.common import OPSET, quiet
from sparsecc.errors import ModelError
from sparsecc.ops.metadata import INITIALIZER_NAME, LAYOUT, WEIGHT_NAME

logger = logging.getLogger(__name__)


def _as_args(example_inputs):
    import torch

    if example_inputs is None:
        raise ModelError("a torch module needs example inputs (example_inputs=(x,)) to be exported")
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    return tuple(example_inputs), {}


def export_module(module, example_inputs) -> tuple[ir.Model, dict[str, np.ndarray]]:
    """Export `module` at OPSET; returns the IR and the example inputs keyed by input name."""
    import torch

    args, kwargs = _as_args(example_inputs)
    module = module.eval()
    try:
        with quiet(), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            logging.getLogger("torch").setLevel(logging.ERROR)
            program = torch.onnx.export(
                module,
                args,
                kwargs=kwargs or None,
                dynamo=True,
                opset_version=OPSET,
                optimize=True,
                verbose=False,
                external_data=False,
            )
    except Exception as error:  # the exporter fails in any of torch's error types; the cause stays chained
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"could not export the torch module to ONNX: {first}") from error
    model = program.model
    tag_parameters(model, module)
    tensors = [*args, *kwargs.values()]
    inputs = [v for v in model.graph.inputs if v.const_value is None]
    feeds = {
        value.name: t.detach().cpu().numpy()
        for value, t in zip(inputs, tensors)
        if isinstance(t, torch.Tensor)
    }
    return model, feeds


def _digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return hashlib.sha1(str(array.shape).encode() + array.tobytes()).hexdigest()


def tag_parameters(model: ir.Model, module) -> int:
    """Set WEIGHT_NAME (and LAYOUT for matrices) on initializers that hold a torch parameter."""
    by_digest: dict[str, list[tuple[str, str]]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        if param.dtype.is_floating_point and param.dim() in (1, 2):
            w = param.detach().float().cpu().numpy()
            by_digest.setdefault(_digest(w), []).append((name, "W"))
            if w.ndim == 2:
                by_digest.setdefault(_digest(w.T), []).append((name, "W^T"))
    used: set[str] = set()
    tagged = 0
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if tensor is None or tensor.dtype != ir.DataType.FLOAT or len(tensor.shape) not in (1, 2):
            continue
        candidates = by_digest.get(_digest(tensor.numpy()), [])
        # Prefer the exporter's own name (tied or identical weights), then the first unused parameter.
        hints = {
            value.name,
            *(
                value.metadata_props.get("pkg.onnxscript.optimizer.folded_from", "")
                .strip("[]")
                .replace("'", "")
                .split(", ")
            ),
        }
        candidates = sorted(candidates, key=lambda c: (c[0] not in hints, c[0] in used))
        if candidates:
            name, layout = candidates[0]
            used.add(name)
            value.metadata_props[WEIGHT_NAME] = name
            value.metadata_props[INITIALIZER_NAME] = value.name
            if len(tensor.shape) == 2:
                value.metadata_props[LAYOUT] = layout
            tagged += 1
    logger.info("tagged %d initializers with torch parameter names", tagged)
    return tagged
