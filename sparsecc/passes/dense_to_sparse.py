"""dense-to-sparse: rewrite each selected linear into a `sparsecc` sparse op.

Per weight, the format is the one the spec asks for (`block` -> BsrMatMul, `N:M` ->
NmMatMul, `unstructured` -> CsrMatMul) or, for `existing`, the best one detected.
A weight stays dense when the cost model says the format would not pay; the refusal
is a `MatchResult` failure whose reason lands in the report.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult

from sparsecc import ops
from sparsecc.compiler import spec as spec_lib
from sparsecc.ops.formats import BsrWeight, CsrWeight, NmWeight
from sparsecc.passes.context import CompileContext, WeightReport
from sparsecc.passes.linear import LinearMatch, find_linears
from sparsecc.sparsity import cost
from sparsecc.sparsity.detect import analyze_weight, block_fit, conforms_nm


def _estimate_for(pattern, w: np.ndarray, result: MatchResult) -> cost.Estimate | None:
    """The estimate of the format `pattern` asks for, or None (reason on `result`)."""
    if isinstance(pattern, spec_lib.Dense):
        result.fail("the spec keeps this weight dense")
        return None
    if isinstance(pattern, spec_lib.Existing):
        analysis = analyze_weight(w)
        if analysis.best is None and analysis.density == 1.0:
            result.fail("the weight has no zeros")
        elif analysis.best is None:
            best = max(analysis.candidates, key=lambda e: e.speedup)
            result.fail(f"no sparse format pays: best is {best.why_not()}")
        return analysis.best
    if isinstance(pattern, spec_lib.BlockSparsity):
        fit = block_fit(w, tuple(pattern.block), int(np.count_nonzero(w)))
        return cost.estimate_bsr(w.shape, fit.block, fit.block_density)
    if isinstance(pattern, spec_lib.NMSparsity):
        if not conforms_nm(w, pattern.n, pattern.m):
            result.fail(f"weight does not conform to {pattern.n}:{pattern.m}; run the prune pass first")
            return None
        return cost.estimate_nm(w.shape, pattern.n, pattern.m)
    if isinstance(pattern, spec_lib.Unstructured):
        return cost.estimate_csr(w.shape, float(np.count_nonzero(w)) / w.size)
    result.fail(f"no sparse format for pattern {pattern!r}")
    return None


def _sparse_weight(estimate: cost.Estimate, w: np.ndarray):
    if estimate.format == "bsr":
        return BsrWeight.from_dense(w, tuple(int(v) for v in estimate.detail.split("x")))
    if estimate.format == "nm":
        n, m = (int(v) for v in estimate.detail.split(":"))
        return NmWeight.from_dense(w, n, m)
    return CsrWeight.from_dense(w)


def choose_format(match: LinearMatch, context: CompileContext) -> tuple[cost.Estimate | None, MatchResult]:
    """The format for this layer, or None with the reason it stays dense."""
    result = MatchResult()
    rule = context.rule_for(match.name)
    if rule is None:
        return None, result.fail("no spec rule matches this weight")
    estimate = _estimate_for(rule.pattern, match.w(), result)
    if estimate is not None and not estimate.pays:
        return None, result.fail(estimate.why_not())
    return estimate, result


def _rewrite(graph: ir.Graph, match: LinearMatch, sparse) -> None:
    old_output = match.output
    node = ops.make_linear_node(sparse, match.x, match.bias, name=match.name, graph=graph)
    graph.insert_before(match.matmul, node)
    new_output = node.outputs[0]
    name = old_output.name
    old_output.name = f"{name}.dense"
    new_output.name = name
    if old_output.shape is not None:
        new_output.shape = old_output.shape
    ir.convenience.replace_all_uses_with(old_output, new_output, replace_graph_outputs=True)
    graph.remove([n for n in (match.add, match.matmul) if n is not None], safe=True)


class DenseToSparsePass(ir.passes.InPlacePass):
    """Replace `MatMul(X, Wt) [+ Add(b)]` by BsrMatMul / NmMatMul / CsrMatMul where it pays."""

    def __init__(self, context: CompileContext):
        super().__init__()
        self.context = context

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for match in find_linears(model.graph):
            row: WeightReport = self.context.record(match.name, match.shape)
            rule = self.context.rule_for(match.name)
            if rule is not None:
                row.pattern = rule.pattern.describe()
            estimate, result = choose_format(match, self.context)
            if estimate is None:
                row.format, row.reason = "dense", result.reason
                continue
            w = match.w()
            _rewrite(model.graph, match, _sparse_weight(estimate, w))
            row.format = estimate.label
            row.density = float(np.count_nonzero(w)) / w.size
            row.est_speedup = round(estimate.speedup, 2)
            row.reason = (
                f"estimated {estimate.speedup:.1f}x dense, {estimate.bytes_ratio:.0%} of the dense bytes"
            )
            modified = True
        if modified:
            ops.attach_reference_functions(model)
        return ir.passes.PassResult(model, modified)

    def ensures(self, model: ir.Model) -> None:
        """Every sparse op is well formed and has its reference body (so any runtime can run it)."""
        ops.verify_model(model)
        missing = {n.op_type for n in model.graph if n.domain == ops.DOMAIN} - {k[1] for k in model.functions}
        if missing:
            raise ir.passes.PostconditionError(f"sparse ops without a reference body: {sorted(missing)}")
