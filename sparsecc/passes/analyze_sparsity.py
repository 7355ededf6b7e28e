"""analyze-sparsity: measure the sparsity already present in every linear weight.

Per weight: density, N:M conformance (1:4, 2:4, 2:8, 4:8), how well each block shape
covers it, all-zero rows and columns. Results go to the context (the report's
"detected" column, and the analysis dense-to-sparse prices for `existing`); the IR is
never changed. Layers that are sparse ops already (a sparsified file given back to us)
get their report row too, so a backend can say what runs them.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparsecc import ops
from sparsecc.ops.metadata import INITIALIZER_NAME, WEIGHT_NAME
from sparsecc.passes.context import CompileContext
from sparsecc.passes.conv import find_weighted
from sparsecc.sparsity.detect import analyze_weight


class AnalyzeSparsityPass(ir.passes.InPlacePass):
    """Record a `WeightAnalysis` and the report's "detected" column for each linear weight."""

    def __init__(self, context: CompileContext):
        super().__init__()
        self.context = context

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        for match in find_weighted(model.graph):
            analysis = analyze_weight(match.w())
            self.context.analyses[match.name] = analysis
            row = self.context.record(match.name, match.shape, match.initializer_name)
            row.detected = analysis.describe()
            row.density = analysis.density
        for node in model.graph:
            if ops.is_sparse_node(node):
                weight = ops.weight_from_node(node)
                name = node.metadata_props.get(WEIGHT_NAME) or node.name
                row = self.context.record(name, weight.shape, node.metadata_props.get(INITIALIZER_NAME, ""))
                row.format = row.detected = weight.format.label
                row.density = float(np.count_nonzero(weight.values)) / (weight.shape[0] * weight.shape[1])
                row.reason = "a sparse op in the model given"
        return ir.passes.PassResult(model, modified=False)
