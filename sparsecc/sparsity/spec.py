"""The sparsity spec: which weights get which pattern.

Accepted as a `SparsitySpec`, shorthand text, a dict, or a path to a YAML/JSON file.
Shorthand: rules separated by `;`, each `[SELECTOR=]PATTERN[/METHOD]`; the first rule whose
glob matches one of a weight's names wins; weights that match no rule stay dense.
A weight's names are its module name (the torch parameter, or the module path an
exporter recorded) and its initializer name. Patterns live in `patterns.py`; a spec
serialises to versioned JSON (artifacts store it).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
from pathlib import Path
from typing import ClassVar

from sparsecc.errors import SpecError
from sparsecc.sparsity.attention_spec import AttentionSpec
from sparsecc.sparsity.patterns import (
    Method,
    Pattern,
    known_methods,
    known_shorthands,
    parse_pattern,
    pattern_fields,
    pattern_from_fields,
)


def grammar() -> str:
    return (
        f"rules 'SELECTOR=PATTERN[/METHOD]' separated by ';', PATTERN one of {known_shorthands()}, "
        f"METHOD one of {known_methods()}"
    )


@dataclasses.dataclass(frozen=True)
class Rule:
    """`match` (an fnmatch glob on the weight's names) gets `pattern`; `index` counts from 1."""

    match: str
    pattern: Pattern
    index: int = 1

    @property
    def text(self) -> str:
        return f"{self.match}={self.pattern.describe()}"

    def label(self) -> str:
        """`spec rule N ('TEXT')` for messages, on one line whatever the selector holds."""
        return f"spec rule {self.index} ('{_one_line(self.text)}')"

    @property
    def method(self) -> Method | None:
        """How this rule chooses the entries to drop; None when its pattern prunes nothing."""
        method = getattr(self.pattern, "method", None)
        return None if method is None else Method(method)

    def matches(self, *names: str) -> bool:
        return any(fnmatch.fnmatchcase(name, self.match) for name in names if name)

    def check_shape(self, weight_name: str, shape: tuple[int, int]) -> None:
        """Raise SpecError if the pattern cannot apply to W[out, in]."""
        problem = self.pattern.shape_problem(weight_name, shape)
        if problem:
            raise SpecError(f"{self.label()}: {problem}")

    def to_dict(self) -> dict:
        return {"match": self.match, "pattern": self.pattern.kind, **self.pattern.to_fields()}


_TOP_KEYS = {"version", "rules", "attention"}


def _rule_from_dict(entry, index: int) -> Rule:
    where = f"spec rule {index}"
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: expected a mapping with 'match' and 'pattern', got {entry!r}")
    valid = {"match", "pattern"} | pattern_fields()
    unknown = _sorted_reprs(set(entry) - valid)
    if unknown:
        raise SpecError(f"{where}: unknown key {', '.join(unknown)}; valid keys: {', '.join(sorted(valid))}")
    match = entry.get("match", "*")
    if not isinstance(match, str) or not match:
        raise SpecError(f"{where}: 'match' must be a non-empty glob string, got {match!r}")
    kind = entry.get("pattern")
    if not isinstance(kind, str):
        raise SpecError(f"{where}: 'pattern' is missing; one of {known_shorthands()}")
    fields = {key: value for key, value in entry.items() if key not in ("match", "pattern")}
    try:
        pattern = pattern_from_fields(kind, fields)
    except SpecError as error:
        raise SpecError(f"{where} ('{_one_line(match)}'): {error}") from None
    return Rule(match, pattern, index)


def _rules_from_shorthand(text: str) -> tuple[Rule, ...]:
    rules = []
    parts = [part.strip() for part in text.split(";")]
    for index, part in enumerate((p for p in parts if p), start=1):
        selector, sep, pattern_text = part.rpartition("=")
        selector = selector.strip() if sep else "*"
        if sep and not selector:
            raise SpecError(
                f"spec rule {index} ('{_one_line(part)}'): empty selector before '='; {grammar()}"
            )
        try:
            rules.append(Rule(selector, parse_pattern(pattern_text), index))
        except SpecError as error:
            raise SpecError(f"spec rule {index} ('{_one_line(part)}'): {error}") from None
    return tuple(rules)


@dataclasses.dataclass(frozen=True)
class SparsitySpec:
    """An ordered list of rules; the first rule matching a weight's name decides its pattern."""

    rules: tuple[Rule, ...]
    attention: AttentionSpec | None = None  # per-head attention patterns (`attention_spec.py`)
    VERSION: ClassVar[int] = 1

    def __post_init__(self):
        if not self.rules and self.attention is None:
            raise SpecError(f"the spec has no rules; {grammar()} (e.g. '*ffn*=block(1,16)@0.9; *attn*=2:4')")
        object.__setattr__(self, "rules", tuple(self.rules))

    @classmethod
    def parse(cls, spec) -> SparsitySpec:
        """Accept a SparsitySpec, shorthand text, a dict, or a path to a .yaml/.yml/.json file."""
        if isinstance(spec, SparsitySpec):
            return spec
        if isinstance(spec, os.PathLike) or (isinstance(spec, str) and _looks_like_file(spec)):
            return cls.from_file(spec)
        if isinstance(spec, str):
            return cls(_rules_from_shorthand(spec))
        if isinstance(spec, dict):
            return cls.from_dict(spec)
        raise SpecError(
            f"a spec must be text, a dict, a file path or a SparsitySpec, not {type(spec).__name__}"
        )

    @classmethod
    def from_dict(cls, data: dict) -> SparsitySpec:
        unknown = _sorted_reprs(set(data) - _TOP_KEYS)
        if unknown:
            raise SpecError(
                f"spec: unknown key {', '.join(unknown)}; valid keys: {', '.join(sorted(_TOP_KEYS))}"
            )
        version = data.get("version", cls.VERSION)
        if isinstance(version, bool) or version != cls.VERSION:
            raise SpecError(
                f"spec version {version!r} is not supported; this sparsecc reads version {cls.VERSION}"
            )
        attention = AttentionSpec.from_dict(data["attention"]) if "attention" in data else None
        rules = data.get("rules", [] if attention is not None else None)
        if not isinstance(rules, list):
            raise SpecError("spec: 'rules' must be a list of {match, pattern, ...} mappings")
        return cls(tuple(_rule_from_dict(entry, i) for i, entry in enumerate(rules, start=1)), attention)

    @classmethod
    def from_file(cls, path) -> SparsitySpec:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise SpecError(f"cannot read spec file {str(path)!r}: {error.strerror or error}") from None
        except UnicodeDecodeError as error:
            raise SpecError(
                f"spec file {str(path)!r} is not UTF-8 text ({error.reason} at byte {error.start}); "
                "save it as UTF-8 YAML or JSON"
            ) from None
        data = _decode(path, text)
        if isinstance(data, str):
            return cls(_rules_from_shorthand(data))
        if not isinstance(data, dict):
            raise SpecError(f"spec file {str(path)!r} must hold a mapping with 'rules' (or shorthand text)")
        return cls.from_dict(data)

    @classmethod
    def from_json(cls, text: str) -> SparsitySpec:
        return cls.from_dict(json.loads(text))

    def rule_for(self, *names: str) -> Rule | None:
        """The first rule matching any of the weight's names (module name, initializer name)."""
        return next((rule for rule in self.rules if rule.matches(*names)), None)

    def unmatched_rules(self, weight_names) -> list[Rule]:
        """Rules that match none of the names; `weight_names` holds names or tuples of one weight's names."""
        groups = [(n,) if isinstance(n, str) else tuple(n) for n in weight_names]
        return [rule for rule in self.rules if not any(rule.matches(*group) for group in groups)]

    def to_dict(self) -> dict:
        data = {"version": self.VERSION, "rules": [rule.to_dict() for rule in self.rules]}
        if self.attention is not None:
            data["attention"] = self.attention.to_dict()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def __str__(self) -> str:
        return "; ".join(rule.text for rule in self.rules)


def _decode(path: Path, text: str):
    """The file's data: JSON by suffix, otherwise YAML (which also reads JSON)."""
    import yaml

    errors = (json.JSONDecodeError,) if path.suffix.lower() == ".json" else (yaml.YAMLError,)
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except errors as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SpecError(f"spec file {str(path)!r} is not valid {path.suffix[1:].upper()}: {first}") from None


def _one_line(text: str) -> str:
    """`text` with line breaks and other unprintable characters escaped, for a one-line message."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _sorted_reprs(keys) -> list[str]:
    """Keys of any types (YAML allows ints, None...) as sorted reprs."""
    return sorted(repr(key) for key in keys)


def _looks_like_file(text: str) -> bool:
    return text.strip().lower().endswith((".yaml", ".yml", ".json")) and "=" not in text and ";" not in text
