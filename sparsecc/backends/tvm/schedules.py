"""Default CPU schedules for the parts of a model that are not linear layers.

TVM's legalized Relax ops come as unscheduled loop nests (one thread, scalar), and
dlight's CPU rules cover only GEMV and softmax/norm-like reductions. Two rules of
ours, in dlight's shape (`apply` returns a Schedule, or None when it does not apply):
  BatchMatmul  attention's Q K^T and P V: a 4-row x 2-vector accumulator tile in registers,
               the reduction outside it (12 heads, 128x64 @ 64x128: 0.28 -> 0.11 ms); shapes
               the tile does not divide: the last axis vectorised, leading axes parallel
  RowReduction softmax / layer norm: each last-axis reduction split by rfactor into 16
               vectorised partial sums, rows parallel (dlight's cpu.Reduction leaves the
               reductions scalar: layer norm 128x768 0.103 -> 0.012 ms, softmax 12x128x128
               0.137 -> 0.064 ms)
  Injective    element-wise / layout ops: outer axes fused and parallel, inner vectorised
Our linear kernels are hand-scheduled TIR marked `tirx.is_scheduled`, so no rule touches them.
Every rule leaves a function with less than `kernels.PARALLEL_MIN_ITERATIONS` of work on one
thread: starting a parallel loop costs more than such a function takes.

A rule returns None when it does not apply. An exception inside a rule is a bug: it is
logged with the rule's name and the function, and it fails the build under `--debug` and
in the tests (SPARSECC_DEBUG=1); otherwise the next rule gets the function.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from tvm import s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import get_extent
from tvm.s_tir.dlight.base.common_schedules import try_inline
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule

from sparsecc.backends.tvm.kernels import PARALLEL_MIN_ITERATIONS, runs_parallel
from sparsecc.backends.tvm.target import TargetInfo
from sparsecc.errors import ScheduleRuleError

logger = logging.getLogger(__name__)
DEBUG_ENV = "SPARSECC_DEBUG"  # "1": a failing rule fails the build

TILE_ROWS, TILE_VECTORS = 4, 2  # batch-matmul register tile: 4 rows x 2 vectors, 8 accumulators


def _iterations(sch, infos) -> int:
    """The most innermost iterations any block of the function runs (large when unknown)."""
    most = 0
    for info in infos:
        count = 1
        for loop in sch.get_loops(info.block_rv):
            extent = get_extent(sch, loop)
            count *= extent if isinstance(extent, int) else PARALLEL_MIN_ITERATIONS
        most = max(most, count)
    return most


def _parallel(sch, loop, parallel: bool) -> None:
    if parallel:
        sch.parallel(loop)


def _vectorize_last(sch, loop, lanes: int) -> None:
    extent = get_extent(sch, loop)
    if isinstance(extent, int) and extent >= lanes and extent % lanes == 0:
        _, inner = sch.split(loop, factors=[None, lanes])
        sch.vectorize(inner)
    elif isinstance(extent, int) and 2 <= extent <= lanes:
        sch.vectorize(loop)


class BatchMatmul(CPUScheduleRule):
    """One reduction block of kind S...SR (a batch matmul) whose output's last axis is the last
    spatial axis. Injective producers (transposes, scalings) are inlined into it; injective
    consumers (a scale, a mask, a bias: attention's scores) become its epilogue, fused into the
    write-back of the register tile."""

    def apply(self, func: tirx.PrimFunc, target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        positions = [i for i, info in enumerate(infos) if not info.is_injective()]
        if len(positions) != 1:
            return None
        info = infos[positions[0]]
        kinds = info.dom_kind()
        if not kinds.endswith("SR") or kinds.count("R") != 1 or len(kinds) < 3:
            return None
        parallel = runs_parallel(_iterations(sch, infos))
        prologue, epilogue = infos[: positions[0]], infos[positions[0] + 1 :]
        if try_inline(sch, list(prologue)):  # producers such as transposes and scalings must inline
            return None
        block, write_back = info.block_rv, None
        if epilogue:
            write_back = sch.cache_write(block, 0, "global")  # the epilogue fuses into this copy-out
            if try_inline(sch, list(epilogue)):
                return None
        lanes = TargetInfo.lanes_of(target)
        *outer, row, last, reduce = sch.get_loops(block)
        rows, columns = get_extent(sch, row), get_extent(sch, last)
        if (
            isinstance(rows, int)
            and isinstance(columns, int)
            and rows % TILE_ROWS == 0
            and columns % (TILE_VECTORS * lanes) == 0
        ):
            return self._register_tiled(sch, block, [*outer, row], last, reduce, lanes, parallel, write_back)
        sch.reorder(reduce, last)
        fused = sch.fuse(*outer, row)
        _parallel(sch, fused, parallel)
        _vectorize_last(sch, last, lanes)  # before decompose_reduction, which leaves a non-compact update
        if write_back is not None:
            sch.reverse_compute_at(write_back, fused, preserve_unit_loops=True)
            _vectorize_last(sch, sch.get_loops(write_back)[-1], lanes)
        sch.decompose_reduction(block, reduce)
        return sch

    @staticmethod
    def _register_tiled(sch, block, outer, last, reduce, lanes, parallel, write_back=None):
        """A TILE_ROWS x (TILE_VECTORS x lanes) accumulator in registers: each B vector feeds TILE_ROWS rows."""
        *batch, row = outer
        row_tile, row_in = sch.split(row, factors=[None, TILE_ROWS])
        column_tile, vector, lane = sch.split(last, factors=[None, TILE_VECTORS, lanes])
        sch.reorder(*batch, row_tile, column_tile, reduce, row_in, vector, lane)
        # small "global" buffers stay in registers
        accumulator = write_back if write_back is not None else sch.cache_write(block, 0, "global")
        sch.reverse_compute_at(accumulator, column_tile, preserve_unit_loops=True)
        sch.vectorize(lane)
        sch.unroll(vector)
        sch.unroll(row_in)
        *_, written_row, written_column = sch.get_loops(accumulator)
        _vectorize_last(sch, written_column, lanes)
        sch.unroll(written_row)
        tiles = sch.fuse(*batch, row_tile, column_tile)  # before decompose_reduction (compact dataflow)
        _parallel(sch, tiles, parallel)
        init = sch.decompose_reduction(block, reduce)
        _vectorize_last(sch, sch.get_loops(init)[-1], lanes)
        return sch


class RowReduction(CPUScheduleRule):
    """Blocks sharing their leading spatial axes; reductions over the last axis only; last block injective."""

    def apply(self, func: tirx.PrimFunc, target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if not infos or len(infos) < 2 or not infos[-1].is_injective():
            return None
        kinds = [info.dom_kind() for info in infos]
        lead = min(len(kind) - len(kind.lstrip("S")) for kind in kinds)
        reductions = [info.block_rv for info in infos if not info.is_injective()]
        if lead < 1 or not reductions or any(kind.count("R") > 1 or "RS" in kind for kind in kinds):
            return None
        # a row reduction keeps only the rows (e.g. a matmul with an epilogue keeps all its axes)
        if any(kind.count("S") != lead for kind in kinds if "R" in kind) or len(kinds[-1]) <= lead:
            return None
        lanes = TargetInfo.lanes_of(target)
        parallel = runs_parallel(_iterations(sch, infos))
        partials = []
        for block in reductions:  # rfactor first: it needs each reduction alone in its loop nest
            reduce = sch.get_loops(block)[-1]
            extent = get_extent(sch, reduce)
            if not isinstance(extent, int) or extent % lanes:
                return None
            _, lane = sch.split(reduce, factors=[None, lanes])
            partials.append(sch.rfactor(lane, factor_axis=lead))
        last = infos[-1].block_rv
        loops = sch.get_loops(last)
        rows = sch.fuse(*loops[:lead]) if lead > 1 else loops[0]
        _parallel(sch, rows, parallel)
        _vectorize_last(sch, sch.get_loops(last)[-1], lanes)
        for block in reversed(list(sch.get_child_blocks(sch.get_sblock("root")))[:-1]):
            sch.compute_at(block, rows, preserve_unit_loops=True)
        for partial in partials:  # under the row loop: [rows, lane (spatial), chunk (reduce), units]
            _, lane, chunk, *_ = sch.get_loops(partial)
            sch.reorder(chunk, lane)
            sch.vectorize(lane)
            sch.decompose_reduction(partial, chunk)
        return sch


class Injective(CPUScheduleRule):
    """Every block spatial: parallel over fused outer loops, vectorised innermost loop."""

    def apply(self, func: tirx.PrimFunc, target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if not infos or not all(info.is_injective() for info in infos):
            return None
        lanes = TargetInfo.lanes_of(target)
        parallel = runs_parallel(_iterations(sch, infos))
        try_inline(sch, list(infos[:-1]))  # dlight's helper: what cannot inline stays a block of its own
        for info in normalize_prim_func(sch) or []:
            loops = sch.get_loops(info.block_rv)
            if not loops:
                continue
            if len(loops) >= 2:
                outer = sch.fuse(*loops[:-1])
                _parallel(sch, outer, parallel)
                _vectorize_last(sch, loops[-1], lanes)
            else:
                extent = get_extent(sch, loops[0])
                if isinstance(extent, int) and extent >= 1024:
                    outer, inner = sch.split(loops[0], factors=[None, lanes])
                    _parallel(sch, outer, parallel)
                    sch.vectorize(inner)
        return sch


class CatchAll(CPUScheduleRule):
    """Whatever no other rule took: each block's leading spatial loops fused and parallel, an
    injective block's innermost loop vectorised. Never the fast path: the compile log names
    every function only this rule scheduled."""

    def apply(self, func: tirx.PrimFunc, target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:  # opaque blocks: nothing this rule can reason about
            return None
        lanes = TargetInfo.lanes_of(target)
        parallel = runs_parallel(_iterations(sch, infos))
        try_inline(sch, [info for info in infos[:-1] if info.is_injective()])
        for info in normalize_prim_func(sch) or []:
            loops = sch.get_loops(info.block_rv)
            kinds = info.dom_kind()
            lead = len(kinds) - len(kinds.lstrip("S"))
            if info.is_injective() and len(loops) >= 2:
                _parallel(sch, sch.fuse(*loops[:-1]), parallel)
                _vectorize_last(sch, loops[-1], lanes)
            elif lead >= 1:
                _parallel(sch, sch.fuse(*loops[:lead]) if lead > 1 else loops[0], parallel)
        return sch


RULES = (BatchMatmul, dl.cpu.GEMV, RowReduction, dl.cpu.Reduction, Injective)  # in order; then CatchAll


@dataclasses.dataclass
class ScheduleLog:
    """Which rule scheduled each function of a module (the compile log and the tests read it)."""

    taken_by: dict[str, str] = dataclasses.field(default_factory=dict)  # function -> rule name
    unscheduled: list[str] = dataclasses.field(default_factory=list)
    tuned: dict[str, str] = dataclasses.field(default_factory=dict)  # function -> what tune=N decided

    @property
    def catch_all_only(self) -> list[str]:
        return sorted(name for name, rule in self.taken_by.items() if rule == CatchAll.__name__)


def _apply_rule(rule, name: str, func, target):
    """The rule's schedule, None when it does not apply; a crash is reported, not swallowed."""
    try:
        return rule.apply(func, target, False)
    except Exception as error:  # any TVM or Python error inside a rule is a bug in that rule
        text = str(error).strip()
        message = f"schedule rule {type(rule).__name__} failed on {name}: {text.splitlines()[-1] if text else type(error).__name__}"
        if os.environ.get(DEBUG_ENV) == "1":
            raise ScheduleRuleError(message) from error
        logger.warning("%s; the next rule gets it", message)
        return None


def apply_cpu_schedules(module, target, log: ScheduleLog | None = None):
    """Schedule every unscheduled PrimFunc of a legalized, fused module for a CPU target.

    Rules are tried in order (`RULES`, then `CatchAll`); `log` records which one took each
    function. A function no rule takes fails the build in debug mode and is logged otherwise.
    """
    log = log if log is not None else ScheduleLog()
    rules = [rule() for rule in RULES] + [CatchAll()]
    updated = {}
    with target:
        for gvar, func in module.functions_items():
            if not isinstance(func, tirx.PrimFunc) or _is_scheduled(func):
                continue
            name = gvar.name_hint
            for rule in rules:
                sch = _apply_rule(rule, name, func, target)
                if sch is not None:
                    updated[gvar] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
                    log.taken_by[name] = type(rule).__name__
                    break
            else:
                log.unscheduled.append(name)
    for gvar, func in updated.items():
        module[gvar] = func
    if log.catch_all_only:
        logger.info("scheduled only by the catch-all rule: %s", ", ".join(log.catch_all_only))
    if log.unscheduled:
        message = (
            f"no schedule rule took {', '.join(log.unscheduled)}: they run as single-threaded scalar loops"
        )
        if os.environ.get(DEBUG_ENV) == "1":
            raise ScheduleRuleError(message)
        logger.warning(message)
    return module


def _is_scheduled(func) -> bool:
    return "tirx.is_scheduled" in func.attrs and bool(func.attrs["tirx.is_scheduled"])
