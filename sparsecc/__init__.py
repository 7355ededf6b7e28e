"""sparsecc: a sparsity compiler for neural networks.

    onnx_model = sparsecc.sparsify(model, spec, example_inputs=(x,))
    cm = sparsecc.compile(model, spec, example_inputs=(x,), target="cpu")
    cm2 = sparsecc.load("model.sccpkg")

Attributes are imported lazily: `sparsecc.load` must work where only numpy and
apache-tvm are installed (no torch, no onnx).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "sparsify": ("sparsecc.compiler.api", "sparsify"),
    "sparsify_ir": ("sparsecc.compiler.api", "sparsify_ir"),
    "SparsitySpec": ("sparsecc.sparsity.spec", "SparsitySpec"),
    "compile": ("sparsecc.compiler.api", "compile"),
    "CompiledModel": ("sparsecc.backends.tvm.runtime", "CompiledModel"),
    "load": ("sparsecc.backends.tvm.runtime", "load"),
    "SparseccError": ("sparsecc.errors", "SparseccError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'sparsecc' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
