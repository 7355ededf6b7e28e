"""cleanup: tidy the graph after the rewrites, with onnx-ir's own passes.

Drops nodes and initializers nothing uses, keeps the reference functions in step
with the sparse ops actually present, removes opset imports nobody needs, names the
nodes the rewrites created (unique names, as the frontend left them) and sorts the
graph topologically.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import common

from sparsecc import ops


def _has_sparse_ops(model: ir.Model) -> bool:
    return any(node.domain == ops.DOMAIN for node in model.graph)


class CleanupPass(ir.passes.InPlacePass):
    """Remove what the rewrites left unused; `modified` reports whether anything was."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        functions_before = set(model.functions)
        modified = common.RemoveUnusedNodesPass()(model).modified
        if _has_sparse_ops(model) or any(key[0] == ops.DOMAIN for key in model.functions):
            ops.attach_reference_functions(model)
        modified |= set(model.functions) != functions_before
        modified |= common.RemoveUnusedFunctionsPass()(model).modified
        modified |= common.RemoveUnusedOpsetsPass()(model).modified
        modified |= common.NameFixPass()(model).modified
        modified |= common.TopologicalSortPass()(model).modified
        return ir.passes.PassResult(model, modified)
