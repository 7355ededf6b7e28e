import json

import pytest

from sparsecc.errors import SpecError
from sparsecc.sparsity.patterns import BlockSparsity, Dense, Existing, NMSparsity, Unstructured, parse_pattern
from sparsecc.sparsity.spec import SparsitySpec


def test_shorthand_forms_and_precedence():
    spec = SparsitySpec.parse("*intermediate*=block(1,16)@0.9; *attention*=2:4; unstructured@0.5")
    assert spec.rule_for("encoder.layer.0.intermediate.dense.weight").pattern == BlockSparsity((1, 16), 0.9)
    assert spec.rule_for("encoder.layer.0.attention.self.query.weight").pattern == NMSparsity(2, 4)
    assert spec.rule_for("pooler.dense.weight").pattern == Unstructured(0.5)  # no selector = "*"
    first = SparsitySpec.parse("*=dense; *=2:4")
    assert first.rule_for("x").pattern == Dense()  # first match wins
    assert SparsitySpec.parse("a*=existing").rule_for("b") is None  # unmatched: stays dense


def test_whitespace_case_and_describe_round_trip():
    spec = SparsitySpec.parse("  *ffn* = BLOCK( 4 , 4 ) @ 0.75 ;; *q* = 2 : 8 ; EXISTING ")
    assert str(spec) == "*ffn*=block(4,4)@0.75; *q*=2:8; *=existing"
    assert SparsitySpec.parse(str(spec)) == spec


def test_dict_form_with_structured_and_shorthand_patterns():
    spec = SparsitySpec.parse(
        {
            "version": 1,
            "rules": [
                {
                    "match": "*ffn*",
                    "pattern": "block",
                    "block": [1, 16],
                    "sparsity": 0.9,
                    "method": "Magnitude",
                },
                {"match": "*attn*", "pattern": "2:4"},
                {"match": "*", "pattern": "nm", "n": 1, "m": 4},
            ],
        }
    )
    assert [r.pattern for r in spec.rules] == [
        BlockSparsity((1, 16), 0.9),
        NMSparsity(2, 4),
        NMSparsity(1, 4),
    ]


def test_yaml_and_json_files(tmp_path):
    yaml_path = tmp_path / "spec.yaml"
    yaml_path.write_text("rules:\n  - match: '*ffn*'\n    pattern: unstructured\n    sparsity: 0.8\n")
    assert SparsitySpec.parse(str(yaml_path)).rules[0].pattern == Unstructured(0.8)
    json_path = tmp_path / "spec.json"
    json_path.write_text(json.dumps({"rules": [{"match": "*", "pattern": "existing"}]}))
    assert SparsitySpec.parse(json_path).rules[0].pattern == Existing()


def test_versioned_json_round_trip():
    spec = SparsitySpec.parse("*a*=block(2,8)@0.5; *b*=unstructured@0.95; *c*=4:8; dense; existing")
    data = json.loads(spec.to_json())
    assert data["version"] == 1
    assert SparsitySpec.from_json(spec.to_json()) == spec
    assert SparsitySpec.parse(spec) is spec


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("*=3:2", "N must be <= M"),
        ("0:4", "N must be a positive integer"),
        ("block(1,16)@0", "outside (0, 1)"),
        ("unstructured@1.0", "outside (0, 1)"),
        ("unstructured@abc", "not a number"),
        ("block(0,16)@0.5", "positive integer"),
        ("a=bogus", "unknown pattern 'bogus'; known patterns"),
        ("", "no rules"),
        ("=2:4", "empty selector"),
    ],
)
def test_shorthand_errors_name_the_rule_and_problem(text, needle):
    with pytest.raises(SpecError) as info:
        SparsitySpec.parse(text)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_error_names_the_failing_rule_index():
    with pytest.raises(SpecError, match=r"spec rule 2 \('\*b\*=5:4'\)"):
        SparsitySpec.parse("*a*=2:4; *b*=5:4")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"rules": [], "attention": {}}, "spec attention: 'layout' is missing"),
        ({"rules": [], "heads": {}}, "unknown key 'heads'; valid keys"),
        ({"rules": [{"match": "*", "pattern": "2:4", "colour": 1}]}, "unknown key 'colour'"),
        ({"rules": [{"match": "*", "pattern": "block", "sparsity": 0.5}]}, "needs 'block' and 'sparsity'"),
        (
            {"rules": [{"match": "*", "pattern": "unstructured", "sparsity": 0.5, "method": "random"}]},
            "unknown method 'random'; known methods: magnitude",
        ),
        ({"version": 7, "rules": []}, "version 7 is not supported"),
        ({"rules": "2:4"}, "'rules' must be a list"),
    ],
)
def test_dict_errors(data, needle):
    with pytest.raises(SpecError, match=None) as info:
        SparsitySpec.parse(data)
    assert needle in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec file"):
        SparsitySpec.parse(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match="is not valid JSON"):
        SparsitySpec.parse(str(bad))


def test_check_shape_and_unmatched_rules():
    spec = SparsitySpec.parse("*ffn*=block(3,16)@0.9; *attn*=2:6; *none*=2:4")
    with pytest.raises(
        SpecError, match=r"block 3x16 does not divide weight 'enc.ffn.weight' of shape 1000x3072"
    ):
        spec.rules[0].check_shape("enc.ffn.weight", (1000, 3072))
    with pytest.raises(SpecError, match="needs in_features divisible by 6"):
        spec.rules[1].check_shape("enc.attn.weight", (768, 1000))
    spec.rules[0].check_shape("ok", (3, 32))
    assert [r.index for r in spec.unmatched_rules(["enc.ffn.weight", "enc.attn.weight"])] == [3]


def test_pattern_objects_validate_on_construction():
    with pytest.raises(SpecError):
        BlockSparsity((1, 16, 1), 0.5)
    with pytest.raises(SpecError):
        NMSparsity(2, 1)
    assert parse_pattern("block(16,1)@0.9").describe() == "block(16,1)@0.9"


@pytest.mark.parametrize(
    ("text", "method"),
    [
        ("unstructured@0.7/wanda", "wanda"),
        ("2:4/sparsegpt", "sparsegpt"),
        ("block(16,1)@0.8 / SparseGPT", "sparsegpt"),
        ("*ffn*=2:4/magnitude", "magnitude"),
        ("2:4", "magnitude"),
    ],
)
def test_methods_in_the_shorthand_parse_back_from_describe(text, method):
    spec = SparsitySpec.parse(text)
    assert spec.rules[0].method.value == method
    assert SparsitySpec.parse(str(spec)) == spec
    assert SparsitySpec.from_json(spec.to_json()) == spec
    assert ("/" in str(spec)) == (method != "magnitude")  # magnitude, the default, is not written


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("2:4/obs", "unknown method 'obs'; known methods: magnitude, wanda, sparsegpt"),
        ("dense/wanda", "pattern 'dense' prunes nothing, so it takes no '/METHOD'"),
        ("2:4/", "unknown method ''"),
    ],
)
def test_bad_methods_in_the_shorthand(text, needle):
    with pytest.raises(SpecError) as info:
        SparsitySpec.parse(text)
    assert needle in str(info.value) and "\n" not in str(info.value)
