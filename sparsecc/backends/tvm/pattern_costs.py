"""Measured relative costs of the head modes, for search-heads' `costs: measured`.

The search prices a mode by L = E + lambda * c. By FLOPs, c is the mask's density, but a mode's
kernel does not realise its FLOP cut exactly: segments are padded to register tiles, short
segments pay the online softmax's per-step work, the key gather reorders memory. Here each mode's
PatternAttention kernel (`kernels/pattern_attention_cpu.py`) and the dense attention kernel
(`kernels/attention_cpu.py`) are built for the layer's layout and head sizes and timed on this
host, interleaved in rounds: c_mode = the median over rounds of t_mode / t_full. Kernels only
(as `bench/bench_attention_patterns.py`): the K transpose and key gather before them are not
timed. `full` is 1 and `skip`, which runs nothing, 0. Each (layout, pattern, head sizes, target)
is measured once per process.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from sparsecc.backends.tvm.kernels import attention_cpu
from sparsecc.backends.tvm.kernels.pattern_attention_cpu import (
    PatternShape,
    padded_key_columns,
    pattern_attention_kernel,
    pattern_tiles,
    plan_keys,
)
from sparsecc.backends.tvm.target import TargetInfo
from sparsecc.errors import PipelineError
from sparsecc.sparsity.attention_patterns import HeadPattern, TokenLayout

logger = logging.getLogger(__name__)

HEADS = 2  # heads per timed call: the kernels run (batch, head, query tile) tasks, so the ratio
# does not depend on the head count; two keep both of a 2-core host's threads busy on small layouts
MIN_REPEAT_MS = 20  # each timed sample runs the kernel for at least this long

_measured: dict[tuple, float] = {}  # (layout, pattern, head_dim, value_dim, target) -> t / t_full


def measured_costs(
    patterns: dict[str, HeadPattern],
    layout: TokenLayout,
    target: TargetInfo,
    head_dim: int,
    value_dim: int | None = None,
    rounds: int = 3,
) -> dict[str, float]:
    """mode -> its kernel's time relative to dense attention ("full": 1, "skip": 0), for `patterns`
    (one per mode, as search-heads prices them) on `layout` with heads of `head_dim`/`value_dim`."""
    value_dim = value_dim or head_dim
    if target.family not in ("x86", "aarch64") or not target.runs_here:
        raise PipelineError(
            f"measured attention costs time kernels on this host; target {target.name!r} does not run here "
            "(use costs: flops, or the tvm backend with target cpu)"
        )
    if value_dim % target.lanes:
        raise PipelineError(
            f"measured attention costs: value columns ({value_dim}) are not whole vectors of "
            f"{target.lanes}, so no PatternAttention kernel runs (use costs: flops)"
        )
    target_key = json.dumps(target.target_dict, sort_keys=True)

    def key(pattern: HeadPattern) -> tuple:
        return (layout, pattern, head_dim, value_dim, target_key)

    missing = {
        mode: p for mode, p in patterns.items() if p.mode not in ("full", "skip") and key(p) not in _measured
    }
    if missing:
        for mode, ratio in _time_against_dense(missing, layout, target, head_dim, value_dim, rounds).items():
            _measured[key(missing[mode])] = ratio
    costs = {"full": 1.0, "skip": 0.0}
    for mode, pattern in patterns.items():
        if pattern.mode not in ("full", "skip"):
            costs[mode] = _measured[key(pattern)]
    logger.info("measured attention costs on %s: %s", target.name, {m: round(c, 3) for m, c in costs.items()})
    return costs


def _time_against_dense(
    patterns: dict[str, HeadPattern], layout: TokenLayout, target: TargetInfo, d: int, dv: int, rounds: int
) -> dict[str, float]:
    import tvm

    n = layout.tokens
    scale = 1.0 / float(np.sqrt(d))
    rng = np.random.default_rng(0)
    q, k = (rng.standard_normal((1, HEADS, n, d)).astype(np.float32) for _ in range(2))
    v = rng.standard_normal((1, HEADS, n, dv)).astype(np.float32)
    shape = PatternShape(1, HEADS, n, d, dv, scale)
    timers = {"full": _dense_timer(shape.dense(), target)}
    tiles = pattern_tiles(shape, target.lanes, target.vector_registers)
    for mode, pattern in patterns.items():
        plan = plan_keys(pattern, layout, tiles["TQ"], tiles["TK"], tiles["KR"])
        kt = np.zeros((1, HEADS, d, padded_key_columns(n, tiles)), np.float32)
        kt[..., :n] = k[:, :, plan.key_order].transpose(0, 1, 3, 2)
        operands = [
            q,
            kt,
            v[:, :, plan.key_order],
            *plan.constants(),
            np.zeros((1, HEADS, n, dv), np.float32),
        ]
        kernel = pattern_attention_kernel(shape, plan, target.lanes, tiles)
        timers[mode] = _timer(tvm.compile(kernel, target=target.target), operands)
    ratios: dict[str, list[float]] = {mode: [] for mode in patterns}
    for _ in range(rounds):  # interleaved: the host's noise hits every kernel alike
        times = {mode: timer() for mode, timer in timers.items()}
        for mode in patterns:
            ratios[mode].append(times[mode] / times["full"])
    return {mode: float(np.median(values)) for mode, values in ratios.items()}


def _dense_timer(shape: attention_cpu.AttentionShape, target: TargetInfo):
    import tvm

    tiles = attention_cpu.default_tiles(shape, target.lanes, target.vector_registers)
    kernel = attention_cpu.attention_kernel(shape, target.lanes, tiles)
    # random operands in the kernel's own layout (how it takes K, padded), as its tuner times it
    return _timer(tvm.compile(kernel, target=target.target), attention_cpu.random_operands(shape, tiles))


def _timer(executable, operands):
    """A function that times one sample of the kernel (seconds, median of 3 repeats)."""
    import tvm

    device = tvm.cpu()
    tensors = [tvm.runtime.tensor(np.ascontiguousarray(a), device) for a in operands]
    module = executable.jit()
    module["main"](*tensors)  # warm-up: first touch of the operands, the thread pool
    evaluate = module.time_evaluator("main", device, number=1, repeat=3, min_repeat_ms=MIN_REPEAT_MS)
    return lambda: float(np.median(evaluate(*tensors).results))
