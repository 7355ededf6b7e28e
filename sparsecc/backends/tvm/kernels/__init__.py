"""TIR kernels for linear layers, one module per format.

Contract shared by every kernel module and the Relax lowering:
`make_kernel(weight, bias, m, target, tiles=None) -> Kernel` builds a PrimFunc that
computes `Y[m, out] = X[m, in] @ W.T (+ bias)` for one weight known at compile time.
The lowering flattens leading dimensions of X into `m` and calls the PrimFunc with
`call_tir(kernel.prim_func, [x, *kernel.constants], out=[m, out])`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np


@dataclasses.dataclass
class Kernel:
    """One generated kernel: PrimFunc `(X, *constants, Y)` plus what the report shows."""

    name: str  # e.g. "bsr_16x1_x86", shown in reports
    prim_func: Any  # tvm.tirx.PrimFunc, scheduled for the target
    constants: list[np.ndarray]  # passed after X, in PrimFunc parameter order
    tiles: dict[str, int]  # the tile sizes used (the tunables)
    flops: int = 0  # useful multiply-adds x 2, for the cost model and reports
    # MetaSchedule hooks, for kernels written as schedulable TIR (None: tuned by tile grid search)
    base_func: Any = None  # the unscheduled PrimFunc MetaSchedule starts from
    design_space: Callable | None = None  # Schedule -> None, samples the tunables
    tiles_of_trace: Callable | None = None  # tuned trace -> the tiles it chose, for reports
    space_size: int = 0  # distinct schedules in the design space: more trials would find nothing new

    def with_schedule(self, prim_func, tiles: dict[str, int]) -> Kernel:
        """The same kernel with another (tuned) schedule."""
        return dataclasses.replace(
            self, prim_func=prim_func.with_attr("tirx.is_scheduled", True), tiles=tiles
        )
