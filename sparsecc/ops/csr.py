"""`sparsecc::CsrMatMul`: unstructured W in compressed sparse rows.

Inputs after X: values[nnz] float32, col_indices[nnz] int32 (ascending within a row),
row_ptr[out + 1] int32; attribute shape=[out, in]. Stores what `unstructured@S` prunes,
and any weight with zeros (`existing`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparsecc.ops.base import Attribute, Require, SparseFormat, SparseOp, SparseWeight, Storage, register
from sparsecc.ops.checks import check_columns, check_row_ptr
from sparsecc.ops.reference import ROW_OF_ENTRY
from sparsecc.sparsity.detect import WeightAnalysis
from sparsecc.sparsity.patterns import Existing, Pattern, Unstructured


@dataclasses.dataclass(frozen=True)
class CsrFormat(SparseFormat):
    @property
    def label(self) -> str:
        return "CSR"

    def fits(self, shape: tuple[int, int]) -> bool:
        return True

    def compress(self, w: np.ndarray) -> CsrWeight:
        return CsrWeight.from_dense(w)

    def storage(self, w: np.ndarray) -> Storage:
        nnz = int(np.count_nonzero(w))
        return Storage(nnz / w.size, nnz * 8 + (w.shape[0] + 1) * 4)

    @classmethod
    def for_pattern(cls, pattern: Pattern, analysis: WeightAnalysis | None) -> list[SparseFormat]:
        return [cls()] if isinstance(pattern, (Unstructured, Existing)) else []


@dataclasses.dataclass(frozen=True, eq=False)
class CsrWeight(SparseWeight):
    """Unstructured compressed sparse rows."""

    values: np.ndarray  # [nnz] float32
    col_indices: np.ndarray  # [nnz] int32, ascending within a row
    row_ptr: np.ndarray  # [out + 1] int32
    shape: tuple[int, int]

    @classmethod
    def from_dense(cls, w: np.ndarray) -> CsrWeight:
        out, inp = (int(s) for s in w.shape)
        rows, cols = np.nonzero(w)
        row_ptr = np.zeros(out + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=out), out=row_ptr[1:])
        values = np.ascontiguousarray(w[rows, cols], dtype=np.float32)
        return cls(values, cols.astype(np.int32), row_ptr, (out, inp))

    @property
    def format(self) -> CsrFormat:
        return CsrFormat()

    def to_dense(self) -> np.ndarray:
        out, inp = self.shape
        w = np.zeros((out, inp), dtype=np.float32)
        rows = np.repeat(np.arange(out), np.diff(self.row_ptr))
        w[rows, self.col_indices] = self.values
        return w

    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.values, self.col_indices, self.row_ptr


@register
class CsrMatMul(SparseOp):
    op_type = "CsrMatMul"
    inputs = ("values", "col_indices", "row_ptr")
    attributes = (Attribute("shape", 2),)
    weight_type = CsrWeight
    format_type = CsrFormat
    body = (
        """
    nnz_1d = Shape(values)
"""
        + ROW_OF_ENTRY
        + """
    rowid2 = Unsqueeze(rowid, one_1d)
    col64 = Cast<to=7>(col_indices)
    col2 = Unsqueeze(col64, one_1d)
    where = Concat<axis=1>(rowid2, col2)
    w0 = ConstantOfShape<value=float[1] {0}>(shape)
    w = ScatterND(w0, where, values)
"""
    )

    @classmethod
    def attribute_values(cls, weight: CsrWeight) -> dict:
        return {"shape": tuple(weight.shape)}

    @classmethod
    def weight_from(cls, arrays: list[np.ndarray], attributes: dict) -> CsrWeight:
        return CsrWeight(*arrays, shape=tuple(attributes["shape"]))

    @classmethod
    def check(cls, weight: CsrWeight, require: Require) -> None:
        out, inp = weight.shape
        require(
            weight.values.ndim == 1 and weight.col_indices.shape == weight.values.shape,
            "values and col_indices must be 1-D of the same length",
        )
        check_row_ptr(require, weight.row_ptr, out, weight.values.shape[0])
        check_columns(require, weight.col_indices, weight.row_ptr, inp, "column indices")
