"""Spec patterns: what a rule asks for one weight, each pattern one class in one registry.

A pattern carries everything about itself: its shorthand (`block(R,C)@S`), its dict
fields, its validation, the keep-mask it imposes on `W[out, in]` (by magnitude, or from
the per-entry scores a data-driven method computes; see `masks.py`) and the shapes it
cannot apply to. The spec parser, the prune pass and the error messages look patterns
up here instead of listing them.

A pruning pattern's shorthand may end in `/METHOD` (`unstructured@0.7/wanda`, `2:4/sparsegpt`):
how the weights to drop are chosen. `describe()` writes it only when it is not magnitude.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import re
from typing import ClassVar

import numpy as np

from sparsecc.errors import SpecError
from sparsecc.sparsity import masks

PATTERNS: dict[str, type[Pattern]] = {}  # kind -> class, in registration order


class Method(str, enum.Enum):
    """How the weights to prune are chosen (`sparsity/methods/`)."""

    MAGNITUDE = "magnitude"  # |w|
    WANDA = "wanda"  # |w| * ||x_j||, per output row (Sun et al. 2023); needs calibration data
    SPARSEGPT = "sparsegpt"  # OBS with H = X^T X, updates kept weights (Frantar & Alistarh 2023); needs data

    @property
    def needs_data(self) -> bool:
        return self is not Method.MAGNITUDE

    @classmethod
    def parse(cls, text) -> Method:
        try:
            return cls(str(text).lower())
        except ValueError:
            raise SpecError(
                f"unknown method {text!r}; known methods: {', '.join(m.value for m in cls)}"
            ) from None


def register(cls: type[Pattern]) -> type[Pattern]:
    if cls.kind in PATTERNS:
        raise ValueError(f"pattern kind {cls.kind!r} registered twice")
    PATTERNS[cls.kind] = cls
    return cls


def known_shorthands() -> str:
    """'dense, existing, unstructured@S, ...': every registered pattern's shorthand."""
    return ", ".join(cls.shorthand for cls in PATTERNS.values())


def known_methods() -> str:
    return ", ".join(m.value for m in Method)


def parse_pattern(text: str) -> Pattern:
    """One shorthand pattern, e.g. `block(16,1)@0.9`, `2:4` or `unstructured@0.7/wanda`."""
    text = text.strip()
    base, slash, method = text.rpartition("/")
    pattern = _parse_base(base.strip() if slash else text)
    if not slash:
        return pattern
    if not hasattr(pattern, "method"):
        raise SpecError(f"pattern {pattern.describe()!r} prunes nothing, so it takes no '/METHOD'")
    return dataclasses.replace(pattern, method=method.strip())


def _parse_base(text: str) -> Pattern:
    for cls in PATTERNS.values():
        pattern = cls.parse(text)
        if pattern is not None:
            return pattern
    raise SpecError(
        f"unknown pattern {text!r}; known patterns: {known_shorthands()}, each pruning one "
        f"optionally followed by /METHOD ({known_methods()})"
    )


def pattern_from_fields(kind: str, fields: dict) -> Pattern:
    """The dict form: `kind` names a pattern class (or is shorthand text) plus that class's fields."""
    cls = PATTERNS.get(kind.strip().lower())
    if cls is None:
        pattern = parse_pattern(kind)
        if "method" in fields and hasattr(pattern, "method"):
            pattern = dataclasses.replace(pattern, method=fields["method"])
        return pattern
    return cls.from_fields(fields)


def pattern_fields() -> set[str]:
    """Every field name some pattern accepts in the dict form."""
    return {name for cls in PATTERNS.values() for name in cls.fields}


class Pattern(abc.ABC):
    """A frozen config validated on construction; subclasses are dataclasses."""

    kind: ClassVar[str]  # registry key and the dict form's "pattern" value
    shorthand: ClassVar[str]  # how the shorthand spells it, for help and errors
    fields: ClassVar[tuple[str, ...]] = ()  # dict-form keys besides "match" and "pattern"

    @classmethod
    @abc.abstractmethod
    def parse(cls, text: str) -> Pattern | None:
        """This pattern from shorthand text, or None when the text is another pattern."""

    @classmethod
    def from_fields(cls, fields: dict) -> Pattern:
        return cls(**{name: fields[name] for name in cls.fields if name in fields})

    def to_fields(self) -> dict:
        return {name: _plain(getattr(self, name)) for name in self.fields}

    @abc.abstractmethod
    def describe(self) -> str:
        """The shorthand for this pattern (parses back to an equal pattern)."""

    def keep_mask(self, w: np.ndarray) -> np.ndarray | None:
        """The entries of W[out, in] to keep by magnitude, or None when this pattern prunes nothing."""
        return None

    def keep_from_scores(self, scores: np.ndarray, per_row: bool = False) -> np.ndarray:
        """The entries to keep given an importance score per entry of W (higher: keep first).
        `per_row`: sparsity is met in each output row (Wanda), not over the whole weight."""
        raise NotImplementedError(f"pattern {self.kind!r} prunes nothing")

    def shape_problem(self, name: str, shape: tuple[int, int]) -> str | None:
        """Why the pattern cannot apply to weight `name` of shape W[out, in] (None when it can)."""
        return None


def _method_suffix(method: str) -> str:
    return "" if method == Method.MAGNITUDE.value else f"/{method}"


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


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


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SpecError(f"{what} {_clip(text)!r} is not a number") from None


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SpecError(f"{what} {_clip(text)!r} is not a usable integer") from None


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + ".."


@register
@dataclasses.dataclass(frozen=True)
class Dense(Pattern):
    """No sparsity: the weight stays as it is (the baseline)."""

    kind: ClassVar[str] = "dense"
    shorthand: ClassVar[str] = "dense"

    @classmethod
    def parse(cls, text: str) -> Dense | None:
        return cls() if text.lower() == "dense" else None

    def describe(self) -> str:
        return "dense"


@register
@dataclasses.dataclass(frozen=True)
class Existing(Pattern):
    """Keep the weight's values; use the zeros already there in the best format."""

    kind: ClassVar[str] = "existing"
    shorthand: ClassVar[str] = "existing"

    @classmethod
    def parse(cls, text: str) -> Existing | None:
        return cls() if text.lower() == "existing" else None

    def describe(self) -> str:
        return "existing"


@register
@dataclasses.dataclass(frozen=True)
class Unstructured(Pattern):
    """Prune single values to `sparsity` (stored as CSR), chosen by `method`."""

    sparsity: float
    method: str = "magnitude"
    kind: ClassVar[str] = "unstructured"
    shorthand: ClassVar[str] = "unstructured@S"
    fields: ClassVar[tuple[str, ...]] = ("sparsity", "method")
    _SHORTHAND: ClassVar[re.Pattern] = re.compile(r"^unstructured\s*@\s*(?P<s>[^\s]+)$", re.I)

    def __post_init__(self):
        object.__setattr__(self, "sparsity", _check_sparsity(self.sparsity))
        object.__setattr__(self, "method", Method.parse(self.method).value)

    @classmethod
    def parse(cls, text: str) -> Unstructured | None:
        match = cls._SHORTHAND.match(text)
        return cls(_number(match["s"], "sparsity")) if match else None

    @classmethod
    def from_fields(cls, fields: dict) -> Unstructured:
        if "sparsity" not in fields:
            raise SpecError("pattern 'unstructured' needs 'sparsity'")
        return super().from_fields(fields)

    def describe(self) -> str:
        return f"unstructured@{self.sparsity!r}{_method_suffix(self.method)}"

    def keep_mask(self, w: np.ndarray) -> np.ndarray:
        return masks.unstructured_mask(w, self.sparsity)

    def keep_from_scores(self, scores: np.ndarray, per_row: bool = False) -> np.ndarray:
        if per_row:
            return masks.drop_lowest_per_row(scores, self.sparsity)
        return masks.drop_lowest(scores, int(round(self.sparsity * scores.size)))


@register
@dataclasses.dataclass(frozen=True)
class BlockSparsity(Pattern):
    """Prune whole R x C blocks of W (R outputs x C inputs), by L2 norm or `method` (stored as BSR)."""

    block: tuple[int, int]
    sparsity: float
    method: str = "magnitude"
    kind: ClassVar[str] = "block"
    shorthand: ClassVar[str] = "block(R,C)@S"
    fields: ClassVar[tuple[str, ...]] = ("block", "sparsity", "method")
    _SHORTHAND: ClassVar[re.Pattern] = re.compile(
        r"^block\s*\(\s*(?P<r>[^,\s]+)\s*,\s*(?P<c>[^)\s]+)\s*\)\s*@\s*(?P<s>[^\s]+)$", re.I
    )

    def __post_init__(self):
        block = tuple(self.block) if isinstance(self.block, (list, tuple)) else ()
        if len(block) != 2:
            raise SpecError(f"block must be two sizes [R, C], got {self.block!r}")
        object.__setattr__(self, "block", tuple(_positive_int(b, "a block size") for b in block))
        object.__setattr__(self, "sparsity", _check_sparsity(self.sparsity))
        object.__setattr__(self, "method", Method.parse(self.method).value)

    @classmethod
    def parse(cls, text: str) -> BlockSparsity | None:
        match = cls._SHORTHAND.match(text)
        if match is None:
            return None
        block = (_integer(match["r"], "block rows"), _integer(match["c"], "block columns"))
        return cls(block, _number(match["s"], "sparsity"))

    @classmethod
    def from_fields(cls, fields: dict) -> BlockSparsity:
        if "block" not in fields or "sparsity" not in fields:
            raise SpecError("pattern 'block' needs 'block' and 'sparsity'")
        return super().from_fields(fields)

    def describe(self) -> str:
        return f"block({self.block[0]},{self.block[1]})@{self.sparsity:g}{_method_suffix(self.method)}"

    def keep_mask(self, w: np.ndarray) -> np.ndarray:
        return masks.block_mask(w, self.block, self.sparsity)

    def keep_from_scores(self, scores: np.ndarray, per_row: bool = False) -> np.ndarray:
        # A block spans R rows: blocks compete over the whole weight, by their summed score.
        return masks.block_mask_from_scores(scores, self.block, self.sparsity)

    def shape_problem(self, name: str, shape: tuple[int, int]) -> str | None:
        (out, inp), (r, c) = shape, self.block
        if out % r or inp % c:
            return (
                f"block {r}x{c} does not divide weight '{name}' of shape {out}x{inp} (out x in); "
                f"choose R dividing {out} and C dividing {inp}"
            )
        return None


@register
@dataclasses.dataclass(frozen=True)
class NMSparsity(Pattern):
    """Keep N of every M consecutive inputs of each output row (stored as N:M)."""

    n: int
    m: int
    method: str = "magnitude"
    kind: ClassVar[str] = "nm"
    shorthand: ClassVar[str] = "N:M"
    fields: ClassVar[tuple[str, ...]] = ("n", "m", "method")
    _SHORTHAND: ClassVar[re.Pattern] = re.compile(r"^(?P<n>-?\d+)\s*:\s*(?P<m>-?\d+)$")

    def __post_init__(self):
        _positive_int(self.n, "N")
        _positive_int(self.m, "M")
        if self.n > self.m:
            raise SpecError(f"{self.n}:{self.m}: N must be <= M (keep N of every M inputs), e.g. 2:4")
        if self.m > 255:
            raise SpecError(f"{self.n}:{self.m}: M must be <= 255 (in-group positions are stored as uint8)")
        object.__setattr__(self, "method", Method.parse(self.method).value)

    @classmethod
    def parse(cls, text: str) -> NMSparsity | None:
        match = cls._SHORTHAND.match(text)
        return cls(_integer(match["n"], "N"), _integer(match["m"], "M")) if match else None

    @classmethod
    def from_fields(cls, fields: dict) -> NMSparsity:
        return cls(fields.get("n"), fields.get("m"), fields.get("method", "magnitude"))

    def describe(self) -> str:
        return f"{self.n}:{self.m}{_method_suffix(self.method)}"

    def keep_mask(self, w: np.ndarray) -> np.ndarray:
        return masks.nm_mask(w, self.n, self.m)

    def keep_from_scores(self, scores: np.ndarray, per_row: bool = False) -> np.ndarray:
        return masks.nm_mask_from_scores(scores, self.n, self.m)  # always per row: groups lie in a row

    def shape_problem(self, name: str, shape: tuple[int, int]) -> str | None:
        out, inp = shape
        if inp % self.m:
            return (
                f"{self.describe()} needs in_features divisible by {self.m}, but weight '{name}' has shape "
                f"{out}x{inp} (out x in); pick M dividing {inp} or exclude this weight"
            )
        return None
