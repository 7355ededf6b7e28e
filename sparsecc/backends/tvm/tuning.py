"""Tile-size tuning for our kernels, with records kept on disk and reused.

Each linear kernel exposes its tile sizes (`Kernel.tiles`); a tuning run measures up
to N candidates from the kernel's search space on this machine and keeps the fastest.
Records are keyed by target and workload (format, shapes, tokens and a digest of the
sparsity structure), so compiling the same model again runs no new trials.

Our kernels are hand-written TIR without schedulable blocks, so this is a measured
grid search over their tunables, not MetaSchedule.
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

from sparsecc.backends.tvm.target import TargetInfo
from sparsecc.errors import SparseccError

logger = logging.getLogger(__name__)


def default_records_path() -> Path:
    base = os.environ.get("SPARSECC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "sparsecc")
    return Path(base) / "tuning_records.json"


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
    """A JSON file of {target: {workload: {"tiles": ..., "ms": ..., "trials": ...}}}."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else default_records_path()
        try:
            self.data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}
        self.trials_run = 0

    def lookup(self, target: TargetInfo, workload: str) -> dict | None:
        return self.data.get(target_key(target), {}).get(workload)

    def store(self, target: TargetInfo, workload: str, record: dict) -> None:
        self.data.setdefault(target_key(target), {})[workload] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


def tile_space(weight, m: int, target: TargetInfo) -> list[dict]:
    """Candidate tiles for a kernel, the default first (each kernel module owns its space)."""
    from sparsecc.backends.tvm.kernels.csr import csr_tile_space
    from sparsecc.backends.tvm.kernels.nm import nm_tile_space
    from sparsecc.ops.formats import CsrWeight, NmWeight

    if isinstance(weight, NmWeight):
        return nm_tile_space(weight, m, target)
    if isinstance(weight, CsrWeight):
        return csr_tile_space(weight, m, target)
    lanes = target.lanes
    return [{"MT": mt} for mt in (4 * lanes, 2 * lanes, lanes, 8 * lanes)]


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
    import tvm

    executable = tvm.compile(kernel.prim_func, target=target.target)
    x = np.random.default_rng(0).standard_normal((m, inp)).astype(np.float32)
    arrays = (x, *kernel.constants, np.zeros((m, out), np.float32))
    if rpc is None:
        module, device = executable.jit(), tvm.cpu()
    else:
        module, device = _remote_module(executable, target, rpc)
    args = [tvm.runtime.tensor(a, device) for a in arrays]
    return float(module.time_evaluator("main", device, number=5, repeat=3)(*args).median) * 1000.0


def _remote_module(executable, target: TargetInfo, rpc: RpcConfig):
    import tempfile

    from tvm import rpc as tvm_rpc

    from sparsecc.backends.tvm.artifact import export_library

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


def choose_tiles(
    weight,
    bias,
    m: int,
    target: TargetInfo,
    trials: int,
    records: TuningRecords,
    rpc: RpcConfig | None = None,
) -> dict | None:
    """The recorded tiles for this workload, or the fastest of `trials` measured candidates."""
    from sparsecc.backends.tvm.kernels.registry import make_kernel

    if trials <= 0 or (rpc is None and not target.runs_here):
        return None
    workload = workload_key(weight, m)
    record = records.lookup(target, workload)
    if record is not None:
        logger.info("tuning: reusing record for %s (%.3f ms)", workload, record["ms"])
        return record["tiles"]
    out, inp = weight.shape
    best = None
    started = time.perf_counter()
    for tiles in tile_space(weight, m, target)[:trials]:
        kernel = make_kernel(weight, bias, m, target, tiles)
        ms = measure_ms(kernel, m, inp, out, target, rpc)
        records.trials_run += 1
        logger.info("tuning %s: %s -> %.3f ms", workload, kernel.tiles, ms)
        if best is None or ms < best[1]:
            best = (kernel.tiles, ms)
    records.store(
        target,
        workload,
        {
            "tiles": best[0],
            "ms": best[1],
            "trials": len(tile_space(weight, m, target)[:trials]),
            "seconds": round(time.perf_counter() - started, 2),
        },
    )
    return best[0]
