"""MetaSchedule tuning of one kernel written as schedulable TIR.

The kernel supplies its unscheduled PrimFunc and a design space (its fixed schedule
with the tunables sampled); MetaSchedule's evolutionary search measures candidates
with the kernel's *real* operands (random int32 col/row_ptr would index out of
bounds) and keeps them in a JSON database, one directory per target, so a second
compile of the same workload runs no trials.

Two processes may tune with one records directory at once. TVM's JSONDatabase appends
lines to two files and stores each tuning record with the *line number* of its workload
as this process last read the workload file; two unsynchronised writers would number
different workloads alike and attach one process's schedules to the other's workloads.
So every look-up and search holds a lock file beside the database (`database.lock`) and
re-reads the database inside it: processes take turns, and each sees the other's records.

Builds and local measurements run in this process (`InProcessBuilder`,
`InProcessRunner`): MetaSchedule's pools start a fresh Python per batch, which cost
~10 s per kernel here for kernels that build in 0.2 s. Through an RPC tracker the
builder exports each candidate and TVM's RPCRunner measures it on the device.

Work-around for the apache-tvm 0.27.0.post1 wheel (docs/tvm-notes.md, "Environment"):
`import tvm.s_tir.tensor_intrin` takes ~45 s (it parses every tensor intrinsic) and
MetaSchedule imports it; our design spaces tensorize nothing, so an empty package
stands in for it (with x86's intrinsics registered on AVX-512 targets, whose default rules use VNNI).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sparsecc import files
from sparsecc.backends.tvm.kernels import Kernel
from sparsecc.backends.tvm.target import TargetInfo
from sparsecc.errors import SparseccError

logger = logging.getLogger(__name__)
MS_LOGGER = "tvm.s_tir.meta_schedule"
SEARCH_POPULATION = 64


def stub_tensor_intrin(keep: tuple[str, ...] = ()) -> None:
    """Stand in for `tvm.s_tir.tensor_intrin`, registering only the listed submodules."""
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        return
    module = importlib.util.module_from_spec(importlib.util.find_spec(name))
    sys.modules[name] = module
    import tvm.s_tir

    tvm.s_tir.tensor_intrin = module
    for sub in keep:
        setattr(module, sub, importlib.import_module(f"{name}.{sub}"))


def _builder_and_runner(ms, arrays: list[np.ndarray], rpc, evaluator):
    """MetaSchedule's builder and runner interfaces, implemented in this process."""
    from tvm.ir.utils import derived_object

    built: dict[str, object] = {}

    @derived_object
    class InProcessBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            import os
            import tempfile

            import tvm
            from tvm.support.tar import tar

            results = []
            for build_input in build_inputs:
                try:
                    library = tvm.compile(build_input.mod, target=build_input.target)
                    # MetaSchedule removes the artifact's directory after measuring it
                    key = os.path.join(tempfile.mkdtemp(prefix="sparsecc-ms-"), "kernel.tar")
                    if rpc is None:
                        built[key] = library.jit()
                    else:  # the device links the object files itself
                        library.export_library(key, fcompile=tar)
                    results.append(ms.builder.BuilderResult(key, None))
                except Exception as error:  # a candidate that fails to build is a failed trial
                    results.append(ms.builder.BuilderResult(None, f"build failed: {error}"))
            return results

    @derived_object
    class DoneFuture(ms.runner.PyRunnerFuture):
        def __init__(self, seconds, error):
            super().__init__()
            self.seconds, self.error = seconds, error

        def done(self):
            return True

        def result(self):
            return ms.runner.RunnerResult(self.seconds, self.error)

    @derived_object
    class InProcessRunner(ms.runner.PyRunner):
        def run(self, runner_inputs):
            import tvm

            device = tvm.cpu()
            args = [tvm.runtime.tensor(a, device) for a in arrays]
            futures = []
            for runner_input in runner_inputs:
                try:
                    module = built.pop(str(runner_input.artifact_path))
                    timer = module.time_evaluator(
                        "main", device, number=evaluator.number, repeat=evaluator.repeat
                    )
                    futures.append(DoneFuture([float(s) for s in timer(*args).results], None))
                except Exception as error:
                    futures.append(DoneFuture(None, f"run failed: {error}"))
            return futures

    if rpc is None:
        return InProcessBuilder(), InProcessRunner()
    config = ms.runner.RPCConfig(
        tracker_host=rpc.host, tracker_port=rpc.port, tracker_key=rpc.key, session_timeout_sec=120
    )
    runner = ms.runner.RPCRunner(
        rpc_config=config, f_alloc_argument=_remote_alloc(arrays), evaluator_config=evaluator
    )
    return InProcessBuilder(), runner


def kernel_arrays(kernel: Kernel, m: int, inp: int, out: int) -> list[np.ndarray]:
    """The PrimFunc's arguments: a random X, the kernel's constants and Y."""
    x = np.random.default_rng(0).standard_normal((m, inp)).astype(np.float32)
    return [x, *kernel.constants, np.zeros((m, out), np.float32)]


def _remote_alloc(arrays: list[np.ndarray]):
    def alloc(_session, device, _args_info, alloc_repeat):
        import tvm

        return [[tvm.runtime.tensor(a, device) for a in arrays] for _ in range(alloc_repeat)]

    return alloc


def ms_target(target: TargetInfo):
    """MetaSchedule on CPU needs "num-cores" in the target."""
    import tvm

    return tvm.target.Target({**target.target_dict, "num-cores": target.num_cores})


def database_dir(records_dir: Path, target: TargetInfo) -> Path:
    """One MetaSchedule database per target (JSONDatabase does not filter records by target)."""
    digest = hashlib.sha1(json.dumps(target.target_dict, sort_keys=True).encode()).hexdigest()[:12]
    return Path(records_dir) / f"{target.family}-{digest}"


class MetaScheduleTuner:
    """Tunes kernels for one target; counts the trials it ran."""

    def __init__(self, target: TargetInfo, records_dir: Path, trials: int, rpc=None):
        # on AVX-512 targets MetaSchedule's default rules (graph functions) tensorize int8 dot
        # products with the VNNI intrinsics, which must exist (~7 s to parse x86's alone)
        stub_tensor_intrin(keep=("x86",) if target.family == "x86" and target.vector_bits >= 512 else ())
        from tvm.s_tir import meta_schedule as ms

        self.ms, self.target, self.trials, self.rpc = ms, target, trials, rpc
        self.work_dir = database_dir(records_dir, target)
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)  # JSONDatabase cannot create its directory
            files.write_bytes(
                self.work_dir / "target.json", json.dumps(target.target_dict, sort_keys=True).encode()
            )
        except OSError as error:
            raise SparseccError(f"cannot write tuning records to {self.work_dir}: {error.strerror}") from None
        with self._locked():  # reads the database once, so unreadable records fail here
            pass
        self.trials_run = 0

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the database's lock file and (re)read the database: other processes may have
        appended since this one last read it, and the record files number workloads by line."""
        with files.locked(self.work_dir / "database.lock"):
            try:
                self.database = self.ms.database.JSONDatabase(work_dir=str(self.work_dir))
            except Exception as error:
                raise SparseccError(
                    f"tuning records in {self.work_dir} are unreadable "
                    f"({str(error).strip().splitlines()[-1]}); delete that directory to tune afresh"
                ) from None
            yield

    def tune(self, kernel: Kernel, m: int, weight_shape: tuple[int, int]) -> tuple[Kernel, float | None]:
        """The kernel with its best recorded schedule, tuning first when the workload is new."""
        with self._locked():
            return self._tune(kernel, m, weight_shape)

    def _tune(self, kernel: Kernel, m: int, weight_shape: tuple[int, int]) -> tuple[Kernel, float | None]:
        import tvm

        module = tvm.IRModule({"main": kernel.base_func})
        target = ms_target(self.target)
        record = self._best(module, target)
        if record is None:
            before = len(self.database.get_all_tuning_records())
            arrays = kernel_arrays(kernel, m, weight_shape[1], weight_shape[0])
            trials = min(self.trials, kernel.space_size or self.trials)
            self._search(module, target, arrays, kernel.design_space, trials)
            self.trials_run += len(self.database.get_all_tuning_records()) - before
            record = self._best(module, target)
        if record is None:  # every candidate failed to build or run: keep the default schedule
            logger.warning("tuning %s: no valid candidate, keeping the default tiles", kernel.name)
            return kernel, None
        schedule = self.ms.tir_integration.compile_tir(self.database, module, target)
        tiles = kernel.tiles_of_trace(schedule.trace)
        seconds = [float(s) for s in record.run_secs]
        return kernel.with_schedule(schedule.mod["main"], tiles), float(np.median(seconds)) * 1000.0

    def tune_function(self, func, arrays: list[np.ndarray]) -> tuple[object, float] | None:
        """MetaSchedule's default CPU design space (its schedule rules) for any PrimFunc, measured
        on `arrays`: (the best scheduled PrimFunc, its ms), or None when no candidate ran."""
        with self._locked():
            return self._tune_function(func, arrays)

    def _tune_function(self, func, arrays: list[np.ndarray]) -> tuple[object, float] | None:
        import tvm

        module = tvm.IRModule(
            {"main": func.without_attr("tirx.is_scheduled").with_attr("global_symbol", "main")}
        )
        target = ms_target(self.target)
        record = self._best(module, target)
        if record is None:
            before = len(self.database.get_all_tuning_records())
            self._search(module, target, arrays, "post-order-apply", self.trials)
            self.trials_run += len(self.database.get_all_tuning_records()) - before
            record = self._best(module, target)
        if record is None:
            return None
        schedule = self.ms.tir_integration.compile_tir(self.database, module, target)
        if schedule is None:
            return None
        seconds = [float(s) for s in record.run_secs]
        return schedule.mod["main"].without_attr("global_symbol"), float(np.median(seconds)) * 1000.0

    def _best(self, module, target):
        if not self.database.has_workload(module):
            return None
        records = self.database.get_top_k(self.database.commit_workload(module), 1)
        return records[0] if records else None

    def _search(self, module, target, arrays: list[np.ndarray], design_space, trials: int) -> None:
        """`design_space`: a schedule function (a kernel's own space) or "post-order-apply"
        (MetaSchedule's rules for the target)."""
        ms = self.ms
        ms_logger = logging.getLogger(MS_LOGGER)
        ms_logger.handlers.clear()  # tune_tir re-adds its own; a stale unnamed one breaks its config
        ms_logger.setLevel(logging.WARNING)  # its console handler's level; the log files get everything
        evaluator = ms.runner.EvaluatorConfig(number=5, repeat=3, enable_cpu_cache_flush=False)
        builder, runner = _builder_and_runner(ms, arrays, self.rpc, evaluator)
        ms.tune_tir(
            module,
            target,
            str(self.work_dir),
            max_trials_global=trials,
            num_trials_per_iter=min(trials, 16),
            space=design_space
            if isinstance(design_space, str)
            else ms.space_generator.ScheduleFn(
                design_space,
                sch_rules=[],
                postprocs=[],
                mutator_probs={ms.mutator.MutateTileSize(): 1.0},
            ),
            builder=builder,
            runner=runner,
            database=self.database,
            cost_model="xgb",
            # a small population: the functions are small and trials few; the default (512
            # candidates, 4 generations) spent 7-40 s per function before its first trial
            strategy=ms.search_strategy.EvolutionarySearch(
                population_size=SEARCH_POPULATION,
                init_min_unmeasured=SEARCH_POPULATION // 2,
                genetic_num_iters=2,
            ),
            num_tuning_cores=self.target.num_cores,
            seed=0,
        )
