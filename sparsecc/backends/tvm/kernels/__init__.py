"""TIR kernels for linear layers: one module per kernel family, each with the rule that picks it.

Contract shared by every kernel module and the Relax lowering: a rule's
`build(weight, bias, m, target, tiles=None) -> Kernel` makes a PrimFunc that computes
`Y[m, out] = X[m, in] @ W.T (+ bias)` for one weight known at compile time; the lowering
flattens leading dimensions of X into `m` and calls it with
`call_tir(kernel.prim_func, [x, *kernel.constants], out=[m, out])`.
Which rule takes a layer, and why the others declined, is `rules.py`.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np


@dataclasses.dataclass
class Kernel:
    """One generated kernel: PrimFunc `(X, *constants, Y)` plus what the report shows."""

    name: str  # unique label of the kernel family and its parameters, e.g. "bsr_16x1_x86"
    prim_func: Any  # tvm.tirx.PrimFunc, scheduled for the target
    constants: list[np.ndarray]  # passed after X, in PrimFunc parameter order
    tiles: dict[str, int]  # the tile sizes used (the tunables)
    flops: int = 0  # useful multiply-adds x 2, for reports
    m: int = 0  # rows of X it was built for (set by rules.py)
    runs: str = ""  # the format this kernel computes with: "BSR 16x1", "dense", ... (set by rules.py)
    reason: str = ""  # why this kernel runs the layer (set by rules.py and the tuner)
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


# A parallel loop costs ~2.5 us to start (measured 2026-12-02, AVX2 EPYC, 2 threads,
# /tmp/exp/par.py: an element-wise pass over 16K floats took 2.1 us on one thread and 3.5 us in
# parallel, 64K floats 8.6 against 6.3 us). Work below this many innermost iterations
# (multiply-adds, elements) runs on one thread: small models' kernels are mostly launch cost.
PARALLEL_MIN_ITERATIONS = 32 * 1024


def runs_parallel(iterations: int) -> bool:
    return iterations >= PARALLEL_MIN_ITERATIONS


def loop_kind(iterations: int):
    """TVMScript's loop for a kernel's outer loop: `T.parallel` for enough work, else `T.serial`."""
    from tvm.script import tirx as T

    return T.parallel if runs_parallel(iterations) else T.serial


class KernelRule(abc.ABC):
    """Takes the layers of some formats on some targets, like a dlight schedule rule.

    `declines` answers from the format, shape, tokens and target alone (no TIR is built), so
    the backend's cost model asks the same rules the lowering uses.
    """

    name: str  # the rule's name in reasons
    formats: tuple  # SparseFormat classes it can take; None in the tuple: dense weights
    summary: str  # one phrase: what the kernel does (the report's reason when the rule takes a layer)
    # Weight dtypes besides float32 whose values `build(..., dtype=)` stores natively; for others,
    # `rules.make_kernel` builds the float32 kernel on the rounded weights (`ops/precision.py`).
    dtypes: tuple[str, ...] = ()

    def serves(self, fmt) -> bool:
        return (None in self.formats) if fmt is None else isinstance(fmt, tuple(f for f in self.formats if f))

    @abc.abstractmethod
    def declines(self, fmt, shape: tuple[int, int], m: int | None, target) -> str | None:
        """Why this rule does not take the layer (None: it does). `fmt` None means a dense W."""

    @abc.abstractmethod
    def efficiency(self, fmt, shape: tuple[int, int], m: int | None, target) -> float:
        """Useful FLOP rate relative to the dense kernel at the same tokens (calibrated; see each rule)."""

    @abc.abstractmethod
    def label(self, fmt, shape: tuple[int, int], target) -> str:
        """The unique name of the kernel this rule builds."""

    @abc.abstractmethod
    def build(self, weight, bias: np.ndarray | None, m: int, target, tiles: dict | None = None) -> Kernel:
        """The scheduled kernel; `weight` is a SparseWeight of a served format or a dense W[out, in].

        A rule listing `dtypes` also takes `dtype=` (one of them): `weight` then holds values of
        that dtype (as float32) and the kernel stores them in it; accumulation stays float32.
        """

    def stored_bytes(self, fmt, w: np.ndarray) -> int | None:
        """Bytes the kernel's own packing of `w` holds, where it differs from the op's storage (a
        bandwidth-bound decode kernel pays in these); None: the op's storage."""
        return None

    def tile_space(self, weight, m: int, target) -> list[dict]:
        """Tile candidates for a measured grid search, the default first ([]: none, or MetaSchedule)."""
        return []
