"""search-heads recovers the head patterns planted in the video-DiT zoo model."""

import onnx_ir as ir
import pytest

from sparsecc.passes.search_heads import SearchHeadsPass
from sparsecc.sparsity.attention_patterns import TokenLayout
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
