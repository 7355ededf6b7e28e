"""What defines one sparse op of the `sparsecc` domain, and the registry that finds it by type.

An op module (`bsr.py`, `nm.py`, `csr.py`) defines three things and registers the op:
  - a `SparseFormat`: the format's parameters without data (`BsrFormat((16, 1))`). It is
    what dense-to-sparse chooses for a spec pattern, what cost models price (its `storage`
    is the op's cost hook) and what compresses a dense W;
  - a `SparseWeight`: the compressed W[out, in] (rows = outputs), whose `arrays()` are the
    op's constant inputs after X;
  - a `SparseOp`: op type, input names, attributes, the verifier's format rules and the
    reference body in standard ONNX.
Everything else (building nodes, reading them back, verifying, attaching bodies) is
generic over the registry, so adding a format is adding one module.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from sparsecc.sparsity.detect import WeightAnalysis
    from sparsecc.sparsity.patterns import Pattern

DOMAIN = "sparsecc"
DOMAIN_VERSION = 1

Require = Callable[[bool, str], None]  # raises VerificationError naming the node when the bool is False


@dataclasses.dataclass(frozen=True)
class Storage:
    """What a format stores for one W: the fraction of W's values kept (zeros inside blocks or
    groups count) and the bytes of all its constant inputs."""

    density: float
    nbytes: int


class SparseFormat(abc.ABC):
    """A storage format's parameters; subclasses are frozen dataclasses (hashable, comparable)."""

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """What reports show: "BSR 16x1", "N:M 2:4", "CSR"."""

    @abc.abstractmethod
    def fits(self, shape: tuple[int, int]) -> bool:
        """Whether W of this shape can be stored in this format."""

    def refuses(self, w: np.ndarray) -> str | None:
        """Why this W cannot be stored as it is (None when it can: most formats keep any non-zeros)."""
        return None

    @abc.abstractmethod
    def compress(self, w: np.ndarray) -> SparseWeight:
        """W[out, in] in this format; keeps every non-zero (it never prunes)."""

    @abc.abstractmethod
    def storage(self, w: np.ndarray) -> Storage:
        """The cost hook: what compressing `w` would store (without building the arrays)."""

    @classmethod
    @abc.abstractmethod
    def for_pattern(cls, pattern: Pattern, analysis: WeightAnalysis | None) -> list[SparseFormat]:
        """The formats of this kind that can hold a weight pruned by `pattern`; for "existing",
        those the analysed structure allows (`analysis` is given for "existing" only)."""


class SparseWeight(abc.ABC):
    """A compressed W[out, in]; subclasses are frozen dataclasses holding numpy arrays."""

    shape: tuple[int, int]
    values: np.ndarray

    @property
    @abc.abstractmethod
    def format(self) -> SparseFormat: ...

    @abc.abstractmethod
    def arrays(self) -> tuple[np.ndarray, ...]:
        """The op's constant inputs after X, in the op's input order."""

    @abc.abstractmethod
    def to_dense(self) -> np.ndarray:
        """W rebuilt exactly, float32."""

    @property
    def density(self) -> float:
        out, inp = self.shape
        return self.values.size / float(out * inp)


@dataclasses.dataclass(frozen=True)
class Attribute:
    """One attribute of an op: `count` ints, or a single int when count is None."""

    name: str
    count: int | None = None


class SparseOp(abc.ABC):
    """One op of the domain. Computes Y[..., out] = X[..., in] @ W.T (+ bias)."""

    op_type: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]  # constant inputs after X; an optional bias follows them
    attributes: ClassVar[tuple[Attribute, ...]]
    weight_type: ClassVar[type[SparseWeight]]
    format_type: ClassVar[type[SparseFormat]]
    # Statements of the reference body (ONNX text) that define `w` = W[out, in] (float) from the
    # inputs and attributes; `reference.py` wraps them with the shared linear head and tail.
    body: ClassVar[str]
    conv: ClassVar[bool] = False  # the Conv form (`conv.py`): X is NCHW, W a Conv's flattened weight

    @classmethod
    @abc.abstractmethod
    def attribute_values(cls, weight: SparseWeight) -> dict[str, int | tuple[int, ...]]:
        """The node's attributes for this weight."""

    @classmethod
    @abc.abstractmethod
    def weight_from(cls, arrays: list[np.ndarray], attributes: dict) -> SparseWeight:
        """The weight held by a node's constant inputs and attributes."""

    @classmethod
    @abc.abstractmethod
    def check(cls, weight: SparseWeight, require: Require) -> None:
        """The verifier's format rules: shapes against attributes, index ranges, orderings."""


OPS: dict[str, type[SparseOp]] = {}  # op type -> definition, in registration order


def register(op: type[SparseOp]) -> type[SparseOp]:
    if op.op_type in OPS:
        raise ValueError(f"sparse op {op.op_type} registered twice")
    OPS[op.op_type] = op
    return op


def op_of(thing: SparseWeight | SparseFormat | str) -> type[SparseOp]:
    """The op defining a weight, a format or an op type (for a weight or format: the MatMul form)."""
    for op in OPS.values():
        if thing == op.op_type or (not op.conv and isinstance(thing, (op.weight_type, op.format_type))):
            return op
    raise KeyError(f"no sparse op for {thing!r}; known ops: {', '.join(OPS)}")


def formats_for(
    pattern: Pattern, shape: tuple[int, int], analysis: WeightAnalysis | None = None
) -> list[SparseFormat]:
    """Every registered format that can hold W of `shape` pruned by `pattern`."""
    found = [
        fmt for op in OPS.values() if not op.conv for fmt in op.format_type.for_pattern(pattern, analysis)
    ]
    return [fmt for fmt in found if fmt.fits(shape)]
