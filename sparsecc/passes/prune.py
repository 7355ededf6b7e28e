"""prune: impose the spec's pattern on each selected linear weight by magnitude.

Deterministic (stable tie-breaks, see `sparsity/masks.py`): unstructured by |w|,
blocks by L2 norm, N:M by |w| inside each group. `dense` and `existing` rules leave
the weight alone. `modified` is True only when some weight actually changed.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparsecc.compiler import spec as spec_lib
from sparsecc.passes.context import CompileContext
from sparsecc.passes.linear import find_linears, replace_weight
from sparsecc.sparsity import masks


def keep_mask(pattern, w: np.ndarray) -> np.ndarray | None:
    """The keep-mask a pattern imposes on W, or None for patterns that do not prune."""
    if isinstance(pattern, spec_lib.Unstructured):
        return masks.unstructured_mask(w, pattern.sparsity)
    if isinstance(pattern, spec_lib.BlockSparsity):
        return masks.block_mask(w, tuple(pattern.block), pattern.sparsity)
    if isinstance(pattern, spec_lib.NMSparsity):
        return masks.nm_mask(w, pattern.n, pattern.m)
    return None


class PrunePass(ir.passes.InPlacePass):
    """Zero the weights each spec rule asks to prune (weights stay dense tensors)."""

    def __init__(self, context: CompileContext):
        super().__init__()
        self.context = context

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for match in find_linears(model.graph):
            rule = self.context.rule_for(match.name)
            if rule is None:
                continue
            rule.check_shape(match.name, match.shape)
            w = match.w()
            mask = keep_mask(rule.pattern, w)
            if mask is None:
                continue
            pruned = np.where(mask, w, np.float32(0))
            row = self.context.record(match.name, match.shape)
            row.pattern = rule.pattern.describe()
            row.density = float(np.count_nonzero(pruned)) / pruned.size
            if not np.array_equal(pruned, w):
                replace_weight(match, pruned)
                modified = True
        return ir.passes.PassResult(model, modified)
