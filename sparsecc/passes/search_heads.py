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
ratio (the mask's density; 0 for skip) or, where given (`costs`: a mapping, or a function of the
layer that returns one), its kernel's measured time relative to dense attention. A measured cost
belongs to the mode's priced pattern (`priced_patterns`); a head whose pattern keeps more or
fewer scores (vstripe: its own stripe count) pays it in proportion to its density. The head
takes the mode of least loss, or stays `full` when every L_i exceeds eps. vstripe's columns are
the fewest latent key columns that hold `stripe_coverage` of the head's attention mass (over the
calibration data), at most `max_stripes` of the latent tokens.

The chosen table goes into the model's metadata (`head_table.METADATA_KEY`) as YAML, where
fuse-heads finds it; the graph itself is not changed.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import onnx_ir as ir

from sparsecc.passes.attention_heads import AttentionLayer, apply_masks, attention_layers
from sparsecc.passes.layer_inputs import session_with_outputs
from sparsecc.sparsity.attention_patterns import HeadPattern, attention_probs, density, pattern_mask
from sparsecc.sparsity.attention_spec import AttentionSpec
from sparsecc.sparsity.head_table import METADATA_KEY, HeadTable, LayerHeads

logger = logging.getLogger(__name__)

# mode -> relative cost (full: 1), for every layer or per layer (measured on the layer's shapes)
Costs = dict[str, float] | Callable[[AttentionLayer], dict[str, float]]


def stripe_limit(options: AttentionSpec) -> int:
    """The most latent key columns a vstripe head may keep."""
    return max(1, int(options.max_stripes * options.layout.latent))


def priced_patterns(options: AttentionSpec) -> dict[str, HeadPattern]:
    """The pattern each searched mode is priced at when costs are measured: the mode with the
    spec's window and radius; vstripe with the most stripes a head may get, spread evenly (its
    kernel moves them next to each other, so where they sit does not change its time). `skip`
    runs no kernel (cost 0) and has none."""
    latent = options.layout.latent
    patterns = {}
    for mode in options.modes:
        if mode == "vstripe":
            stripes = np.unique(np.linspace(0, latent - 1, stripe_limit(options)).round().astype(int))
            patterns[mode] = HeadPattern("vstripe", stripes=tuple(int(c) for c in stripes))
        elif mode != "skip":
            patterns[mode] = HeadPattern(mode, window=options.window, radius=options.radius)
    return patterns


class SearchHeadsPass(ir.passes.InPlacePass):
    """Choose a pattern per attention head; the table goes to the model's metadata (and `table`)."""

    def __init__(self, options: AttentionSpec, calibration: Iterable, costs: Costs | None = None):
        super().__init__()
        self.options, self.calibration, self.costs = options, calibration, costs
        self.table: HeadTable | None = None
        self._priced = priced_patterns(options)
        self._densities: dict[HeadPattern, float] = {}

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
            for h in range(layer.heads):  # a head at a time: [B, N, N] scores, not [B, H, N, N]
                mass[h] += attention_probs(q[:, h], k[:, h], None)[:, latent].sum(axis=(0, 1))
        limit = stripe_limit(opts)
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
        masks = functools.cache(lambda pattern: pattern_mask(pattern, layout))  # each made once a layer
        for q, k, v in self._batches(session, layer):
            batch_errors, batch_energy = head_errors(q, k, v, candidates, masks, layer.out_proj)
            errors += batch_errors
            energy += batch_energy
        relative = errors / max(energy / heads, 1e-30)
        costs = self.costs(layer) if callable(self.costs) else self.costs
        cost = np.array([[self._cost(p, costs) for p in patterns] for patterns in candidates])
        loss = relative + opts.lam * cost
        chosen, losses = [], []
        for h in range(heads):
            best = int(np.argmin(loss[:, h]))
            if loss[best, h] > opts.eps:
                chosen.append(HeadPattern("full"))
                losses.append(opts.lam * self._cost(HeadPattern("full"), costs))
            else:
                chosen.append(candidates[best][h])
                losses.append(float(loss[best, h]))
        return LayerHeads(tuple(chosen), layer.node.name or "", tuple(losses))

    def _cost(self, pattern: HeadPattern, costs: dict[str, float] | None) -> float:
        if costs is None or pattern.mode not in costs:
            return self._density(pattern)
        measured = float(costs[pattern.mode])
        priced = self._priced.get(pattern.mode)
        if priced is None or priced == pattern:
            return measured
        return measured * self._density(pattern) / max(self._density(priced), 1e-30)

    def _density(self, pattern: HeadPattern) -> float:
        if pattern not in self._densities:
            self._densities[pattern] = density(pattern, self.options.layout)
        return self._densities[pattern]


def head_errors(q, k, v, candidates: list[list[HeadPattern]], mask_of, w_o: np.ndarray | None):
    """([modes, H] squared error of each head under each candidate pattern, at the layer's output;
    the layer's output energy), for one batch of Q, K, V [B, H, N, d]; `mask_of(pattern)` gives
    a pattern's [N, N] mask.

    A head at a time, and its softmax once: a pattern's probabilities are the dense ones kept by
    its mask and renormalised (the softmax over the kept keys), exact unless a row's kept
    probabilities underflow, where that head's masked softmax is computed again.
    """
    heads = q.shape[1]
    errors = np.zeros((len(candidates), heads))
    summed, energy = 0.0, 0.0  # the heads' summed contributions (with W_o); their energies (without)
    for h in range(heads):
        probs = attention_probs(q[:, h], k[:, h], None)  # [B, N, N]
        full = probs @ v[:, h]
        if w_o is None:
            energy += float((full.astype(np.float64) ** 2).sum())
        else:
            summed = summed + _projected(full, w_o, h)
        for i, patterns in enumerate(candidates):
            pattern = patterns[h]
            if pattern.mode == "skip":
                delta = -full
            else:
                mask = mask_of(pattern)
                kept = probs * mask
                total = kept.sum(axis=-1, keepdims=True)
                if (total < 1e-30).any():  # underflow: the exact masked softmax
                    kept, total = attention_probs(q[:, h], k[:, h], mask), 1.0
                delta = (kept / total) @ v[:, h] - full
            errors[i, h] = float((_projected(delta, w_o, h).astype(np.float64) ** 2).sum())
    if w_o is not None:
        energy = float((summed.astype(np.float64) ** 2).sum())
    return errors, energy


def _projected(out: np.ndarray, w_o: np.ndarray | None, head: int) -> np.ndarray:
    """[B, N, dv] of `head` -> its contribution to the layer's output [B, N, D] (or itself)."""
    if w_o is None:
        return out
    dv = out.shape[-1]
    return out @ w_o[head * dv : (head + 1) * dv]
