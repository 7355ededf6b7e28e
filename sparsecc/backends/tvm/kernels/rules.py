"""Which kernel runs a linear layer: a chain of rules, tried in order, like dlight's.

Each rule serves some formats (None: dense W) on some targets; the first that does not
decline takes the layer. A sparse format no rule takes runs dense, and the reasons the
rules gave say why. The backend's cost model (`cost.py`) asks the same chain, so what the
passes estimate, what the lowering builds and what the report says are one decision.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparsecc.backends.tvm.kernels import Kernel, KernelRule
from sparsecc.backends.tvm.kernels.blocked_cpu import BlockedCpu
from sparsecc.backends.tvm.kernels.blocked_cuda import BlockedCuda
from sparsecc.backends.tvm.kernels.csr import CsrCuda
from sparsecc.backends.tvm.kernels.csr_bitmap_gemv_cpu import CsrBitmapGemvAvx512
from sparsecc.backends.tvm.kernels.csr_gemv_cpu import CsrGemvCpu
from sparsecc.backends.tvm.kernels.dense_bf16_cpu import DenseBf16Cpu
from sparsecc.backends.tvm.kernels.gemv_cpu import GemvCpu
from sparsecc.backends.tvm.kernels.nm import NmCuda, NmPermuteX86
from sparsecc.backends.tvm.kernels.nm_gemv_cpu import NmGemvX86
from sparsecc.backends.tvm.kernels.tiled_cpu import TiledCpu
from sparsecc.ops.precision import round_weight

RULES: tuple[KernelRule, ...] = (
    NmGemvX86(),  # N:4 on x86, 1-4 tokens: 2-bit positions shifted into vpermilps
    CsrBitmapGemvAvx512(),  # CSR with AVX-512, 1-4 tokens: a bitmap per 16 inputs, expand-loads
    CsrGemvCpu(),  # CSR on x86, 1-4 tokens: uint16 columns, vector gathers
    NmPermuteX86(),  # N:M on x86: lane permute, no X transpose
    NmCuda(),  # N:M on CUDA
    CsrCuda(),  # CSR on CUDA
    BlockedCuda(),  # BSR and dense on CUDA
    GemvCpu(),  # dense, 1-4 tokens: vectorised over the inputs
    DenseBf16Cpu(),  # dense: GEMM micro-kernel over packed weight panels (float32 or bf16 weights)
    TiledCpu(),  # CSR and 1xC blocks, any blocks once X^T outgrows L2: cache-tiled
    BlockedCpu(),  # BSR, CSR (1x1 blocks) and dense (full blocks): vectorised over tokens
)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The rule that takes a layer, the format its kernel computes with, and why."""

    rule: KernelRule
    fmt: object  # the SparseFormat the kernel runs, None: dense
    reason: str

    @property
    def runs(self) -> str:
        return "dense" if self.fmt is None else self.fmt.label


def plan(fmt, shape: tuple[int, int], m: int | None, target) -> Plan:
    """The first rule taking `fmt` (None: dense) for W of `shape` with `m` tokens on `target`."""
    declined = []
    for rule in RULES:
        if not rule.serves(fmt):
            continue
        why = rule.declines(fmt, shape, m, target)
        if why is None:
            before = f"; {'; '.join(declined)}" if declined else ""
            return Plan(rule, fmt, f"{rule.summary}{before}")
        declined.append(f"{rule.name}: {why}")
    if fmt is None:
        raise AssertionError(f"no kernel rule takes a dense {shape} layer on {target.name}: {declined}")
    dense = plan(None, shape, m, target)
    return Plan(dense.rule, None, f"no {fmt.label} kernel here ({'; '.join(declined)}), so it runs dense")


def make_kernel(
    weight, bias: np.ndarray | None, m: int, target, tiles: dict | None = None, dtype: str = "float32"
) -> Kernel:
    """The scheduled kernel computing Y[m, out] = X[m, in] @ W.T (+ bias) for `target`.

    `weight` is a SparseWeight or a dense W[out, in]; the kernel says which format it runs and why.
    `dtype` is the weights' precision (`ops/precision.py`): its values are rounded to it, and a
    rule without a kernel for it computes the rounded values in float32 (the reason says so).
    """
    fmt = None if isinstance(weight, np.ndarray) else weight.format
    weight = round_weight(weight, dtype)
    chosen = plan(fmt, tuple(weight.shape), m, target)
    if chosen.fmt is None and fmt is not None:
        weight = weight.to_dense()
    reason = chosen.reason
    if dtype in chosen.rule.dtypes:
        kernel = chosen.rule.build(weight, bias, m, target, tiles, dtype=dtype)
        reason += f"; {dtype} weights"
    else:
        kernel = chosen.rule.build(weight, bias, m, target, tiles)
        if dtype != "float32":
            reason += f"; weights rounded to {dtype}, stored and computed as float32 (no {dtype} kernel here)"
    return dataclasses.replace(kernel, m=m, runs=chosen.runs, reason=reason)


def tile_space(weight, m: int, target) -> list[dict]:
    """The grid-search candidates of the kernel that would run this weight."""
    fmt = None if isinstance(weight, np.ndarray) else weight.format
    chosen = plan(fmt, tuple(weight.shape), m, target)
    return chosen.rule.tile_space(weight if chosen.fmt is fmt else weight.to_dense(), m, target)
