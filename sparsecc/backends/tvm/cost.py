"""The TVM backend's cost model: what a sparse format buys on one target, from its kernel rules.

Estimated speedup over dense = the rule's efficiency / the format's stored density, where
the efficiency is the kernel's useful FLOP rate against the dense kernel at the same tokens
(each rule holds its calibrated figure, with where it was measured). A format no rule takes
on the target does not pay: it would run dense. A tuned build (`tune=N`) measures instead
and keeps whichever kernel is faster.
"""

from __future__ import annotations

import numpy as np

from sparsecc.backends.tvm.kernels import rules
from sparsecc.backends.tvm.target import TargetInfo
from sparsecc.ops import SparseFormat
from sparsecc.ops.base import Storage
from sparsecc.passes.cost import Estimate

# Convert only when the estimate beats dense by this margin: estimates are rough.
MIN_SPEEDUP = 1.1


class TvmCostModel:
    """Prices formats by the kernel rule chain of one target."""

    def __init__(self, target: TargetInfo):
        self.target = target
        cpu = target.target_dict.get("mcpu") or target.family
        self.name = f"tvm cost model for {target.name}, {cpu}"

    def estimate(self, fmt: SparseFormat, w: np.ndarray, m: int | None) -> Estimate:
        storage = fmt.storage(w)
        dense_bytes = w.size * 4
        shape = tuple(w.shape)
        chosen = rules.plan(fmt, shape, m, self.target)
        if chosen.fmt is None:
            return Estimate(fmt, storage, dense_bytes, 1.0, False, f"{fmt.label}: {chosen.reason}", None)
        dense = rules.plan(None, shape, m, self.target)
        efficiency = chosen.rule.efficiency(fmt, shape, m, self.target) / dense.rule.efficiency(
            None, shape, m, self.target
        )
        speedup = efficiency / storage.density if storage.density > 0 else float("inf")
        kernel_bytes = chosen.rule.stored_bytes(fmt, w)  # what the kernel streams, where it packs its own
        if kernel_bytes is not None:
            storage = Storage(storage.density, kernel_bytes)
        bytes_ratio = storage.nbytes / dense_bytes
        kernel = chosen.rule.label(fmt, shape, self.target)
        if speedup < MIN_SPEEDUP:
            reason = (
                f"{fmt.label} at density {storage.density:.2f} is estimated at {speedup:.2f}x dense "
                f"(needs >= {MIN_SPEEDUP}x)"
            )
        elif bytes_ratio >= 1.0:
            reason = f"{fmt.label} would take {bytes_ratio:.2f}x the dense bytes"
        else:
            reason = f"estimated {speedup:.1f}x dense with {kernel}, {bytes_ratio:.0%} of the dense bytes"
        pays = speedup >= MIN_SPEEDUP and bytes_ratio < 1.0
        return Estimate(fmt, storage, dense_bytes, speedup, pays, reason, kernel)
