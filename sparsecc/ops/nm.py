"""`sparsecc::NmMatMul`: N:M structured W, N kept in each group of M consecutive inputs of a row.

Inputs after X: values[out, in*N/M] float32, indices[out, in*N/M] uint8 (the position
0..M-1 inside the group, ascending); attributes shape=[out, in], n, m. Stores what `N:M`
prunes, and any weight that conforms to N:M already (`existing`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparsecc.errors import VerificationError
from sparsecc.ops.base import Attribute, Require, SparseFormat, SparseOp, SparseWeight, Storage, register
from sparsecc.sparsity.detect import WeightAnalysis, conforms_nm
from sparsecc.sparsity.patterns import Existing, NMSparsity, Pattern

_CHUNK_ELEMENTS = 1 << 22  # weights compressed at a time


@dataclasses.dataclass(frozen=True)
class NmFormat(SparseFormat):
    n: int
    m: int

    @property
    def label(self) -> str:
        return f"N:M {self.n}:{self.m}"

    def fits(self, shape: tuple[int, int]) -> bool:
        return 0 < self.n <= self.m and shape[1] % self.m == 0

    def refuses(self, w: np.ndarray) -> str | None:
        if not conforms_nm(w, self.n, self.m):
            return f"weight does not conform to {self.n}:{self.m}; run the prune pass first"
        return None

    def compress(self, w: np.ndarray) -> NmWeight:
        return NmWeight.from_dense(w, self.n, self.m)

    def storage(self, w: np.ndarray) -> Storage:
        kept = w.shape[0] * (w.shape[1] // self.m) * self.n
        return Storage(self.n / self.m, kept * 5)  # a float32 value and a uint8 position each

    @classmethod
    def for_pattern(cls, pattern: Pattern, analysis: WeightAnalysis | None) -> list[SparseFormat]:
        if isinstance(pattern, NMSparsity):
            return [cls(pattern.n, pattern.m)]
        if isinstance(pattern, Existing) and analysis is not None:
            return [cls(n, m) for n, m in analysis.nm]
        return []


@dataclasses.dataclass(frozen=True, eq=False)
class NmWeight(SparseWeight):
    """N:M structured: in each group of M consecutive inputs of a row, N values are kept."""

    values: np.ndarray  # [out, in * n / m] float32
    indices: np.ndarray  # [out, in * n / m] uint8, position inside the group, ascending
    shape: tuple[int, int]
    n: int
    m: int

    @classmethod
    def from_dense(cls, w: np.ndarray, n: int, m: int) -> NmWeight:
        """Compress `w`; raises if some group holds more than `n` non-zeros.

        Groups with fewer non-zeros are padded with zero values at the lowest free
        positions, so every group stores exactly `n` (position, value) pairs.
        """
        out, inp = (int(s) for s in w.shape)
        if not 0 < n <= m or inp % m:
            raise VerificationError(f"{n}:{m} does not fit weight shape {out}x{inp}")
        values = np.empty((out, inp // m * n), dtype=np.float32)
        indices = np.empty((out, inp // m * n), dtype=np.uint8)
        rows = max(1, _CHUNK_ELEMENTS // max(inp, 1))  # bounded temporaries: the argsort is int64
        for start in range(0, out, rows):
            groups = w[start : start + rows].reshape(-1, inp // m, m)
            nonzero = groups != 0
            if np.any(nonzero.sum(axis=2) > n):
                raise VerificationError(f"weight {out}x{inp} has groups with more than {n} of {m} non-zeros")
            # Non-zeros first (stable => ascending position), then the lowest zero positions.
            kept = np.sort(np.argsort(~nonzero, axis=2, kind="stable")[:, :, :n], axis=2)
            values[start : start + rows] = np.take_along_axis(groups, kept, axis=2).reshape(len(groups), -1)
            indices[start : start + rows] = kept.reshape(len(groups), -1)
        return cls(values, indices, (out, inp), int(n), int(m))

    @property
    def format(self) -> NmFormat:
        return NmFormat(self.n, self.m)

    def to_dense(self) -> np.ndarray:
        out, inp = self.shape
        k = self.values.shape[1]
        cols = (np.arange(k) // self.n) * self.m + self.indices.astype(np.int64)
        w = np.zeros((out, inp), dtype=np.float32)
        np.put_along_axis(w, cols, self.values, axis=1)
        return w

    @property
    def density(self) -> float:
        return self.n / self.m

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.values, self.indices


@register
class NmMatMul(SparseOp):
    op_type = "NmMatMul"
    inputs = ("values", "indices")
    attributes = (Attribute("shape", 2), Attribute("n"), Attribute("m"))
    weight_type = NmWeight
    format_type = NmFormat
    body = """
    n = Constant<value_int: int = @n>()
    m = Constant<value_int: int = @m>()
    k_1d = Shape<start=1, end=2>(values)
    k = Squeeze(k_1d, zero_1d)
    zero = Constant<value_int=0>()
    step = Constant<value_int=1>()
    j = Range(zero, k, step)
    group = Div(j, n)
    base = Mul(group, m)
    pos = Cast<to=7>(indices)
    cols = Add(pos, base)
    w0 = ConstantOfShape<value=float[1] {0}>(shape)
    w = ScatterElements<axis=1>(w0, cols, values)
"""

    @classmethod
    def attribute_values(cls, weight: NmWeight) -> dict:
        return {"shape": tuple(weight.shape), "n": weight.n, "m": weight.m}

    @classmethod
    def weight_from(cls, arrays: list[np.ndarray], attributes: dict) -> NmWeight:
        return NmWeight(*arrays, shape=tuple(attributes["shape"]), n=attributes["n"], m=attributes["m"])

    @classmethod
    def check(cls, weight: NmWeight, require: Require) -> None:
        (out, inp), n, m = weight.shape, weight.n, weight.m
        require(0 < n <= m and inp % m == 0, f"{n}:{m} must have 0 < n <= m and m dividing {inp}")
        k = inp // m * n
        require(
            weight.values.shape == (out, k), f"values must be [{out}, {k}], got {list(weight.values.shape)}"
        )
        require(
            weight.indices.shape == (out, k),
            f"indices must be [{out}, {k}], got {list(weight.indices.shape)}",
        )
        require(weight.indices.dtype == np.uint8, f"indices must be uint8, got {weight.indices.dtype}")
        groups = weight.indices.reshape(out, inp // m, n).astype(np.int64)
        require(bool(np.all(groups < m)), f"indices must be < m={m}")
        require(
            bool(np.all(np.diff(groups, axis=2) > 0)), "indices must be strictly ascending within a group"
        )
