"""`sparsecc::BsrMatMul`: W in block-sparse-row form, blocks of R outputs x C inputs.

Inputs after X: values[nnzb, R, C] float32, col_indices[nnzb] int32 (block columns,
ascending within a block row), row_ptr[out/R + 1] int32; attributes shape=[out, in],
block=[R, C]. Stores what `block(R,C)@S` prunes, and any weight whose zeros fill whole
blocks (`existing`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparsecc.errors import VerificationError
from sparsecc.ops.base import Attribute, Require, SparseFormat, SparseOp, SparseWeight, Storage, register
from sparsecc.ops.checks import check_columns, check_row_ptr
from sparsecc.ops.reference import ROW_OF_ENTRY
from sparsecc.sparsity.detect import WeightAnalysis, block_fit
from sparsecc.sparsity.patterns import BlockSparsity, Existing, Pattern


@dataclasses.dataclass(frozen=True)
class BsrFormat(SparseFormat):
    block: tuple[int, int]

    @property
    def label(self) -> str:
        return f"BSR {self.block[0]}x{self.block[1]}"

    def fits(self, shape: tuple[int, int]) -> bool:
        return shape[0] % self.block[0] == 0 and shape[1] % self.block[1] == 0

    def compress(self, w: np.ndarray) -> BsrWeight:
        return BsrWeight.from_dense(w, self.block)

    def storage(self, w: np.ndarray) -> Storage:
        out, inp = w.shape
        r, c = self.block
        nnzb = round(block_fit(w, self.block).block_density * (out // r) * (inp // c))
        return Storage(nnzb * r * c / (out * inp), nnzb * (r * c * 4 + 4) + (out // r + 1) * 4)

    @classmethod
    def for_pattern(cls, pattern: Pattern, analysis: WeightAnalysis | None) -> list[SparseFormat]:
        if isinstance(pattern, BlockSparsity):
            return [cls(pattern.block)]
        if isinstance(pattern, Existing) and analysis is not None:
            return [cls(fit.block) for fit in analysis.block_fits]
        return []


@dataclasses.dataclass(frozen=True, eq=False)
class BsrWeight(SparseWeight):
    """Block-sparse rows: blocks of `R` outputs x `C` inputs, row-major over block rows."""

    values: np.ndarray  # [nnzb, R, C] float32
    col_indices: np.ndarray  # [nnzb] int32, block-column index, ascending within a block row
    row_ptr: np.ndarray  # [out / R + 1] int32
    shape: tuple[int, int]
    block: tuple[int, int]

    @classmethod
    def from_dense(cls, w: np.ndarray, block: tuple[int, int]) -> BsrWeight:
        out, inp = (int(s) for s in w.shape)
        r, c = (int(b) for b in block)
        if out % r or inp % c:
            raise VerificationError(f"block {r}x{c} does not divide weight shape {out}x{inp}")
        tiles = w.reshape(out // r, r, inp // c, c).transpose(0, 2, 1, 3)
        present = np.any(tiles != 0, axis=(2, 3))  # [out/R, in/C]
        rows, cols = np.nonzero(present)  # row-major, so columns ascend within a row
        row_ptr = np.zeros(out // r + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=out // r), out=row_ptr[1:])
        values = np.ascontiguousarray(tiles[rows, cols], dtype=np.float32)
        return cls(values, cols.astype(np.int32), row_ptr, (out, inp), (r, c))

    @property
    def format(self) -> BsrFormat:
        return BsrFormat(self.block)

    def to_dense(self) -> np.ndarray:
        out, inp = self.shape
        r, c = self.block
        tiles = np.zeros((out // r, inp // c, r, c), dtype=np.float32)
        rows = np.repeat(np.arange(out // r), np.diff(self.row_ptr))
        tiles[rows, self.col_indices] = self.values
        return tiles.transpose(0, 2, 1, 3).reshape(out, inp)

    @property
    def nnz_blocks(self) -> int:
        return int(self.values.shape[0])

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.values, self.col_indices, self.row_ptr


@register
class BsrMatMul(SparseOp):
    op_type = "BsrMatMul"
    inputs = ("values", "col_indices", "row_ptr")
    attributes = (Attribute("shape", 2), Attribute("block", 2))
    weight_type = BsrWeight
    format_type = BsrFormat
    body = (
        """
    block = Constant<value_ints: ints = @block>()
    grid = Div(shape, block)
    nnz_1d = Shape<end=1>(values)
"""
        + ROW_OF_ENTRY
        + """
    rowid2 = Unsqueeze(rowid, one_1d)
    col64 = Cast<to=7>(col_indices)
    col2 = Unsqueeze(col64, one_1d)
    where = Concat<axis=1>(rowid2, col2)
    tiles_shape = Concat<axis=0>(grid, block)
    tiles0 = ConstantOfShape<value=float[1] {0}>(tiles_shape)
    tiles = ScatterND(tiles0, where, values)
    rows_first = Transpose<perm=[0, 2, 1, 3]>(tiles)
    w = Reshape(rows_first, shape)
"""
    )

    @classmethod
    def attribute_values(cls, weight: BsrWeight) -> dict:
        return {"shape": tuple(weight.shape), "block": tuple(weight.block)}

    @classmethod
    def weight_from(cls, arrays: list[np.ndarray], attributes: dict) -> BsrWeight:
        return BsrWeight(*arrays, shape=tuple(attributes["shape"]), block=tuple(attributes["block"]))

    @classmethod
    def check(cls, weight: BsrWeight, require: Require) -> None:
        (out, inp), (r, c) = weight.shape, weight.block
        require(
            r > 0 and c > 0 and out % r == 0 and inp % c == 0, f"block {r}x{c} must divide shape {out}x{inp}"
        )
        require(
            weight.values.ndim == 3 and weight.values.shape[1:] == (r, c),
            f"values must be [nnzb, {r}, {c}], got {list(weight.values.shape)}",
        )
        require(
            weight.col_indices.shape == (weight.values.shape[0],), "col_indices must have one entry per block"
        )
        check_row_ptr(require, weight.row_ptr, out // r, weight.values.shape[0])
        check_columns(require, weight.col_indices, weight.row_ptr, inp // c, "block column indices")
