"""search-heads recovers the head patterns planted in the video-DiT zoo model."""

import numpy as np
import onnx_ir as ir
import pytest

from sparsecc.passes.search_heads import SearchHeadsPass, head_errors, priced_patterns, stripe_limit
from sparsecc.sparsity.attention_patterns import (
    HeadPattern,
    TokenLayout,
    attention_probs,
    density,
    pattern_mask,
)
from sparsecc.sparsity.attention_spec import AttentionSpec
from sparsecc.sparsity.head_table import METADATA_KEY, HeadTable, LayerHeads
from tests.passes.video_dit_small import CONFIG, LAYOUT, batches, exported, planted


@pytest.fixture(scope="module")
def model():
    return exported()


def copy(model):
    return ir.serde.deserialize_model(ir.serde.serialize_model(model))


def test_search_recovers_the_planted_table(model):
    work = copy(model)
    search = SearchHeadsPass(AttentionSpec(LAYOUT), batches())
    result = search(work)
    assert result.modified
    expected = planted()
    found = search.table.layers
    pairs = [(a, b) for la, lb in zip(expected, found) for a, b in zip(la, lb.patterns)]
    assert len(pairs) == CONFIG.depth * CONFIG.heads
    right = sum(a == b for a, b in pairs)
    assert right / len(pairs) >= 0.95, [(a.mode, b.mode) for a, b in pairs if a != b]
    # the table round-trips through the model's metadata, as YAML
    assert HeadTable.from_yaml(work.metadata_props[METADATA_KEY]) == HeadTable(
        search.table.layout,
        tuple(LayerHeads(e.patterns, e.name, tuple(round(x, 4) for x in e.loss)) for e in found),
    )
    # the graph is left as it was: a second run finds the same table and changes nothing
    again = SearchHeadsPass(AttentionSpec(LAYOUT), batches())(work)
    assert not again.modified


def test_eps_zero_keeps_every_head_full_and_no_attention_is_no_change(model):
    search = SearchHeadsPass(AttentionSpec(LAYOUT, eps=0.0, modes=("diag", "mdiag")), batches(count=1))
    search(copy(model))
    assert {p.mode for layer in search.table.layers for p in layer.patterns} == {"full"}
    other = AttentionSpec(TokenLayout(2, 3))  # 6 tokens: no layer matches
    assert not SearchHeadsPass(other, batches(count=1))(copy(model)).modified


def test_a_prohibitive_cost_changes_the_choice(model):
    """Injected costs (as `costs: measured` gives them) replace the FLOP ratios in the loss."""
    options = AttentionSpec(LAYOUT)
    cheap = SearchHeadsPass(options, batches(count=1))
    cheap(copy(model))
    modes = [p.mode for layer in cheap.table.layers for p in layer.patterns]
    assert modes.count("diag") >= 6
    seen = []

    def costs(layer):  # per layer, as the pipeline measures them on the layer's head sizes
        seen.append((layer.heads, layer.head_dim))
        return {"full": 1.0, "diag": 50.0, "mdiag": 0.05, "vstripe": 0.1, "skip": 0.0}

    dear = SearchHeadsPass(options, batches(count=1), costs)
    dear(copy(model))
    assert seen == [(CONFIG.heads, CONFIG.head_dim)] * CONFIG.depth
    changed = [p.mode for layer in dear.table.layers for p in layer.patterns]
    assert "diag" not in changed
    # the other heads keep their choice; a full head's loss is lambda x full's cost
    assert [b for a, b in zip(modes, changed) if a != "diag"] == [a for a in modes if a != "diag"]
    full = [
        loss for layer in dear.table.layers for p, loss in zip(layer.patterns, layer.loss) if p.mode == "full"
    ]
    assert full and all(loss == pytest.approx(options.lam) for loss in full)


def test_a_measured_cost_is_paid_in_proportion_to_the_head_pattern_density(model):
    """vstripe is priced at the most stripes a head may keep; a head with fewer pays less."""
    options = AttentionSpec(LAYOUT, modes=("vstripe",))
    priced = priced_patterns(options)["vstripe"]
    assert len(priced.stripes) == stripe_limit(options)
    search = SearchHeadsPass(options, batches(count=1), {"vstripe": 0.6})
    few = HeadPattern("vstripe", stripes=priced.stripes[:1])
    assert search._cost(priced, search.costs) == pytest.approx(0.6)
    ratio = density(few, LAYOUT) / density(priced, LAYOUT)
    assert ratio < 1 and search._cost(few, search.costs) == pytest.approx(0.6 * ratio)
    assert search._cost(few, None) == pytest.approx(density(few, LAYOUT))  # FLOP ratio without costs


@pytest.mark.parametrize("sharpness", [1.0, 40.0], ids=["smooth", "underflowing"])
def test_head_errors_match_the_masked_softmax_definition(sharpness):
    """Renormalising the dense softmax under a mask is the masked softmax (float64 reference),
    also where a row's kept probabilities underflow (logits 40x sharper: gaps of thousands)."""
    layout = TokenLayout(3, 8, 4)
    rng = np.random.default_rng(0)
    heads, n, d = 3, layout.tokens, 8
    q, k, v = (rng.standard_normal((2, heads, n, d)).astype(np.float32) for _ in range(3))
    q *= sharpness
    w_o = rng.standard_normal((heads * d, 5)).astype(np.float32)
    candidates = [
        [HeadPattern("diag")] * heads,
        [
            HeadPattern("vstripe", stripes=(1, 9)),
            HeadPattern("vstripe", stripes=(2,)),
            HeadPattern("vstripe"),
        ],
        [HeadPattern("skip")] * heads,
    ]
    errors, energy = head_errors(q, k, v, candidates, lambda p: pattern_mask(p, layout), w_o)
    q64, k64, v64 = (x.astype(np.float64) for x in (q, k, v))
    full = [attention_probs(q64[:, h], k64[:, h], None) @ v64[:, h] for h in range(heads)]
    rows = [w_o[h * d : (h + 1) * d].astype(np.float64) for h in range(heads)]
    assert energy == pytest.approx(float((sum(f @ r for f, r in zip(full, rows)) ** 2).sum()), rel=1e-4)
    for i, patterns in enumerate(candidates):
        for h, pattern in enumerate(patterns):
            mask = None if pattern.mode == "skip" else pattern_mask(pattern, layout)
            out = 0.0 if mask is None else attention_probs(q64[:, h], k64[:, h], mask) @ v64[:, h]
            want = float((((out - full[h]) @ rows[h]) ** 2).sum())
            assert errors[i, h] == pytest.approx(want, rel=1e-3, abs=1e-6 * energy), (pattern.mode, h)
