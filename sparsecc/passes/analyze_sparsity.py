"""analyze-sparsity: measure the sparsity already present in every linear weight.

Per weight: density, N:M conformance (1:4, 2:4, 2:8, 4:8), the best block shape
with its fill ratio, all-zero rows and columns, and the format the cost model
would pick for `existing`. Results go to the context; the IR is never changed.
"""

from __future__ import annotations

import onnx_ir as ir

from sparsecc.passes.context import CompileContext
from sparsecc.passes.linear import find_linears
from sparsecc.sparsity.detect import analyze_weight


class AnalyzeSparsityPass(ir.passes.InPlacePass):
    """Record a `WeightAnalysis` and the report's "detected" column for each linear weight."""

    def __init__(self, context: CompileContext):
        super().__init__()
        self.context = context

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        for match in find_linears(model.graph):
            analysis = analyze_weight(match.w())
            self.context.analyses[match.name] = analysis
            row = self.context.record(match.name, match.shape)
            row.detected = analysis.describe()
            row.density = analysis.density
        return ir.passes.PassResult(model, modified=False)
