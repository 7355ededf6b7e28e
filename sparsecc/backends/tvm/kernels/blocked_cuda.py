"""The CUDA linear kernel: one thread per output element, walking its block row.

Correct for every format (same block-sparse-row operands as the CPU kernel) and
simple on purpose: it builds to PTX here without a GPU; fast GPU schedules
(2:4 on sparse tensor cores via mma.sp) are future work.
"""

from __future__ import annotations

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel, KernelRule
from sparsecc.backends.tvm.kernels.blocked_cpu import BlockedCpu
from sparsecc.backends.tvm.kernels.blocks import as_blocks, family_label, operands
from sparsecc.ops import BsrFormat, BsrWeight

THREADS = 256


def blocked_linear_cuda(m: int, weight: BsrWeight, name: str = "main"):
    from tvm.script import tirx as T

    out, inp = weight.shape
    r_size, c_size = weight.block
    nnzb, n_block_rows = max(weight.nnz_blocks, 1), out // r_size
    total = m * out
    n_blocks = -(-total // THREADS)

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
        for bx in T.thread_binding(n_blocks, thread="blockIdx.x"):
            for tx in T.thread_binding(THREADS, thread="threadIdx.x"):
                acc = T.alloc_buffer((1,), "float32", scope="local")
                if bx * THREADS + tx < total:
                    acc[0] = bias[(bx * THREADS + tx) % out]
                    for e in T.serial(
                        indptr[(bx * THREADS + tx) % out // r_size + 1]
                        - indptr[(bx * THREADS + tx) % out // r_size]
                    ):
                        for c in T.serial(c_size):
                            acc[0] = (
                                acc[0]
                                + X[
                                    (bx * THREADS + tx) // out,
                                    indices[indptr[(bx * THREADS + tx) % out // r_size] + e] * c_size + c,
                                ]
                                * data[
                                    indptr[(bx * THREADS + tx) % out // r_size] + e,
                                    c,
                                    (bx * THREADS + tx) % out % r_size,
                                ]
                            )
                    Y[(bx * THREADS + tx) // out, (bx * THREADS + tx) % out] = acc[0]

    return kernel


def make_cuda_kernel(weight: BsrWeight, bias: np.ndarray | None, m: int, label: str) -> Kernel:
    flops = 2 * m * weight.values.size
    return Kernel(label, blocked_linear_cuda(m, weight), operands(weight, bias), {"threads": THREADS}, flops)


class BlockedCuda(KernelRule):
    """BSR with its own blocks and dense W as full blocks, on CUDA."""

    name = "blocked_cuda"
    formats = (BsrFormat, None)
    summary = "one thread per output walking its block row (not yet run on a GPU)"

    def declines(self, fmt, shape, m, target) -> str | None:
        return None if target.family == "cuda" else "runs on CUDA only"

    def efficiency(self, fmt, shape, m, target) -> float:
        return BlockedCpu().efficiency(fmt, shape, None, target)  # not measured on a GPU

    def label(self, fmt, shape, target) -> str:
        return f"{family_label(fmt, shape[0])}_cuda"

    def build(self, weight, bias, m, target, tiles=None) -> Kernel:
        fmt = None if isinstance(weight, np.ndarray) else weight.format
        return make_cuda_kernel(as_blocks(weight), bias, m, self.label(fmt, weight.shape, target))
