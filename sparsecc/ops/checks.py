"""Verifier rules that several formats share: row pointers and column indices."""

from __future__ import annotations

import numpy as np

from sparsecc.ops.base import Require


def check_row_ptr(require: Require, row_ptr: np.ndarray, rows: int, nnz: int) -> None:
    require(row_ptr.dtype == np.int32, f"row_ptr must be int32, got {row_ptr.dtype}")
    require(row_ptr.shape == (rows + 1,), f"row_ptr must have {rows + 1} entries, has {row_ptr.shape}")
    require(row_ptr[0] == 0 and row_ptr[-1] == nnz, f"row_ptr must start at 0 and end at {nnz}")
    require(bool(np.all(np.diff(row_ptr) >= 0)), "row_ptr must be non-decreasing")


def check_columns(require: Require, cols: np.ndarray, row_ptr: np.ndarray, limit: int, what: str) -> None:
    """In range and strictly ascending within each row (the kernels rely on both)."""
    require(cols.dtype == np.int32, f"col_indices must be int32, got {cols.dtype}")
    if cols.size == 0:
        return
    require(cols.min() >= 0 and cols.max() < limit, f"{what} must lie in [0, {limit})")
    steps = np.diff(cols.astype(np.int64))
    row_starts = np.zeros(cols.size, dtype=bool)
    row_starts[row_ptr[1:-1][row_ptr[1:-1] < cols.size]] = True
    require(bool(np.all((steps > 0) | row_starts[1:])), f"{what} must be strictly ascending within a row")
