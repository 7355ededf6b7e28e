"""Test helpers: small models written as ONNX text, run with onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from sparsecc.backends.ort import session
from sparsecc.compiler.pipeline import verify_ir


def model_from_text(text: str, initializers: dict[str, np.ndarray] | None = None) -> ir.Model:
    """Parse ONNX text and attach numpy initializers (the text grammar cannot hold big tensors)."""
    proto = onnx.parser.parse_model(text)
    for name, array in (initializers or {}).items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(array, name))
    onnx.checker.check_model(proto)
    return ir.serde.deserialize_model(proto)


def run(model: ir.Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return session.run(ir.serde.serialize_model(model), feeds)


def apply(pass_, model: ir.Model):
    """Run one pass and verify the result as the pipeline does in tests."""
    result = pass_(model)
    verify_ir(result.model)
    return result


def linear_model(
    w: np.ndarray, bias: np.ndarray | None = None, batch: str = "4", gemm: bool = False, trans_b: bool = True
) -> ir.Model:
    """One linear layer Y = X W^T (+ b), as Gemm or as MatMul(X, W^T) (+ Add)."""
    out, inp = w.shape
    inits = {}
    if gemm:
        inits["W"] = w if trans_b else np.ascontiguousarray(w.T)
        args = "X, W, B" if bias is not None else "X, W"
        body = f"Y = Gemm<transB={int(trans_b)}>({args})"
    else:
        inits["W"] = np.ascontiguousarray(w.T)
        body = "Y = MatMul(X, W)" if bias is None else "T = MatMul(X, W)\n Y = Add(T, B)"
    if bias is not None:
        inits["B"] = bias
    text = f"""<ir_version: 10, opset_import: ["" : 23]>
    g (float[{batch}, {inp}] X) => (float[{batch}, {out}] Y) {{ {body} }}"""
    return model_from_text(text, inits)
