"""What a pass asks a backend's cost model, and what it gets back.

Passes decide "dense or sparse?" per layer, but only a backend knows its kernels and its
target, so the compile context carries the backend's `CostModel`. An `Estimate` names the
format it priced (a typed `SparseFormat`, never a string) and says in one phrase why that
format pays or does not.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from sparsecc.ops import SparseFormat, Storage


@dataclasses.dataclass(frozen=True)
class Estimate:
    """One format priced for one layer on one target."""

    format: SparseFormat
    storage: Storage
    dense_bytes: int
    speedup: float  # the backend's dense kernel time / this format's kernel time (estimated)
    pays: bool
    reason: str  # why it pays, or why not
    kernel: str | None = None  # the kernel that would run it; None when no kernel takes the format

    @property
    def bytes_ratio(self) -> float:
        return self.storage.nbytes / self.dense_bytes if self.dense_bytes else 1.0

    @property
    def label(self) -> str:
        return self.format.label


class CostModel(Protocol):
    """A backend's estimate of what a format buys on its target."""

    name: str  # e.g. "tvm x86 (sapphirerapids)", shown in reports

    def estimate(self, fmt: SparseFormat, w: np.ndarray, m: int | None) -> Estimate:
        """Price `fmt` for W[out, in] with `m` rows of X per call (None: not known)."""
        ...
