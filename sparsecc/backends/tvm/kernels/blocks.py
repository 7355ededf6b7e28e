"""Every weight as block-sparse-row operands, for the kernels that walk blocks (CPU and CUDA).

BSR keeps its own blocks, CSR becomes 1x1 blocks, and a dense W becomes tall blocks with
every block present, so one kernel serves all three.
"""

from __future__ import annotations

import numpy as np

from sparsecc.ops import BsrWeight, CsrFormat, CsrWeight

DENSE_ROWS = (8, 6, 4, 2, 1)  # rows per dense block, first that divides out_features
# Blocks taller than this run as stacks of blocks of this height: per block the kernel loads C
# vectors of X^T and broadcasts R x C values for R x C x V FMAs, so with ACC_VECTORS accumulators
# (V = 16 / R vectors of tokens) 4 rows balance loads and FMAs best. Measured on 16x1-pruned weights
# at 90% (2026-12-01, /tmp/i8/b41.py): as 4x1 blocks 0.139 / 0.421 / 0.561 ms for (768, 768),
# (3072, 768), (768, 3072) against 0.154 / 0.466 / 1.061 ms as 16x1.
RUN_ROWS = 4


def dense_rows(out: int) -> int:
    return next(r for r in DENSE_ROWS if out % r == 0)


def dense_as_blocks(w: np.ndarray) -> BsrWeight:
    out, inp = w.shape
    rows = dense_rows(out)
    n_block_rows = out // rows
    values = np.ascontiguousarray(w.reshape(n_block_rows, rows, inp).transpose(0, 2, 1).reshape(-1, rows, 1))
    col = np.tile(np.arange(inp, dtype=np.int32), n_block_rows)
    row_ptr = (np.arange(n_block_rows + 1, dtype=np.int64) * inp).astype(np.int32)
    return BsrWeight(values, col, row_ptr, (out, inp), (rows, 1))


def csr_as_blocks(weight: CsrWeight) -> BsrWeight:
    return BsrWeight(
        weight.values.reshape(-1, 1, 1), weight.col_indices, weight.row_ptr, weight.shape, (1, 1)
    )


def as_blocks(weight) -> BsrWeight:
    """The block-sparse-row operands of a dense W[out, in], a BsrWeight or a CsrWeight."""
    if isinstance(weight, np.ndarray):
        return dense_as_blocks(np.asarray(weight, np.float32))
    if isinstance(weight, BsrWeight):
        return weight
    if isinstance(weight, CsrWeight):
        return csr_as_blocks(weight)
    raise TypeError(f"no block-sparse-row operands for {type(weight).__name__}")


def family_label(fmt, out: int) -> str:
    """'dense_8rows', 'bsr_16x1', 'csr': the kernel family of a format (None: dense) in labels."""
    if fmt is None:
        return f"dense_{dense_rows(out)}rows"
    if isinstance(fmt, CsrFormat):
        return "csr"
    return f"bsr_{fmt.block[0]}x{fmt.block[1]}"


def operands(weight: BsrWeight, bias: np.ndarray | None) -> list[np.ndarray]:
    """The kernel's constants: values packed [nnzb, C, R], block columns, row_ptr, bias (zeros when absent).

    [nnzb, R, C] -> [nnzb, C, R] puts the R values one input column meets side by side.
    """
    values = np.ascontiguousarray(weight.values.transpose(0, 2, 1), dtype=np.float32)
    indices = weight.col_indices
    if weight.nnz_blocks == 0:  # a buffer cannot be empty: one unused zero block
        values, indices = np.zeros((1, weight.block[1], weight.block[0]), np.float32), np.zeros(1, np.int32)
    bias = np.zeros(weight.shape[0], np.float32) if bias is None else bias.astype(np.float32)
    return [values, indices.astype(np.int32), weight.row_ptr.astype(np.int32), bias]


def split_rows(weight: BsrWeight, rows: int) -> BsrWeight:
    """R x C blocks as stacks of rows x C blocks: the same values, R / rows times the indices."""
    r, c = weight.block
    parts = r // rows
    n_block_rows = weight.row_ptr.size - 1
    counts = np.diff(weight.row_ptr)
    values = weight.values.reshape(-1, parts, rows, c)  # [nnzb, part, rows, C]
    order, columns = [], []
    for i in range(n_block_rows):
        blocks = np.arange(weight.row_ptr[i], weight.row_ptr[i + 1])
        for part in range(parts):
            order.append(np.stack([blocks, np.full_like(blocks, part)], axis=1))
            columns.append(weight.col_indices[blocks])
    picks = np.concatenate(order) if order else np.zeros((0, 2), np.int64)
    new_values = np.ascontiguousarray(values[picks[:, 0], picks[:, 1]], dtype=np.float32)
    row_ptr = np.zeros(n_block_rows * parts + 1, np.int32)
    np.cumsum(np.repeat(counts, parts), out=row_ptr[1:])
    cols = np.concatenate(columns).astype(np.int32) if columns else np.zeros(0, np.int32)
    return BsrWeight(new_values, cols, row_ptr, weight.shape, (rows, c))


def transpose_tile(*sides: int) -> int:
    """The largest of 16/8/4/2/1 dividing every side (tiled transposes run ~4-10x faster)."""
    return next(t for t in (16, 8, 4, 2, 1) if all(side % t == 0 for side in sides))
