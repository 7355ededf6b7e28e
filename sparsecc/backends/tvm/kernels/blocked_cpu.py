"""The CPU linear kernel: block-sparse rows, vectorised over the tokens (M).

One micro-kernel serves every format: a block of R outputs x C inputs updates an
accumulator tile `acc[R, MT]` with `acc[r, :] += XT[col, m-tile] * value` (a vector
load shared by R broadcast-FMAs). BSR uses its blocks; CSR and N:M are BSR with 1x1
blocks; a dense weight is BSR with every block present. Because the weight is a
compile-time constant, nnzb is static and values are pre-packed as [nnzb, C, R].

X is transposed (and zero-padded to a multiple of MT) once per call, so tails need
no masks; the accumulator is a small stack buffer that LLVM keeps in registers
(tvm-0.27.md section 2: "global" scope under 1 KiB becomes an alloca).
"""

from __future__ import annotations

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel
from sparsecc.ops.formats import BsrWeight

# Accumulator registers a tile may use, by float32 lanes per register (AVX-512 / NEON have 32, AVX2 16).
ACC_REGISTERS = {16: 16, 8: 8, 4: 16}


def transpose_tile(inp: int, m_padded: int) -> int:
    """The largest of 16/8/4/2/1 dividing both sides of X^T (tiled transposes run ~4-10x faster)."""
    return next(t for t in (16, 8, 4, 2, 1) if inp % t == 0 and m_padded % t == 0)


def default_tiles(block: tuple[int, int], lanes: int) -> dict[str, int]:
    """MT: tokens per tile, a multiple of the vector width, sized to the register budget."""
    budget = ACC_REGISTERS.get(lanes, 8)
    per_row = max(1, min(4, budget // max(block[0], 1)))
    return {"MT": lanes * per_row}


def packed_values(weight: BsrWeight) -> np.ndarray:
    """[nnzb, R, C] -> [nnzb, C, R]: the R values one input column meets are contiguous."""
    return np.ascontiguousarray(weight.values.transpose(0, 2, 1), dtype=np.float32)


def blocked_linear(m: int, weight: BsrWeight, mt: int, name: str = "main"):
    """PrimFunc (X[m, in], values[nnzb, C, R], col[nnzb], row_ptr[out/R+1], bias[out], Y[m, out])."""
    from tvm.script import tirx as T

    out, inp = weight.shape
    r_size, c_size = weight.block
    nnzb, n_block_rows = max(weight.nnz_blocks, 1), out // r_size
    m_padded = -(-m // mt) * mt
    tb = transpose_tile(inp, m_padded)

    @T.prim_func
    def kernel(
        X: T.Buffer((m, inp), "float32"),
        data: T.Buffer((nnzb, c_size, r_size), "float32"),
        indices: T.Buffer((nnzb,), "int32"),
        indptr: T.Buffer((n_block_rows + 1,), "int32"),
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
        for row in T.parallel(n_block_rows):
            for tile in T.serial(m_padded // mt):
                acc = T.alloc_buffer((r_size, mt), "float32")
                for r in T.unroll(r_size):
                    for t in T.vectorized(mt):
                        acc[r, t] = bias[row * r_size + r]
                for e in T.serial(indptr[row + 1] - indptr[row]):
                    for c in T.unroll(c_size):
                        for r in T.unroll(r_size):
                            for t in T.vectorized(mt):
                                acc[r, t] = (
                                    acc[r, t]
                                    + XT[indices[indptr[row] + e] * c_size + c, tile * mt + t]
                                    * data[indptr[row] + e, c, r]
                                )
                for r in T.serial(r_size):
                    for t in T.serial(mt):
                        if tile * mt + t < m:
                            Y[tile * mt + t, row * r_size + r] = acc[r, t]

    return kernel


def make_blocked_kernel(
    weight: BsrWeight, bias: np.ndarray | None, m: int, lanes: int, label: str, tiles: dict | None = None
) -> Kernel:
    tiles = {**default_tiles(weight.block, lanes), **(tiles or {})}
    tiles["MT"] = min(tiles["MT"], -(-m // lanes) * lanes)  # few tokens: do not pad M to a wide tile
    flops = 2 * m * weight.values.size
    return Kernel(label, blocked_linear(m, weight, tiles["MT"]), operands(weight, bias), tiles, flops)


def operands(weight: BsrWeight, bias: np.ndarray | None) -> list[np.ndarray]:
    """The kernel's constants: packed values, block columns, row_ptr, bias (zeros when absent)."""
    values, indices = packed_values(weight), weight.col_indices
    if weight.nnz_blocks == 0:  # a buffer cannot be empty: one unused zero block
        values, indices = np.zeros((1, weight.block[1], weight.block[0]), np.float32), np.zeros(1, np.int32)
    bias = np.zeros(weight.shape[0], np.float32) if bias is None else bias.astype(np.float32)
    return [values, indices.astype(np.int32), weight.row_ptr.astype(np.int32), bias]
