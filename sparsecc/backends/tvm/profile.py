"""Where a compiled model's time goes: each VM call timed by an instrument, grouped by function.

The Relax VM calls every kernel through one instruction; an instrument sees each call before
and after it runs, so wall time per call is the gap between the two (CPU kernels run to
completion before the call returns). Python's callback adds a few microseconds per call.
"""

from __future__ import annotations

import dataclasses
import re
import time

import numpy as np

# Names the VM itself calls between kernels (allocation, shape bookkeeping): not model time.
_VM_BUILTINS = re.compile(r"^(vm\.builtin\.|relax\.|runtime\.)")


@dataclasses.dataclass
class FunctionTime:
    group: str  # the function name without its numeric suffix: "fused_matmul_add", "bsr_16x1_x86_..."
    calls: int
    total_ms: float

    @property
    def per_call_ms(self) -> float:
        return self.total_ms / self.calls if self.calls else 0.0


def group_of(symbol: str) -> str:
    """`fused_matmul_add3` -> `fused_matmul_add`; a linear kernel keeps only its kernel label."""
    name = re.sub(r"\d+$", "", symbol)
    match = re.match(
        r"^((?:conv_)?(?:bsr|csr|nm|dense|depthwise)(?:_[a-z0-9]+)*?_(?:x86|aarch64|cuda))_", name + "_"
    )
    return match.group(1) if match else name.rstrip("_")


def profile_vm(vm, device, tensors: list, runs: int = 5) -> list[FunctionTime]:
    """Median over `runs` of each function group's time per model call, slowest first."""
    import tvm

    samples: list[dict[str, list[float]]] = []
    current: dict[str, list[float]] = {}
    started = [0.0]  # the VM calls one function at a time: before, then after

    def instrument(func, symbol, before, ret, *args):
        if _VM_BUILTINS.match(symbol):
            return 0
        if before:
            started[0] = time.perf_counter()
        else:
            current.setdefault(group_of(symbol), []).append((time.perf_counter() - started[0]) * 1000.0)
        return 0

    vm.set_instrument(tvm.runtime.convert(instrument))
    try:
        vm["main"](*tensors)  # warm-up: first-touch of weights and thread-pool start
        current.clear()
        for _ in range(runs):
            vm["main"](*tensors)
            samples.append(current)
            current = {}
    finally:
        vm.set_instrument(None)
    groups = {name for sample in samples for name in sample}
    times = []
    for name in groups:
        totals = [sum(sample.get(name, [])) for sample in samples]
        calls = len(samples[0].get(name, []))
        times.append(FunctionTime(name, calls, float(np.median(totals))))
    return sorted(times, key=lambda t: -t.total_ms)
