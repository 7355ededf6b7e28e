"""The CPU N:M kernel: R rows walk the M-groups together, so X^T rows stay in L1.

For each group of M inputs, the R rows of a tile pick their N inputs from the same
M rows of X^T (one cache line set), instead of each row streaming its own half of
X^T from L2 as the CSR form does. Positions and values are pre-packed per
(row block, group, row, slot) at compile time; the trip counts are static.
"""

from __future__ import annotations

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel
from sparsecc.backends.tvm.kernels.blocked_cpu import transpose_tile
from sparsecc.ops.formats import NmWeight

ROWS = (4, 2, 1)  # rows per tile, the first that divides out_features


def pack(weight: NmWeight, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """values/positions as [out/rows, groups, rows, n]; positions stay uint8 (in-group), 5 B per value."""
    out, inp = weight.shape
    groups = inp // weight.m
    values = weight.values.reshape(out // rows, rows, groups, weight.n).transpose(0, 2, 1, 3)
    positions = weight.indices.reshape(out // rows, rows, groups, weight.n).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(values, np.float32), np.ascontiguousarray(positions, np.uint8)


def nm_linear(m: int, weight: NmWeight, rows: int, mt: int, name: str = "main"):
    """PrimFunc (X[m, in], values[out/R, G, R, n], columns[out/R, G, R, n], bias[out], Y[m, out])."""
    from tvm.script import tirx as T

    out, inp = weight.shape
    n, groups = weight.n, inp // weight.m
    m_padded = -(-m // mt) * mt
    tb = transpose_tile(inp, m_padded)

    @T.prim_func
    def kernel(
        X: T.Buffer((m, inp), "float32"),
        data: T.Buffer((out // rows, groups, rows, n), "float32"),
        columns: T.Buffer((out // rows, groups, rows, n), "uint8"),
        bias: T.Buffer((out,), "float32"),
        Y: T.Buffer((m, out), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "global_symbol": name, "tirx.is_scheduled": True})
        XT = T.alloc_buffer((inp, m_padded), "float32")
        for kb in T.parallel(inp // tb):  # tb x tb tiles keep both sides of the transpose in L1
            for tb_index in T.serial(m_padded // tb):
                for kk in T.serial(tb):
                    for tt in T.vectorized(tb):
                        XT[kb * tb + kk, tb_index * tb + tt] = T.if_then_else(
                            tb_index * tb + tt < m,
                            X[T.min(tb_index * tb + tt, m - 1), kb * tb + kk],
                            T.float32(0),
                        )
        for block in T.parallel(out // rows):
            for tile in T.serial(m_padded // mt):
                acc = T.alloc_buffer((rows, mt), "float32")
                for r in T.unroll(rows):
                    for t in T.vectorized(mt):
                        acc[r, t] = bias[block * rows + r]
                for g in T.serial(groups):
                    for r in T.unroll(rows):
                        for j in T.unroll(n):
                            for t in T.vectorized(mt):
                                acc[r, t] = (
                                    acc[r, t]
                                    + XT[
                                        g * weight.m + T.Cast("int32", columns[block, g, r, j]), tile * mt + t
                                    ]
                                    * data[block, g, r, j]
                                )
                for r in T.serial(rows):
                    for t in T.serial(mt):
                        if tile * mt + t < m:
                            Y[tile * mt + t, block * rows + r] = acc[r, t]

    return kernel


def make_nm_kernel(
    weight: NmWeight, bias: np.ndarray | None, m: int, lanes: int, label: str, tiles: dict | None = None
) -> Kernel:
    out, _ = weight.shape
    tiles = {"R": next(r for r in ROWS if out % r == 0), "MT": 8 * lanes, **(tiles or {})}
    tiles["MT"] = min(tiles["MT"], -(-m // lanes) * lanes)
    values, columns = pack(weight, tiles["R"])
    constants = [values, columns, np.zeros(out, np.float32) if bias is None else bias.astype(np.float32)]
    return Kernel(
        label, nm_linear(m, weight, tiles["R"], tiles["MT"]), constants, tiles, 2 * m * weight.values.size
    )
