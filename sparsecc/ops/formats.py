"""Sparse weight formats shared by the IR ops and the backends.

Every format describes a linear weight `W[out, in]` in torch layout (rows = outputs),
exactly as the `sparsecc` ops of design.md store it. `from_dense` keeps every non-zero
(it never prunes: pruning is a pass); `to_dense` rebuilds `W` exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparsecc.errors import VerificationError


def _as_shape(shape) -> tuple[int, int]:
    out, inp = (int(s) for s in shape)
    return out, inp


@dataclasses.dataclass(frozen=True, eq=False)
class BsrWeight:
    """Block-sparse rows: blocks of `R` outputs x `C` inputs, row-major over block rows."""

    values: np.ndarray  # [nnzb, R, C] float32
    col_indices: np.ndarray  # [nnzb] int32, block-column index, ascending within a block row
    row_ptr: np.ndarray  # [out / R + 1] int32
    shape: tuple[int, int]
    block: tuple[int, int]

    @classmethod
    def from_dense(cls, w: np.ndarray, block: tuple[int, int]) -> BsrWeight:
        out, inp = _as_shape(w.shape)
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

    @property
    def density(self) -> float:
        out, inp = self.shape
        return self.values.size / float(out * inp)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The op inputs after X, in the order of `sparsecc.BsrMatMul`."""
        return self.values, self.col_indices, self.row_ptr


@dataclasses.dataclass(frozen=True, eq=False)
class NmWeight:
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
        out, inp = _as_shape(w.shape)
        if not 0 < n <= m or inp % m:
            raise VerificationError(f"{n}:{m} does not fit weight shape {out}x{inp}")
        groups = w.reshape(out, inp // m, m)
        nonzero = groups != 0
        if np.any(nonzero.sum(axis=2) > n):
            raise VerificationError(f"weight {out}x{inp} has groups with more than {n} of {m} non-zeros")
        # Non-zeros first (stable => ascending position), then the lowest zero positions.
        order = np.argsort(~nonzero, axis=2, kind="stable")[:, :, :n]
        kept = np.sort(order, axis=2)
        values = np.take_along_axis(groups, kept, axis=2).reshape(out, -1).astype(np.float32)
        indices = kept.reshape(out, -1).astype(np.uint8)
        return cls(np.ascontiguousarray(values), np.ascontiguousarray(indices), (out, inp), int(n), int(m))

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
        """The op inputs after X, in the order of `sparsecc.NmMatMul`."""
        return self.values, self.indices


@dataclasses.dataclass(frozen=True, eq=False)
class CsrWeight:
    """Unstructured compressed sparse rows."""

    values: np.ndarray  # [nnz] float32
    col_indices: np.ndarray  # [nnz] int32, ascending within a row
    row_ptr: np.ndarray  # [out + 1] int32
    shape: tuple[int, int]

    @classmethod
    def from_dense(cls, w: np.ndarray) -> CsrWeight:
        out, inp = _as_shape(w.shape)
        rows, cols = np.nonzero(w)
        row_ptr = np.zeros(out + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=out), out=row_ptr[1:])
        values = np.ascontiguousarray(w[rows, cols], dtype=np.float32)
        return cls(values, cols.astype(np.int32), row_ptr, (out, inp))

    def to_dense(self) -> np.ndarray:
        out, inp = self.shape
        w = np.zeros((out, inp), dtype=np.float32)
        rows = np.repeat(np.arange(out), np.diff(self.row_ptr))
        w[rows, self.col_indices] = self.values
        return w

    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    @property
    def density(self) -> float:
        out, inp = self.shape
        return self.nnz / float(out * inp)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The op inputs after X, in the order of `sparsecc.CsrMatMul`."""
        return self.values, self.col_indices, self.row_ptr


SparseWeight = BsrWeight | NmWeight | CsrWeight
