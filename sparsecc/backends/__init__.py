"""Backends: what runs the sparsified IR. Each registers by name; `get` imports it on first use.

Only the standard library here: `sparsecc.load` imports this package where neither torch
nor onnx is installed.
"""

from __future__ import annotations

import importlib

from sparsecc.errors import SparseccError

# name -> "module:class": the values of `compile(..., backend=...)`
BACKENDS = {
    "tvm": "sparsecc.backends.tvm.backend:TvmBackend",
    "onnxruntime": "sparsecc.backends.ort.backend:OrtBackend",
}


def get(name: str):
    """The backend named `name` (case-insensitive); an unknown name lists the known ones."""
    key = str(name).strip().lower()
    if key not in BACKENDS:
        raise SparseccError(f"unknown backend {name!r}; known backends: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[key].split(":")
    return getattr(importlib.import_module(module), cls)()
