"""The spec's `attention:` section and the head-pattern table's YAML."""

import pytest

from sparsecc.errors import SpecError
from sparsecc.sparsity.attention_patterns import HeadPattern, TokenLayout
from sparsecc.sparsity.head_table import HeadTable, LayerHeads
from sparsecc.sparsity.spec import SparsitySpec

LAYOUT = {"frames": 4, "frame_tokens": 16, "text": 5, "text_first": True}


def test_attention_only_spec_parses_and_round_trips():
    spec = SparsitySpec.parse(
        {"attention": {"layout": LAYOUT, "eps": 0.3, "lambda": 0.25, "modes": "diag, skip"}}
    )
    assert spec.rules == () and spec.attention.layout == TokenLayout(4, 16, 5, True)
    assert (spec.attention.eps, spec.attention.lam, spec.attention.modes) == (0.3, 0.25, ("diag", "skip"))
    assert SparsitySpec.from_json(spec.to_json()) == spec


def test_heads_from_a_table_file(tmp_path):
    table = HeadTable(
        TokenLayout(**LAYOUT),
        (
            LayerHeads(
                (HeadPattern("diag", window=1), HeadPattern("vstripe", stripes=(3,)), HeadPattern("skip"))
            ),
        ),
    )
    path = tmp_path / "heads.yaml"
    path.write_text(table.to_yaml())
    spec = SparsitySpec.parse({"attention": {"layout": LAYOUT, "heads": str(path)}, "rules": []})
    assert spec.attention.heads == table


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"layout": LAYOUT, "epsilon": 1}, "spec attention: unknown key 'epsilon'; valid keys:"),
        ({"heads": "search"}, "'layout' is missing"),
        ({"layout": LAYOUT, "modes": ["diagonal"]}, "modes must be a non-empty list of"),
        (
            {"layout": LAYOUT, "heads": {"layers": [{"heads": ["sideways"]}]}},
            "unknown head pattern 'sideways'",
        ),
        (
            {"layout": LAYOUT, "heads": {"layers": [{"heads": [{"mode": "vstripe", "stripes": [99]}]}]}},
            "stripe columns must lie in",
        ),
        ({"layout": LAYOUT, "heads": "missing.yaml"}, "cannot read head-pattern table"),
    ],
)
def test_bad_sections_are_one_line_spec_errors(section, message):
    with pytest.raises(SpecError, match=message) as error:
        SparsitySpec.parse({"attention": section})
    assert "\n" not in str(error.value)


def test_costs_are_flops_by_default_or_measured():
    assert SparsitySpec.parse({"attention": {"layout": LAYOUT}}).attention.costs == "flops"
    spec = SparsitySpec.parse({"attention": {"layout": LAYOUT, "costs": "Measured"}})
    assert spec.attention.costs == "measured" and SparsitySpec.from_json(spec.to_json()) == spec
    with pytest.raises(SpecError, match="costs must be one of flops, measured, got 'timed'") as error:
        SparsitySpec.parse({"attention": {"layout": LAYOUT, "costs": "timed"}})
    assert "\n" not in str(error.value)
