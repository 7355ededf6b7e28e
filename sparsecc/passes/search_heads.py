"""search-heads: pick each attention head's pattern on calibration data (Sparse-vDiT's search).

Layer by layer, in graph order, the model runs in onnxruntime on the calibration batches with
the layer's Q, K, V as extra outputs, and the layers searched before it already masked to
their chosen patterns (so each layer is judged on what its predecessors will really feed it).
For every head and candidate mode i:

    L_i = E_i + lambda * c_i

E_i: the squared error the mode causes at the layer's output (the head's output change times
its rows of the output projection W_o), relative to the average head's share of the layer's
output energy; without a recognisable W_o, at the head's own output relative to the average
head's output energy (and `skip` is not offered). c_i: the mode's relative cost, its FLOP
ratio (the mask's density; 0 for skip) or, where given (`costs`), its kernel's measured time
relative to dense attention. The head takes the mode of least loss, or stays `full` when every
L_i exceeds eps. vstripe's columns are the fewest latent key columns that hold
`stripe_coverage` of the head's attention mass (over the calibration data), at most
`max_stripes` of the latent tokens.

The chosen table goes into the model's metadata (`head_table.METADATA_KEY`) as YAML, where
fuse-heads finds it; the graph itself is not changed.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx_ir as ir

from sparsecc.passes.attention_heads import AttentionLayer, apply_masks, attention_layers
from sparsecc.passes.layer_inputs import session_with_outputs
from sparsecc.sparsity.attention_patterns import HeadPattern, attention_probs, density, pattern_mask
from sparsecc.sparsity.attention_spec import AttentionSpec
from sparsecc.sparsity.head_table import METADATA_KEY, HeadTable, LayerHeads

logger = logging.getLogger(__name__)


class SearchHeadsPass(ir.passes.InPlacePass):
    """Choose a pattern per attention head; the table goes to the model's metadata (and `table`)."""

    def __init__(self, options: AttentionSpec, calibration: Iterable, costs: dict[str, float] | None = None):
        super().__init__()
        self.options, self.calibration, self.costs = options, calibration, costs
        self.table: HeadTable | None = None

    def requires(self, model: ir.Model) -> None:
        if self.calibration is None:
            raise ir.passes.PreconditionError("search-heads needs calibration data")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        layout = self.options.layout
        count = len(attention_layers(model, layout))
        if count == 0:
            return ir.passes.PassResult(model, False)
        chosen: list[LayerHeads] = []
        for index in range(count):
            work = ir.serde.deserialize_model(ir.serde.serialize_model(model))
            layers = attention_layers(work, layout)
            for done, layer in zip(chosen, layers):
                apply_masks(work, layer.node, list(done.patterns), layout)
            chosen.append(self._search_layer(work, layers[index]))
            logger.info("search-heads layer %d: %s", index, [p.mode for p in chosen[-1].patterns])
        self.table = HeadTable(layout, tuple(chosen))
        before = model.metadata_props.get(METADATA_KEY)
        model.metadata_props[METADATA_KEY] = self.table.to_yaml()
        return ir.passes.PassResult(model, before != model.metadata_props[METADATA_KEY])

    def _batches(self, session, layer: AttentionLayer):
        """(Q, K, V) of `layer` for each calibration batch, computed in onnxruntime."""
        names = [v.name for v in layer.node.inputs[:3]]
        for batch in self.calibration:
            yield session.run(names, batch)

    def _stripes(self, session, layer: AttentionLayer) -> list[tuple[int, ...]]:
        """Per head: the latent key columns holding most of its attention mass."""
        layout, opts = self.options.layout, self.options
        latent = ~layout.is_text()
        mass = np.zeros((layer.heads, layout.tokens))
        for q, k, _ in self._batches(session, layer):
            probs = attention_probs(q, k, None)  # [B, H, N, N]
            mass += probs[:, :, latent].sum(axis=(0, 2))
        limit = max(1, int(opts.max_stripes * layout.latent))
        stripes = []
        for head_mass in mass[:, latent]:
            order = np.argsort(-head_mass, kind="stable")
            share = np.cumsum(head_mass[order]) / max(head_mass.sum(), 1e-30)
            keep = min(int(np.searchsorted(share, opts.stripe_coverage)) + 1, limit)
            stripes.append(tuple(sorted(int(c) for c in order[:keep])))
        return stripes

    def _candidates(self, session, layer: AttentionLayer) -> list[list[HeadPattern]]:
        """Per mode, one pattern per head."""
        opts, heads = self.options, layer.heads
        found = []
        for mode in opts.modes:
            if mode == "skip" and layer.out_proj is None:
                continue
            if mode == "vstripe":
                found.append([HeadPattern("vstripe", stripes=s) for s in self._stripes(session, layer)])
            else:
                found.append([HeadPattern(mode, window=opts.window, radius=opts.radius)] * heads)
        return found

    def _search_layer(self, work: ir.Model, layer: AttentionLayer) -> LayerHeads:
        # one session per layer: onnx-ir keeps a value marked as a graph output once it was one
        with tempfile.TemporaryDirectory(prefix="sparsecc-search-heads-") as folder:
            session = session_with_outputs(work, list(layer.node.inputs[:3]), Path(folder))
            return self._choose(session, layer)

    def _choose(self, session, layer: AttentionLayer) -> LayerHeads:
        layout, opts, heads = self.options.layout, self.options, layer.heads
        candidates = self._candidates(session, layer)
        errors = np.zeros((len(candidates), heads))
        energy = 0.0
        w_o = layer.out_proj
        for q, k, v in self._batches(session, layer):
            full = attention_probs(q, k, None) @ v  # [B, H, N, dv]
            energy += _energy(full, w_o)
            for i, patterns in enumerate(candidates):
                errors[i] += _errors(q, k, v, full, patterns, layout, w_o)
        relative = errors / max(energy / heads, 1e-30)
        cost = np.array([[self._cost(p) for p in patterns] for patterns in candidates])
        loss = relative + opts.lam * cost
        chosen, losses = [], []
        for h in range(heads):
            best = int(np.argmin(loss[:, h]))
            if loss[best, h] > opts.eps:
                chosen.append(HeadPattern("full"))
                losses.append(opts.lam * self._cost(HeadPattern("full")))
            else:
                chosen.append(candidates[best][h])
                losses.append(float(loss[best, h]))
        return LayerHeads(tuple(chosen), layer.node.name or "", tuple(losses))

    def _cost(self, pattern: HeadPattern) -> float:
        if self.costs is not None and pattern.mode in self.costs:
            return float(self.costs[pattern.mode])
        return density(pattern, self.options.layout)


def _projected(out: np.ndarray, w_o: np.ndarray | None) -> np.ndarray:
    """[B, H, N, dv] -> each head's contribution to the layer's output [B, H, N, D] (or itself)."""
    if w_o is None:
        return out
    heads, dv = out.shape[1], out.shape[3]
    return out @ w_o.reshape(heads, dv, -1)[None]


def _energy(full: np.ndarray, w_o: np.ndarray | None) -> float:
    if w_o is None:
        return float((full.astype(np.float64) ** 2).sum())
    return float((_projected(full, w_o).sum(axis=1).astype(np.float64) ** 2).sum())


def _errors(q, k, v, full, patterns: list[HeadPattern], layout, w_o) -> np.ndarray:
    """[H]: squared error of each head under its pattern, at the layer's output."""
    if patterns[0].mode == "skip":
        delta = -full
    elif len({p for p in patterns}) == 1:
        delta = attention_probs(q, k, pattern_mask(patterns[0], layout)) @ v - full
    else:
        masks = np.stack([pattern_mask(p, layout) for p in patterns])
        delta = attention_probs(q, k, masks) @ v - full
    return (_projected(delta, w_o).astype(np.float64) ** 2).sum(axis=(0, 2, 3))
