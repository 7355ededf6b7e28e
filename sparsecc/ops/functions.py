"""Keep a model's reference functions in step with the sparse ops it uses."""

from __future__ import annotations

import onnx_ir as ir

from sparsecc.ops.base import DOMAIN, DOMAIN_VERSION, OPS
from sparsecc.ops.reference import MIN_OPSET, reference_function


def attach_reference_functions(model: ir.Model) -> None:
    """Add a body for each sparse op type used, drop bodies no longer used (idempotent).

    The bodies import the model's default opset (at least 18), so the saved model passes
    `onnx.checker.check_model(full_check=True)` and runs in onnxruntime unchanged.
    """
    used = {node.op_type for node in model.graph if node.domain == DOMAIN}
    opset = max(model.opset_imports.get("", MIN_OPSET), MIN_OPSET)
    for op_type, op in OPS.items():
        key = (DOMAIN, op_type, "")
        # A body written for another default opset (the model was re-normalised since) is rebuilt.
        stale = key in model.functions and model.functions[key].opset_imports.get("") != opset
        if op_type in used and (key not in model.functions or stale):
            model.functions[key] = reference_function(op, opset)
        elif op_type not in used and key in model.functions:
            del model.functions[key]
    if used:
        model.opset_imports[DOMAIN] = DOMAIN_VERSION
        model.opset_imports.setdefault("", opset)
    else:
        model.opset_imports.pop(DOMAIN, None)
