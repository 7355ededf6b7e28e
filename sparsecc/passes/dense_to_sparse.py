"""dense-to-sparse: rewrite each selected linear into a `sparsecc` sparse op where it pays.

Per weight, the candidate formats are those the registered ops offer for the spec's
pattern (`block` -> BSR, `N:M` -> N:M, `unstructured` -> CSR; `existing` -> whatever the
analysed structure allows). The backend's cost model prices each for its target, and the
fastest paying one is used. A weight stays dense when none pays; the refusal is a
`MatchResult` failure whose reason lands in the report.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult

from sparsecc import ops
from sparsecc.ops.metadata import INITIALIZER_NAME, WEIGHT_NAME
from sparsecc.passes.context import CompileContext, WeightReport
from sparsecc.passes.conv import ConvMatch, WeightedMatch, find_weighted
from sparsecc.passes.cost import CostModel, Estimate
from sparsecc.sparsity.detect import WeightAnalysis, analyze_weight
from sparsecc.sparsity.patterns import Dense, Existing


def _analysis(match: WeightedMatch, w: np.ndarray, context: CompileContext) -> WeightAnalysis:
    """analyze-sparsity's result when it saw this weight as it is now, else a fresh one."""
    known = context.analyses.get(match.name)
    return known if known is not None and known.density == np.count_nonzero(w) / w.size else analyze_weight(w)


def choose_format(
    match: WeightedMatch, context: CompileContext, w: np.ndarray | None = None
) -> tuple[Estimate | None, MatchResult]:
    """The fastest paying format for this layer, or None with the reason it stays dense (`w`: the
    layer's W[out, in] when the caller has read it already)."""
    result = MatchResult()
    rule = context.rule_for(*match.names)
    if rule is None:
        return None, result.fail("no spec rule matches this weight")
    if isinstance(rule.pattern, Dense):
        return None, result.fail("the spec keeps this weight dense")
    w = match.w() if w is None else w
    analysis = _analysis(match, w, context) if isinstance(rule.pattern, Existing) else None
    if analysis is not None and analysis.density == 1.0:
        return None, result.fail("the weight has no zeros")
    estimates, refusals = [], []
    for fmt in ops.formats_for(rule.pattern, match.shape, analysis):
        refusal = fmt.refuses(w)
        if refusal:
            refusals.append(refusal)
        else:
            estimates.append(context.cost_model.estimate(fmt, w, match.tokens or context.tokens))
    paying = [e for e in estimates if e.pays]
    if paying:
        return max(paying, key=lambda e: (round(e.speedup, 6), -e.bytes_ratio)), result
    if estimates:
        best = max(estimates, key=lambda e: e.speedup)
        prefix = "no sparse format pays: best is " if len(estimates) > 1 else ""
        return None, result.fail(prefix + best.reason)
    return None, result.fail(refusals[0] if refusals else f"no sparse format for {rule.pattern.describe()}")


def _rewrite(graph: ir.Graph, match: WeightedMatch, sparse: ops.SparseWeight) -> None:
    old_output = match.output
    names = {WEIGHT_NAME: match.name, INITIALIZER_NAME: match.initializer_name}
    if isinstance(match, ConvMatch):
        node = ops.make_conv_node(
            sparse,
            match.conv.inputs[0],
            match.bias,
            match.attributes(),
            name=match.name,
            graph=graph,
            names=names,
        )
        dense_nodes = [match.conv]
    else:
        # X as the node has it now: an earlier rewrite may have replaced the value (Conv -> Conv)
        node = ops.make_linear_node(
            sparse, match.matmul.inputs[0], match.bias, name=match.name, graph=graph, names=names
        )
        dense_nodes = [n for n in (match.add, match.matmul) if n is not None]
    graph.insert_before(dense_nodes[-1], node)
    new_output = node.outputs[0]
    name = old_output.name
    old_output.name = f"{name}.dense"
    new_output.name = name
    if old_output.shape is not None:
        new_output.shape = old_output.shape
    ir.convenience.replace_all_uses_with(old_output, new_output, replace_graph_outputs=True)
    graph.remove(dense_nodes, safe=True)


class DenseToSparsePass(ir.passes.InPlacePass):
    """Replace `MatMul(X, Wt) [+ Add(b)]` by BsrMatMul / NmMatMul / CsrMatMul, and a Conv by its
    sparse Conv form (BsrConv / NmConv / CsrConv), where it pays."""

    def __init__(self, context: CompileContext):
        super().__init__()
        self.context = context

    def requires(self, model: ir.Model) -> None:
        if self.context.cost_model is None:
            raise ir.passes.PreconditionError("dense-to-sparse needs the backend's cost model in the context")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        cost_model: CostModel = self.context.cost_model
        for match in find_weighted(model.graph):
            row: WeightReport = self.context.record(match.name, match.shape, match.initializer_name)
            rule = self.context.rule_for(*match.names)
            if rule is not None:
                row.pattern = rule.pattern.describe()
            # read once: a pruned weight is computed on each read (pruned_weight.py)
            w = match.w() if rule is not None else None
            estimate, result = choose_format(match, self.context, w)
            if estimate is None:
                row.format, row.reason = "dense", result.reason
                continue
            _rewrite(model.graph, match, estimate.format.compress(w))
            row.format = estimate.label
            row.density = float(np.count_nonzero(w)) / w.size
            row.est_speedup = round(estimate.speedup, 2)
            row.reason = f"{estimate.reason} ({cost_model.name})"
            modified = True
            del w
        if modified:
            ops.attach_reference_functions(model)
        return ir.passes.PassResult(model, modified)

    def ensures(self, model: ir.Model) -> None:
        """Every sparse op is well formed and has its reference body (so any runtime can run it)."""
        ops.verify_model(model)
        missing = {n.op_type for n in model.graph if n.domain == ops.DOMAIN} - {k[1] for k in model.functions}
        if missing:
            raise ir.passes.PostconditionError(f"sparse ops without a reference body: {sorted(missing)}")
