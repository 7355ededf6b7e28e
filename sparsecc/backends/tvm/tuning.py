"""Autotuning of the linear kernels, with records kept on disk and reused.

Kernels written as schedulable TIR (the blocked kernel: BSR, CSR and dense on CPU)
are tuned by MetaSchedule over their design space (`meta_schedule.py`). The N:M
kernel is hand-written TIR without sblocks, so its tunables get a measured grid
search here instead. Both keep records keyed by target and workload in one
directory, so compiling the same model again runs no new trials.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from sparsecc import files
from sparsecc.backends.tvm.target import TargetInfo
from sparsecc.errors import SparseccError

logger = logging.getLogger(__name__)


def default_records_dir() -> Path:
    base = os.environ.get("SPARSECC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "sparsecc")
    return Path(base) / "tuning"


def workload_key(weight, m: int) -> str:
    """Format, shape, tokens and a digest of the structure (not the values)."""
    digest = hashlib.sha1()
    if isinstance(weight, np.ndarray):
        kind, parts = "dense", []
    else:
        kind = type(weight).__name__
        parts = [
            getattr(weight, name) for name in ("row_ptr", "col_indices", "indices") if hasattr(weight, name)
        ]
    for part in parts:
        digest.update(np.ascontiguousarray(part).tobytes())
    return f"{kind}|{tuple(weight.shape)}|{getattr(weight, 'block', '')}|m={m}|{digest.hexdigest()[:16]}"


def target_key(target: TargetInfo) -> str:
    return json.dumps(target.target_dict, sort_keys=True)


class TuningRecords:
    """Grid-search records: a JSON file of {target: {workload: {"tiles": ..., "ms": ..., "trials": ...}}}.

    Several processes may tune with one records directory at once: `store` re-reads the
    file and merges under a file lock beside it (`<name>.lock`), then replaces it
    atomically, so no process loses another's records and no reader sees half a file.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.data = self._read()
        self.trials_run = 0

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def lookup(self, target: TargetInfo, workload: str) -> dict | None:
        key = target_key(target)
        record = self.data.get(key, {}).get(workload)
        if record is None:  # another process may have tuned it since this one read the file
            self.data = self._read() or self.data
            record = self.data.get(key, {}).get(workload)
        return record

    def store(self, target: TargetInfo, workload: str, record: dict) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with files.locked(self.lock_path):
                data = self._read()
                data.setdefault(target_key(target), {})[workload] = record
                files.write_bytes(self.path, json.dumps(data, indent=1, sort_keys=True).encode())
        except OSError as error:
            raise SparseccError(f"cannot write tuning records to {self.path}: {error.strerror}") from None
        self.data = data


@dataclasses.dataclass(frozen=True)
class RpcConfig:
    """Measure on another machine through a TVM RPC tracker: HOST:PORT:KEY."""

    host: str
    port: int
    key: str

    @classmethod
    def parse(cls, text: str) -> RpcConfig:
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2]:
            raise SparseccError(
                f"--rpc {text!r} must look like HOST:PORT:KEY (a TVM RPC tracker and device key)"
            )
        return cls(parts[0], int(parts[1]), parts[2])


def measure_ms(kernel, m: int, inp: int, out: int, target: TargetInfo, rpc: RpcConfig | None = None) -> float:
    """Median ms of one kernel call: here, or on a device behind an RPC tracker."""
    x = np.random.default_rng(0).standard_normal((m, inp)).astype(np.float32)
    return measure_func_ms(
        kernel.prim_func, [x, *kernel.constants, np.zeros((m, out), np.float32)], target, rpc
    )


def measure_func_ms(
    func, arrays: list[np.ndarray], target: TargetInfo, rpc: RpcConfig | None = None
) -> float:
    """Median ms of one call of a scheduled PrimFunc on `arrays`."""
    import tvm

    executable = tvm.compile(func.with_attr("global_symbol", "main"), target=target.target)
    if rpc is None:
        module, device = executable.jit(), tvm.cpu()
    else:
        module, device = _remote_module(executable, target, rpc)
    args = [tvm.runtime.tensor(a, device) for a in arrays]
    module["main"](*args)  # first touch of fresh weight pages and thread-pool start stay out of the timing
    return float(module.time_evaluator("main", device, number=5, repeat=3)(*args).median) * 1000.0


def _remote_module(executable, target: TargetInfo, rpc: RpcConfig):
    import tempfile

    from tvm import rpc as tvm_rpc

    from sparsecc.backends.tvm.export import export_library

    try:
        session = tvm_rpc.connect_tracker(rpc.host, rpc.port).request(
            rpc.key, priority=1, session_timeout=120
        )
    except Exception as error:
        raise SparseccError(
            f"cannot reach RPC tracker {rpc.host}:{rpc.port} key {rpc.key!r}: {error}"
        ) from None
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "kernel.so")
        export_library(executable, path, target.family)
        session.upload(path)
    return session.load_module("kernel.so"), session.cpu()


def grid_search_tiles(
    weight, bias, m: int, target: TargetInfo, trials: int, records: TuningRecords, rpc: RpcConfig | None
) -> tuple[dict, float, int]:
    """The recorded tiles for this workload, or the fastest of `trials` measured candidates.

    Returns (tiles, ms, new trials).
    """
    from sparsecc.backends.tvm.kernels.rules import make_kernel, tile_space

    workload = workload_key(weight, m)
    record = records.lookup(target, workload)
    if record is not None:
        return record["tiles"], record["ms"], 0
    out, inp = weight.shape
    candidates = tile_space(weight, m, target)[:trials]
    best, started = None, time.perf_counter()
    for tiles in candidates:
        kernel = make_kernel(weight, bias, m, target, tiles)
        ms = measure_ms(kernel, m, inp, out, target, rpc)
        logger.debug("tuning %s: %s -> %.3f ms", workload, kernel.tiles, ms)
        if best is None or ms < best[1]:
            best = (kernel.tiles, ms)
    seconds = round(time.perf_counter() - started, 2)
    records.store(
        target, workload, {"tiles": best[0], "ms": best[1], "trials": len(candidates), "seconds": seconds}
    )
    return best[0], best[1], len(candidates)


class KernelTuner:
    """`tune=N` for one compile: MetaSchedule where a kernel has a design space, grid search otherwise."""

    def __init__(self, target: TargetInfo, trials: int, records_dir=None, rpc: RpcConfig | None = None):
        self.target, self.trials, self.rpc = target, trials, rpc
        self.records_dir = Path(records_dir) if records_dir else default_records_dir()
        if self.records_dir.suffix == ".json" or self.records_dir.is_file():
            raise SparseccError(f"tuning records path {self.records_dir} must be a directory, not a file")
        self.grid_records = TuningRecords(self.records_dir / "grid_search.json")
        self._meta_schedule = None
        self.grid_trials = 0
        self.kernels_seen = 0

    @property
    def trials_run(self) -> int:
        """New measurements this compile made (0 when every workload was in the records)."""
        return self.grid_trials + (self._meta_schedule.trials_run if self._meta_schedule else 0)

    @property
    def active(self) -> bool:
        """Tuning measures kernels: here, or on a device behind an RPC tracker."""
        return self.trials > 0 and (self.rpc is not None or self.target.runs_here)

    def tune(self, kernel, weight, bias, m: int):
        """The fastest measured kernel for this layer: the tuned sparse one, or the tuned dense one.

        Measuring both is what keeps a sparse layer from running slower than dense on this
        target (the cost model only estimates, and does not know M or the target).
        """
        from sparsecc.backends.tvm.kernels.rules import make_kernel

        if not self.active:
            return kernel
        self.kernels_seen += 1
        started, before = time.perf_counter(), self.trials_run
        tuned, ms, method = self._tune_one(kernel, weight, bias, m)
        note = ""
        if tuned.runs != "dense" and ms is not None:
            dense_weight = weight.to_dense()
            dense, dense_ms, _ = self._tune_one(
                make_kernel(dense_weight, bias, m, self.target), dense_weight, bias, m
            )
            if dense_ms is not None and dense_ms < ms:
                note = f"; kept dense: {tuned.name} measured {ms:.3f} ms, dense {dense_ms:.3f} ms"
                reason = f"tuning measured {tuned.name} at {ms:.3f} ms and dense at {dense_ms:.3f} ms"
                tuned, ms = dataclasses.replace(dense, reason=reason), dense_ms
        new = self.trials_run - before
        logger.info(
            "tuning kernel %d (%s, %dx%d, m=%d, %s): %s, %s%s in %.1f s%s",
            self.kernels_seen,
            tuned.name,
            *weight.shape,
            m,
            method,
            tuned.tiles,
            f"{ms:.3f} ms" if ms is not None else "no valid candidate",
            f", {new} new trials" if new else ", from the records",
            time.perf_counter() - started,
            note,
        )
        return tuned

    def _tune_one(self, kernel, weight, bias, m: int):
        """(kernel, ms or None, method): MetaSchedule with a design space, else the grid search."""
        from sparsecc.backends.tvm.kernels.rules import make_kernel, tile_space

        if kernel.design_space is not None:
            if self._meta_schedule is None:
                from sparsecc.backends.tvm.meta_schedule import MetaScheduleTuner

                self._meta_schedule = MetaScheduleTuner(self.target, self.records_dir, self.trials, self.rpc)
            tuned, ms = self._meta_schedule.tune(kernel, m, weight.shape)
            return tuned, ms, "MetaSchedule"
        if tile_space(weight, m, self.target):
            tiles, ms, new = grid_search_tiles(
                weight, bias, m, self.target, self.trials, self.grid_records, self.rpc
            )
            self.grid_trials += new
            return make_kernel(weight, bias, m, self.target, tiles), ms, "grid search"
        return kernel, None, "not tunable"

    # -- beyond the linear kernels: attention's tiles, and every other function of the graph --

    def attention_tiles(self, shape, lanes: int, registers: int) -> dict[str, int]:
        """Tiles for one fused attention call: recorded, or the fastest of its grid (default first)."""
        from sparsecc.backends.tvm.kernels import attention_cpu

        default = attention_cpu.default_tiles(shape, lanes, registers)
        if not self.active:
            return default
        workload = f"attention|{dataclasses.astuple(shape)}"
        record = self.grid_records.lookup(self.target, workload)
        if record is not None:
            return record["tiles"]
        candidates = attention_cpu.tile_space(shape, lanes, registers)[: self.trials]
        started, times = time.perf_counter(), []
        for tiles in candidates:
            func = attention_cpu.attention_kernel(shape, lanes, tiles)
            times.append(
                measure_func_ms(func, attention_cpu.random_operands(shape, tiles), self.target, self.rpc)
            )
        best = int(np.argmin(times))
        self.grid_trials += len(candidates)
        seconds = round(time.perf_counter() - started, 2)
        record = {"tiles": candidates[best], "ms": times[best], "trials": len(candidates), "seconds": seconds}
        self.grid_records.store(self.target, workload, record)
        logger.info(
            "tuning attention %s: %s, %.3f ms (default tiles %.3f ms), %d trials in %.1f s",
            workload,
            candidates[best],
            times[best],
            times[0],
            len(candidates),
            seconds,
        )
        return candidates[best]

    def tune_functions(self, module, originals: dict, log) -> None:
        """MetaSchedule on every function a CPU schedule rule took; the faster schedule stays.

        `originals` maps function names to their unscheduled PrimFuncs; `log` (ScheduleLog)
        gets, per function, the rule's and MetaSchedule's times. Functions with integer
        operands are skipped: random indices would read out of bounds.
        """
        if not self.active or self.rpc is not None:
            return
        if self._meta_schedule is None:
            from sparsecc.backends.tvm.meta_schedule import MetaScheduleTuner

            self._meta_schedule = MetaScheduleTuner(self.target, self.records_dir, self.trials, self.rpc)
        for gvar, func in list(module.functions_items()):
            name = gvar.name_hint
            if name not in log.taken_by or name not in originals:
                continue
            arrays = _random_arguments(func)
            if arrays is None:
                log.tuned[name] = "not tuned: integer operands"
                continue
            started, before = time.perf_counter(), self.trials_run
            ours = measure_func_ms(func, arrays, self.target)
            tuned = self._meta_schedule.tune_function(originals[name], arrays)
            if tuned is not None and tuned[1] < ours * (1 - MIN_FUNCTION_GAIN):
                module[gvar] = tuned[0].with_attr("tirx.is_scheduled", True)
                log.tuned[name] = f"MetaSchedule {tuned[1]:.3f} ms, {log.taken_by[name]} {ours:.3f} ms"
            else:
                found = "no valid candidate" if tuned is None else f"MetaSchedule {tuned[1]:.3f} ms"
                log.tuned[name] = f"kept {log.taken_by[name]} {ours:.3f} ms ({found})"
            logger.info(
                "tuning %s: %s, %d new trials in %.1f s",
                name,
                log.tuned[name],
                self.trials_run - before,
                time.perf_counter() - started,
            )


# MetaSchedule's schedule replaces a rule's only when it measures this much faster: single
# timings of small functions jitter by a few percent.
MIN_FUNCTION_GAIN = 0.05


def _random_arguments(func) -> list[np.ndarray] | None:
    """Random float32 arrays for every parameter of a PrimFunc (None: a non-float parameter)."""
    arrays = []
    rng = np.random.default_rng(0)
    for param in func.params:  # tirx: a buffer parameter carries its dtype and shape
        if str(getattr(param, "dtype", "")) != "float32" or not hasattr(param, "shape"):
            return None
        if not all(isinstance(d, int) or hasattr(d, "value") for d in param.shape):
            return None  # a symbolic extent
        shape = [int(d) for d in param.shape]
        arrays.append(rng.standard_normal(shape).astype(np.float32))
    return arrays
