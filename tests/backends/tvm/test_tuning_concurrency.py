"""Two processes tuning with one records directory at once: no lost or misattributed records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]

# One process: sparsify zoo:mlp by SPEC (its reference: onnxruntime on that file, which the
# sparsify step checked against the pruned dense model), compile it with tune=1 into the shared
# records, and save both outputs on the same input.
TUNE_ONE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import sparsecc
    from sparsecc.backends.ort import session

    records, spec, out = sys.argv[1:]
    sparse = sparsecc.sparsify("zoo:mlp", spec)
    compiled = sparsecc.compile(sparse, "existing", tune=1, records_path=records)
    x = np.random.default_rng(0).standard_normal((32, 256)).astype(np.float32)
    (name,) = [i.name for i in sparse.graph.input]
    np.savez(out, tvm=compiled(x), ort=session.run(sparse, {name: x})[0])
    print(json.dumps({"trials": compiled.tuning_trials}))
    """
)

# Two sparsity levels give two BSR workloads (one per process); the 2:4 layer of the second
# goes through the grid search, whose records share the directory too.
SPECS = ("layers.0.weight=block(16,1)@0.9", "layers.0.weight=block(16,1)@0.8; layers.2.weight=2:4")


def _env() -> dict:
    return {**os.environ, "TVM_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def test_two_processes_tune_into_one_records_directory(tmp_path):
    pytest.importorskip("tvm")
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir import schedule as tir_schedule

    records = tmp_path / "records"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TUNE_ONE, str(records), spec, str(tmp_path / f"out{i}.npz")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for i, spec in enumerate(SPECS)
    ]
    reports = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        reports.append(json.loads(stdout.strip().splitlines()[-1]))

    for i in range(len(SPECS)):  # each process's native build computes what onnxruntime computes
        outputs = np.load(tmp_path / f"out{i}.npz")
        want = outputs["ort"]
        np.testing.assert_allclose(outputs["tvm"], want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))

    (database,) = [d for d in records.iterdir() if d.is_dir()]
    workloads = [json.loads(line) for line in (database / "database_workload.json").read_text().splitlines()]
    tuned = [json.loads(line) for line in (database / "database_tuning_record.json").read_text().splitlines()]
    (grid,) = json.loads((records / "grid_search.json").read_text()).values()
    assert [key.split("|")[0] for key in grid] == ["NmWeight"]  # the 2:4 layer: grid search
    # no record lost: every new trial either process counted is a MetaSchedule line or in the grid
    # search's records, and each MetaSchedule line names a workload
    assert all(r["trials"] > 0 for r in reports)
    assert len(tuned) + sum(g["trials"] for g in grid.values()) == sum(r["trials"] for r in reports)
    assert all(0 <= index < len(workloads) for index, _ in tuned)
    assert len({shash for shash, _ in workloads}) == len(workloads)  # no workload written twice
    # and none misattributed: each record's arguments are its workload's (a record numbered against
    # another process's workload list names a kernel of other shapes), and its schedule replays there
    loaded = ms.database.JSONDatabase(work_dir=str(database))
    all_records = loaded.get_all_tuning_records()
    assert len(all_records) == len(tuned)
    bsr_workloads = set()
    for record in all_records:
        shapes = [str(a.as_json()) for a in ms.arg_info.ArgInfo.from_prim_func(record.workload.mod["main"])]
        assert [str(a.as_json()) for a in record.args_info] == shapes
        sch = tir_schedule.Schedule(record.workload.mod)
        if _has_block(sch, "bsr"):
            bsr_workloads.add(record.workload.mod.script())
        record.trace.apply_to_schedule(sch, remove_postproc=False)
    assert len(bsr_workloads) == 2  # both processes' BSR kernels (90% and 80% zeros) are there


def _has_block(sch, name: str) -> bool:
    try:
        sch.get_sblock(name, func_name="main")
    except Exception:  # tvm's ScheduleError: no block of that name
        return False
    return True


# N processes storing distinct keys in one grid-search records file at the same time.
STORE_MANY = textwrap.dedent(
    """
    import sys
    from sparsecc.backends.tvm.target import resolve_target
    from sparsecc.backends.tvm.tuning import TuningRecords

    path, who, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    target = resolve_target("cpu")
    for i in range(count):
        # a fresh reader each time, as separate compiles would be
        TuningRecords(path).store(target, f"{who}|{i}", {"tiles": {"T": i}, "ms": 1.0, "trials": 1})
    """
)


def test_concurrent_stores_keep_every_key(tmp_path):
    from sparsecc.backends.tvm.tuning import TuningRecords

    path, processes, count = tmp_path / "grid_search.json", 4, 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STORE_MANY, str(path), f"p{p}", str(count)],
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(processes)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-3000:]
    (stored,) = TuningRecords(path).data.values()  # one target
    assert sorted(stored) == sorted(f"p{p}|{i}" for p in range(processes) for i in range(count))
    assert all(stored[f"p1|{i}"]["tiles"] == {"T": i} for i in range(count))
    # nothing but the records and the lock file: the temporaries were renamed or removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid_search.json", "grid_search.json.lock"]
