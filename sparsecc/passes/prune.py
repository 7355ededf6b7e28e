"""prune: impose the spec's pattern on each selected weight, chosen by the rule's method.

Each pattern carries its keep-mask (`sparsity/patterns.py`), each method its ranking
(`sparsity/methods/`): magnitude needs no data; wanda and sparsegpt need the calibration data's
statistics of each layer's input (`layer_inputs.py`), measured with onnxruntime. With calibration
data, layers are pruned stage by stage (`layer_inputs.stages`), each stage measured with the
earlier stages already pruned, as SparseGPT prunes layer after layer; the report then gives each
pruned weight's reconstruction error on that data. Without it, every method must be magnitude.
`dense` and `existing` rules leave the weight alone. `modified` is True only when some weight changed.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparsecc.errors import SpecError
from sparsecc.passes import layer_inputs
from sparsecc.passes.context import CompileContext
from sparsecc.passes.conv import ConvMatch, WeightedMatch, find_weighted, prune_weighted, replace_weighted
from sparsecc.sparsity.methods import keep_mask, prune_weight, reconstruction_error
from sparsecc.sparsity.spec import Rule


class PrunePass(ir.passes.InPlacePass):
    """Zero the weights each spec rule asks to prune (weights stay dense tensors)."""

    def __init__(self, context: CompileContext):
        super().__init__()
        self.context = context

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        selected = self._selected(model)
        if self.context.calibration is None:
            changed = [self._prune(match, rule) for match, rule in selected]
            return ir.passes.PassResult(model, any(changed))
        modified = False
        matches = [match for match, _ in selected]
        for stage in layer_inputs.stages(model.graph, matches):
            measured = [i for i in stage if _measurable(matches[i])]
            grams = layer_inputs.input_grams(model, [matches[i] for i in measured], self.context.calibration)
            gram_of = dict(zip(measured, grams))
            for i in stage:
                modified |= self._prune(*selected[i], gram_of.get(i))
        return ir.passes.PassResult(model, modified)

    def _selected(self, model: ir.Model) -> list[tuple[WeightedMatch, Rule]]:
        """The weights some rule prunes, each checked against its rule before anything changes."""
        selected = []
        for match in find_weighted(model.graph):
            rule = self.context.rule_for(*match.names)
            if rule is None or rule.method is None:
                continue
            rule.check_shape(match.name, match.shape)
            if rule.method.needs_data and self.context.calibration is None:
                raise SpecError(
                    f"{rule.label()} uses method {rule.method.value}, which needs calibration data: pass "
                    "--calibration FILE.npz (CLI) or calibration=... (Python: an .npz path or input batches)"
                )
            if rule.method.needs_data and not _measurable(match):
                raise SpecError(
                    f"{rule.label()}: method {rule.method.value} does not handle grouped convolutions "
                    f"('{match.name}' has group {match.attributes()['group']}); use magnitude for it"
                )
            selected.append((match, rule))
        return selected

    def _prune(self, match: WeightedMatch, rule: Rule, gram: np.ndarray | None = None) -> bool:
        """Prune one weight by its rule (`gram`: X^T X of its input); True when the weight changed.

        A method that only drops entries stores its mask (`pruned_weight.py`: the pruned values are
        made when read, so a big model never holds a second copy of its weights); one that
        updates the kept values (sparsegpt) stores the new array."""
        w = match.w()
        row = self.context.record(match.name, match.shape, match.initializer_name)
        row.pattern = rule.pattern.describe()
        row.method = rule.method.value
        keep = keep_mask(rule.pattern, w, gram)
        if keep is None:
            pruned = prune_weight(rule.pattern, w, gram)
            row.density = float(np.count_nonzero(pruned)) / pruned.size
            row.error = None if gram is None else reconstruction_error(w, pruned, gram)
            if np.array_equal(pruned, w):
                return False
            replace_weighted(match, pruned)
            return True
        nonzero = w != 0
        row.density = float(np.count_nonzero(nonzero & keep)) / keep.size
        row.error = None if gram is None else reconstruction_error(w, np.where(keep, w, np.float32(0)), gram)
        del w
        if not np.any(nonzero & ~keep):  # nothing to zero
            return False
        prune_weighted(match, keep)
        return True


def _measurable(match: WeightedMatch) -> bool:
    """Whether the layer's input statistics fit its flattened W (a grouped Conv's do not)."""
    return not isinstance(match, ConvMatch) or match.attributes()["group"] == 1
