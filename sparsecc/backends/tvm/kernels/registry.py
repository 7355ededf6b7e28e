"""Pick and build the kernel for one linear layer: format x target family.

Rules, tried in order (one line each, like a dlight rule chain):
  NmWeight         -> nm.py: x86 lane-permute kernel (one vpermps + FMA per slot); CUDA: nm.py;
                      elsewhere the dense kernel (nm.py's token-vectorised kernel measured slower)
  CsrWeight        -> CPU: blocked_cpu.py with 1x1 blocks (one token: the dense GEMV, faster there) (0.74 vs 1.02 ms for csr.py's kernel at
                      3072x768@90%, M=128, and MetaSchedule can tune it); CUDA: csr.py
  BsrWeight        -> blocked_cpu.py / blocked_cuda.py with the weight's own blocks
  dense W          -> CPU, M <= 4 tokens: gemv_cpu.py (vectorised over the input features);
                      otherwise the blocked kernel with every block present (R | out rows per block)
"""

from __future__ import annotations

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel
from sparsecc.backends.tvm.target import TargetInfo
from sparsecc.ops.formats import BsrWeight, CsrWeight, NmWeight

DENSE_ROWS = (8, 6, 4, 2, 1)  # rows per dense block, first that divides out_features


def dense_as_blocks(w: np.ndarray) -> BsrWeight:
    out, inp = w.shape
    rows = next(r for r in DENSE_ROWS if out % r == 0)
    n_block_rows = out // rows
    values = np.ascontiguousarray(w.reshape(n_block_rows, rows, inp).transpose(0, 2, 1).reshape(-1, rows, 1))
    col = np.tile(np.arange(inp, dtype=np.int32), n_block_rows)
    row_ptr = (np.arange(n_block_rows + 1, dtype=np.int64) * inp).astype(np.int32)
    return BsrWeight(values, col, row_ptr, (out, inp), (rows, 1))


def csr_as_blocks(weight: CsrWeight) -> BsrWeight:
    return BsrWeight(
        weight.values.reshape(-1, 1, 1), weight.col_indices, weight.row_ptr, weight.shape, (1, 1)
    )


def as_blocks(weight) -> tuple[BsrWeight, str]:
    """The block-sparse-row operands of any weight, and the kernel's family name."""
    if isinstance(weight, np.ndarray):
        blocks = dense_as_blocks(np.asarray(weight, np.float32))
        return blocks, f"dense_{blocks.block[0]}rows"
    if isinstance(weight, BsrWeight):
        return weight, f"bsr_{weight.block[0]}x{weight.block[1]}"
    if isinstance(weight, CsrWeight):
        return csr_as_blocks(weight), "csr"
    if isinstance(weight, NmWeight):
        return csr_as_blocks(CsrWeight.from_dense(weight.to_dense())), f"nm_{weight.n}_{weight.m}"
    raise TypeError(f"no kernel for weight of type {type(weight).__name__}")


def make_kernel(
    weight, bias: np.ndarray | None, m: int, target: TargetInfo, tiles: dict | None = None
) -> Kernel:
    """The scheduled PrimFunc computing Y[m, out] = X[m, in] @ W.T (+ bias) for `target`."""
    if isinstance(weight, NmWeight):
        from sparsecc.backends.tvm.kernels.nm import make_nm_kernel, permute_window

        if target.family == "cuda" or permute_window(weight, target):
            return make_nm_kernel(weight, bias, m, target, tiles)
        # Without the lane permute, the N:M kernel is never faster than dense here (2:4, x86:
        # 0.153 vs 0.089 ms at M=1, 3.26 vs 3.08 ms at M=128 for 3072x768), so the layer runs dense.
        weight = weight.to_dense()
    if isinstance(weight, CsrWeight) and target.family == "cuda":
        from sparsecc.backends.tvm.kernels.csr import make_csr_kernel

        return make_csr_kernel(weight, bias, m, target, tiles)
    if target.family != "cuda":
        from sparsecc.backends.tvm.kernels.gemv_cpu import fits, make_gemv_kernel

        # One token and 1-row blocks (CSR, 1xC): the token-vectorised kernel wastes 15 of 16 lanes
        # and measured 0.5-0.9x the dense GEMV at 90% sparsity (one thread), so the layer runs dense.
        one_row_blocks = isinstance(weight, CsrWeight) or (
            isinstance(weight, BsrWeight) and weight.block[0] == 1
        )
        if m == 1 and one_row_blocks and fits(m, weight.shape[1], target.lanes):
            weight = weight.to_dense()
        if isinstance(weight, np.ndarray) and fits(m, weight.shape[1], target.lanes):
            return make_gemv_kernel(weight, bias, m, target.lanes, f"dense_gemv_{target.family}")
    blocks, family = as_blocks(weight)
    if target.family == "cuda":
        from sparsecc.backends.tvm.kernels.blocked_cuda import make_cuda_kernel

        return make_cuda_kernel(blocks, bias, m, f"{family}_cuda")
    from sparsecc.backends.tvm.kernels.blocked_cpu import make_blocked_kernel

    return make_blocked_kernel(blocks, bias, m, target.lanes, f"{family}_{target.family}", tiles)
