"""Fuzz the sparsity spec: shorthand text, dicts, YAML and JSON files.

Every input either parses (and then round-trips through its JSON form and, for shorthand,
its text) or raises SpecError with a one-line message; any other exception is a bug.
Seeded, bounded example counts (tests/fuzzing.py; `SPARSECC_FUZZ_SCALE=20` for a longer run).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from sparsecc.errors import SparseccError, SpecError
from sparsecc.sparsity.spec import SparsitySpec
from tests.fuzzing import fuzz, one_line, outcome

# Pieces of the grammar, so that many examples get past the first check.
numbers = st.one_of(
    st.integers(-3, 300).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0.9", ".5", "1", "0", "1e-3", "nan", "inf", "-0.5", "0x10", "1_0", "٣", "9" * 60]),
    st.text(max_size=4),
)
patterns = st.one_of(
    st.sampled_from(["dense", "existing", "DENSE", "Existing", "2:4", "1:8", "4:4", "0:4", "3:2", "2:256"]),
    st.builds(lambda n, m: f"{n}:{m}", numbers, numbers),
    st.builds(lambda s: f"unstructured@{s}", numbers),
    st.builds(lambda r, c, s: f"block({r},{c})@{s}", numbers, numbers, numbers),
    st.builds(lambda r, c, s: f"block ( {r} , {c} ) @ {s}", numbers, numbers, numbers),
    st.text(max_size=12),
)
selectors = st.one_of(
    st.sampled_from(["*", "*ffn*", "layers.0.weight", "", " ", "=", "[", "**", "a\nb"]),
    st.text(max_size=10),
)
rules_text = st.builds(
    lambda sel, sep, pat: f"{sel}{sep}{pat}", selectors, st.sampled_from(["=", " = ", "", "=="]), patterns
)
valid_patterns = st.one_of(
    st.sampled_from(["dense", "existing"]),
    st.builds(lambda n, k: f"{n}:{n + k}", st.integers(1, 8), st.integers(0, 8)),
    st.builds(lambda s: f"unstructured@{s}", st.floats(0.01, 0.99)),
    st.builds(
        lambda r, c, s: f"block({r},{c})@{s}", st.integers(1, 32), st.integers(1, 32), st.floats(0.01, 0.99)
    ),
)
valid_rules = st.builds(
    lambda sel, pat: f"{sel}={pat}", st.from_regex(r"[a-z.*?0-9]{1,8}", fullmatch=True), valid_patterns
)
shorthand = st.one_of(
    st.lists(valid_rules, min_size=1, max_size=4).map(lambda rules: "; ".join(rules)),
    st.lists(rules_text, max_size=4).map(lambda rules: ";".join(rules)),
    st.text(max_size=40),
)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 300), st.floats(allow_nan=True), st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
field_values = st.one_of(json_values, st.lists(st.integers(-2, 20), min_size=0, max_size=3), numbers)
rule_dicts = st.one_of(
    st.fixed_dictionaries(
        {"pattern": st.one_of(patterns, st.sampled_from(["nm", "block", "unstructured"]), json_values)},
        optional={
            "match": st.one_of(selectors, json_values),
            "sparsity": field_values,
            "block": field_values,
            "n": field_values,
            "m": field_values,
            "method": st.one_of(st.sampled_from(["magnitude", "MAGNITUDE", "random"]), json_values),
            "extra": json_values,
        },
    ),
    json_values,
)
valid_rule_dicts = st.one_of(
    st.builds(
        lambda sel, pat: {"match": sel, "pattern": pat},
        st.sampled_from(["*", "*ffn*", "a.b"]),
        valid_patterns,
    ),
    st.builds(lambda n, k: {"pattern": "nm", "n": n, "m": n + k}, st.integers(1, 8), st.integers(0, 8)),
    st.builds(
        lambda r, c, s: {"pattern": "block", "block": [r, c], "sparsity": s, "method": "magnitude"},
        st.integers(1, 32),
        st.integers(1, 32),
        st.floats(0.01, 0.99),
    ),
    st.builds(lambda s: {"match": "*", "pattern": "unstructured", "sparsity": s}, st.floats(0.01, 0.99)),
)
spec_dicts = st.one_of(
    st.lists(valid_rule_dicts, min_size=1, max_size=3).map(lambda rules: {"version": 1, "rules": rules}),
    st.fixed_dictionaries(
        {},
        optional={
            "version": st.one_of(st.just(1), json_values),
            "rules": st.one_of(st.lists(rule_dicts, max_size=3), json_values),
            "other": json_values,
        },
    ),
    st.dictionaries(st.one_of(st.text(max_size=6), st.integers(), st.none()), json_values, max_size=3),
)


def check(spec) -> SparsitySpec | None:
    """Parse; a success round-trips, a refusal is a one-line SpecError."""
    try:
        parsed = SparsitySpec.parse(spec)
    except SpecError as error:
        one_line(str(error))
        outcome("refused with a SpecError")
        return None
    outcome("parsed")
    assert parsed.rules
    assert SparsitySpec.from_json(parsed.to_json()) == parsed
    assert SparsitySpec.parse(parsed.to_dict()) == parsed
    return parsed


@fuzz(150)
@given(shorthand)
def test_shorthand_text(text):
    parsed = check(text)
    if parsed is not None and not text.strip().lower().endswith((".yaml", ".yml", ".json")):
        # The text form rounds sparsities to 6 digits (describe() uses %g), so compare texts.
        again = SparsitySpec.parse(str(parsed))
        assert str(again) == str(parsed) and len(again.rules) == len(parsed.rules)


@fuzz(150)
@given(spec_dicts)
def test_dicts(data):
    check(data)


@fuzz(150)
@given(
    st.one_of(
        spec_dicts.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
        shorthand,
        st.text(max_size=60),
        st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    ),
    st.sampled_from([".yaml", ".yml", ".json", ".YAML"]),
    st.booleans(),
)
def test_files(content, suffix, as_json):
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / f"spec{suffix}"
        if as_json and suffix == ".json":
            with contextlib.suppress(yaml.YAMLError, TypeError, ValueError):  # else: invalid JSON
                content = json.dumps(yaml.safe_load(content))
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
        check(str(path))
        check(path)


def test_unreadable_and_binary_spec_files(tmp_path):
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(b"\xff\xfe\x00rules")
    missing = tmp_path / "nope.json"
    for spec in (binary, missing, tmp_path):
        try:
            SparsitySpec.parse(spec)
        except SparseccError as error:
            assert len(str(error).splitlines()) == 1 and str(spec) in str(error)
        else:
            raise AssertionError(f"{spec} parsed")
