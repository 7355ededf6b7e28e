"""The sparsity spec: which weights get which pattern.

Accepted as a `SparsitySpec`, shorthand text, a dict, or a path to a YAML/JSON file
(design.md, "Sparsity spec"). Patterns are small frozen config objects validated on
construction; a spec serialises to versioned JSON (artifacts store it).

Shorthand: rules separated by `;`, each `[SELECTOR=]PATTERN`; the first rule whose
glob matches a weight's name wins; weights that match no rule stay dense.
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
import json
import os
import re
from pathlib import Path
from typing import ClassVar

from sparsecc.errors import SpecError

GRAMMAR = "rules 'SELECTOR=PATTERN' separated by ';', PATTERN one of dense, existing, unstructured@S, block(R,C)@S, N:M"


class PatternKind(str, enum.Enum):
    DENSE = "dense"
    EXISTING = "existing"
    UNSTRUCTURED = "unstructured"
    BLOCK = "block"
    NM = "nm"


class Method(str, enum.Enum):
    """How weights are chosen for pruning."""

    MAGNITUDE = "magnitude"

    @classmethod
    def parse(cls, text: str) -> Method:
        try:
            return cls(str(text).lower())
        except ValueError:
            raise SpecError(
                f"unknown method {text!r}; known methods: {', '.join(m.value for m in cls)}"
            ) from None


def _check_sparsity(sparsity) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise SpecError(f"sparsity {sparsity!r} is not a number; write a fraction such as 0.9")
    if not 0 < sparsity < 1:
        raise SpecError(f"sparsity {sparsity} is outside (0, 1); write a fraction such as 0.9 for 90%")
    return float(sparsity)


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(f"{what} must be a positive integer, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Dense:
    """No sparsity: the weight stays as it is (the baseline)."""

    kind: ClassVar[PatternKind] = PatternKind.DENSE

    def describe(self) -> str:
        return "dense"


@dataclasses.dataclass(frozen=True)
class Existing:
    """Keep the weight's values; use the zeros already there in the best format."""

    kind: ClassVar[PatternKind] = PatternKind.EXISTING

    def describe(self) -> str:
        return "existing"


@dataclasses.dataclass(frozen=True)
class Unstructured:
    """Magnitude-prune single values to `sparsity` (stored as CSR)."""

    sparsity: float
    method: str = "magnitude"
    kind: ClassVar[PatternKind] = PatternKind.UNSTRUCTURED

    def __post_init__(self):
        object.__setattr__(self, "sparsity", _check_sparsity(self.sparsity))
        object.__setattr__(self, "method", Method.parse(self.method).value)

    def describe(self) -> str:
        return f"unstructured@{self.sparsity:g}"


@dataclasses.dataclass(frozen=True)
class BlockSparsity:
    """Prune whole R x C blocks of W (R outputs x C inputs) by L2 norm (stored as BSR)."""

    block: tuple[int, int]
    sparsity: float
    method: str = "magnitude"
    kind: ClassVar[PatternKind] = PatternKind.BLOCK

    def __post_init__(self):
        block = tuple(self.block) if isinstance(self.block, (list, tuple)) else ()
        if len(block) != 2:
            raise SpecError(f"block must be two sizes [R, C], got {self.block!r}")
        object.__setattr__(self, "block", tuple(_positive_int(b, "a block size") for b in block))
        object.__setattr__(self, "sparsity", _check_sparsity(self.sparsity))
        object.__setattr__(self, "method", Method.parse(self.method).value)

    def describe(self) -> str:
        return f"block({self.block[0]},{self.block[1]})@{self.sparsity:g}"


@dataclasses.dataclass(frozen=True)
class NMSparsity:
    """Keep N of every M consecutive inputs of each output row (stored as N:M)."""

    n: int
    m: int
    method: str = "magnitude"
    kind: ClassVar[PatternKind] = PatternKind.NM

    def __post_init__(self):
        _positive_int(self.n, "N")
        _positive_int(self.m, "M")
        if self.n > self.m:
            raise SpecError(f"{self.n}:{self.m}: N must be <= M (keep N of every M inputs), e.g. 2:4")
        if self.m > 255:
            raise SpecError(f"{self.n}:{self.m}: M must be <= 255 (in-group positions are stored as uint8)")
        object.__setattr__(self, "method", Method.parse(self.method).value)

    def describe(self) -> str:
        return f"{self.n}:{self.m}"


Pattern = Dense | Existing | Unstructured | BlockSparsity | NMSparsity
PATTERN_NAMES = ("dense", "existing", "unstructured", "block", "nm (N:M)")

_UNSTRUCTURED = re.compile(r"^unstructured\s*@\s*(?P<s>[^\s]+)$", re.I)
_BLOCK = re.compile(r"^block\s*\(\s*(?P<r>[^,\s]+)\s*,\s*(?P<c>[^)\s]+)\s*\)\s*@\s*(?P<s>[^\s]+)$", re.I)
_NM = re.compile(r"^(?P<n>-?\d+)\s*:\s*(?P<m>-?\d+)$")


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SpecError(f"{what} {text!r} is not a number") from None


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SpecError(f"{what} {text!r} is not an integer") from None


def parse_pattern(text: str) -> Pattern:
    """One shorthand pattern: dense | existing | unstructured@S | block(R,C)@S | N:M."""
    text = text.strip()
    lowered = text.lower()
    if lowered == "dense":
        return Dense()
    if lowered == "existing":
        return Existing()
    if match := _UNSTRUCTURED.match(text):
        return Unstructured(_number(match["s"], "sparsity"))
    if match := _BLOCK.match(text):
        block = (_integer(match["r"], "block rows"), _integer(match["c"], "block columns"))
        return BlockSparsity(block, _number(match["s"], "sparsity"))
    if match := _NM.match(text):
        return NMSparsity(int(match["n"]), int(match["m"]))
    raise SpecError(
        f"unknown pattern {text!r}; known patterns: dense, existing, unstructured@S, block(R,C)@S, N:M"
    )


@dataclasses.dataclass(frozen=True)
class Rule:
    """`match` (an fnmatch glob on the weight name) gets `pattern`; `index` counts from 1."""

    match: str
    pattern: Pattern
    index: int = 1

    @property
    def text(self) -> str:
        return f"{self.match}={self.pattern.describe()}"

    def matches(self, weight_name: str) -> bool:
        return fnmatch.fnmatchcase(weight_name, self.match)

    def check_shape(self, weight_name: str, shape: tuple[int, int]) -> None:
        """Raise SpecError if the pattern cannot apply to W[out, in]."""
        out, inp = shape
        where = f"spec rule {self.index} ('{self.text}')"
        pattern = self.pattern
        if isinstance(pattern, BlockSparsity):
            r, c = pattern.block
            if out % r or inp % c:
                raise SpecError(
                    f"{where}: block {r}x{c} does not divide weight '{weight_name}' of shape {out}x{inp} "
                    f"(out x in); choose R dividing {out} and C dividing {inp}"
                )
        if isinstance(pattern, NMSparsity) and inp % pattern.m:
            raise SpecError(
                f"{where}: {pattern.describe()} needs in_features divisible by {pattern.m}, but weight "
                f"'{weight_name}' has shape {out}x{inp} (out x in); pick M dividing {inp} or exclude this weight"
            )

    def to_dict(self) -> dict:
        body = {"match": self.match, "pattern": self.pattern.kind.value}
        pattern = self.pattern
        if isinstance(pattern, BlockSparsity):
            body.update(block=list(pattern.block), sparsity=pattern.sparsity, method=pattern.method)
        elif isinstance(pattern, Unstructured):
            body.update(sparsity=pattern.sparsity, method=pattern.method)
        elif isinstance(pattern, NMSparsity):
            body.update(n=pattern.n, m=pattern.m, method=pattern.method)
        return body


_RULE_KEYS = {"match", "pattern", "block", "sparsity", "n", "m", "method"}
_TOP_KEYS = {"version", "rules"}


def _rule_from_dict(entry, index: int) -> Rule:
    where = f"spec rule {index}"
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: expected a mapping with 'match' and 'pattern', got {entry!r}")
    unknown = sorted(set(entry) - _RULE_KEYS)
    if unknown:
        raise SpecError(
            f"{where}: unknown key {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(_RULE_KEYS))}"
        )
    match = entry.get("match", "*")
    if not isinstance(match, str) or not match:
        raise SpecError(f"{where}: 'match' must be a non-empty glob string, got {match!r}")
    kind = entry.get("pattern")
    if not isinstance(kind, str):
        raise SpecError(f"{where}: 'pattern' is missing; one of {', '.join(PATTERN_NAMES)}")
    method = entry.get("method", "magnitude")
    try:
        lowered = kind.strip().lower()
        if lowered == "block" and "block" in entry:
            pattern = BlockSparsity(entry["block"], entry.get("sparsity"), method)
        elif lowered == "unstructured" and "sparsity" in entry:
            pattern = Unstructured(entry["sparsity"], method)
        elif lowered == "nm":
            pattern = NMSparsity(entry.get("n"), entry.get("m"), method)
        elif lowered in ("block", "unstructured"):
            needed = "'block' and 'sparsity'" if lowered == "block" else "'sparsity'"
            raise SpecError(f"pattern {lowered!r} needs {needed}")
        else:
            pattern = parse_pattern(kind)
            if method != "magnitude" and hasattr(pattern, "method"):
                pattern = dataclasses.replace(pattern, method=method)
    except SpecError as error:
        raise SpecError(f"{where} ('{match}'): {error}") from None
    return Rule(match, pattern, index)


def _rules_from_shorthand(text: str) -> tuple[Rule, ...]:
    rules = []
    parts = [part.strip() for part in text.split(";")]
    for index, part in enumerate((p for p in parts if p), start=1):
        selector, sep, pattern_text = part.rpartition("=")
        selector = selector.strip() if sep else "*"
        if sep and not selector:
            raise SpecError(f"spec rule {index} ('{part}'): empty selector before '='; {GRAMMAR}")
        try:
            rules.append(Rule(selector, parse_pattern(pattern_text), index))
        except SpecError as error:
            raise SpecError(f"spec rule {index} ('{part}'): {error}") from None
    return tuple(rules)


@dataclasses.dataclass(frozen=True)
class SparsitySpec:
    """An ordered list of rules; the first rule matching a weight's name decides its pattern."""

    rules: tuple[Rule, ...]
    VERSION: ClassVar[int] = 1

    def __post_init__(self):
        if not self.rules:
            raise SpecError(f"the spec has no rules; {GRAMMAR} (e.g. '*ffn*=block(1,16)@0.9; *attn*=2:4')")
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
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise SpecError(
                f"spec: unknown key {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(_TOP_KEYS))}"
            )
        version = data.get("version", cls.VERSION)
        if version != cls.VERSION:
            raise SpecError(
                f"spec version {version!r} is not supported; this sparsecc reads version {cls.VERSION}"
            )
        rules = data.get("rules")
        if not isinstance(rules, list):
            raise SpecError("spec: 'rules' must be a list of {match, pattern, ...} mappings")
        return cls(tuple(_rule_from_dict(entry, i) for i, entry in enumerate(rules, start=1)))

    @classmethod
    def from_file(cls, path) -> SparsitySpec:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise SpecError(f"cannot read spec file {str(path)!r}: {error.strerror or error}") from None
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except (ValueError, Exception) as error:  # json.JSONDecodeError, yaml.YAMLError
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise SpecError(
                f"spec file {str(path)!r} is not valid {path.suffix[1:].upper()}: {first}"
            ) from None
        if isinstance(data, str):
            return cls(_rules_from_shorthand(data))
        if not isinstance(data, dict):
            raise SpecError(f"spec file {str(path)!r} must hold a mapping with 'rules' (or shorthand text)")
        return cls.from_dict(data)

    @classmethod
    def from_json(cls, text: str) -> SparsitySpec:
        return cls.from_dict(json.loads(text))

    def rule_for(self, weight_name: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.matches(weight_name)), None)

    def unmatched_rules(self, weight_names) -> list[Rule]:
        names = list(weight_names)
        return [rule for rule in self.rules if not any(rule.matches(name) for name in names)]

    def to_dict(self) -> dict:
        return {"version": self.VERSION, "rules": [rule.to_dict() for rule in self.rules]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def __str__(self) -> str:
        return "; ".join(rule.text for rule in self.rules)


def _looks_like_file(text: str) -> bool:
    return text.strip().lower().endswith((".yaml", ".yml", ".json")) and "=" not in text and ";" not in text
