"""prune: impose the spec's pattern on each selected linear weight.

Each pattern carries its own keep-mask (`sparsity/patterns.py`): unstructured by |w|,
blocks by L2 norm, N:M by |w| inside each group, deterministic tie-breaks. `dense` and
`existing` rules leave the weight alone. `modified` is True only when some weight changed.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparsecc.passes.context import CompileContext
from sparsecc.passes.conv import find_weighted, replace_weighted


class PrunePass(ir.passes.InPlacePass):
    """Zero the weights each spec rule asks to prune (weights stay dense tensors)."""

    def __init__(self, context: CompileContext):
        super().__init__()
        self.context = context

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for match in find_weighted(model.graph):
            rule = self.context.rule_for(*match.names)
            if rule is None:
                continue
            rule.check_shape(match.name, match.shape)
            w = match.w()
            mask = rule.pattern.keep_mask(w)
            if mask is None:
                continue
            pruned = np.where(mask, w, np.float32(0))
            row = self.context.record(match.name, match.shape, match.initializer_name)
            row.pattern = rule.pattern.describe()
            row.density = float(np.count_nonzero(pruned)) / pruned.size
            if not np.array_equal(pruned, w):
                replace_weighted(match, pruned)
                modified = True
        return ir.passes.PassResult(model, modified)
