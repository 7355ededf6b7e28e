"""tune=N measures tile candidates once; a second compile reuses the records (no new trials)."""

import json

import numpy as np
import pytest

import sparsecc

pytest.importorskip("tvm")
SPEC = "layers.0.weight=block(16,1)@0.9; layers.2.weight=2:4"


def test_second_compile_reuses_records(tmp_path):
    records = tmp_path / "records.json"
    first = sparsecc.compile("zoo:mlp", SPEC, tune=2, records_path=records)
    assert first.tuning_trials == 2 * 3  # three linear kernels (two sparse, one dense), two candidates each
    data = json.loads(records.read_text())
    (by_workload,) = data.values()
    assert len(by_workload) == 3 and all(r["ms"] > 0 and r["trials"] == 2 for r in by_workload.values())
    second = sparsecc.compile("zoo:mlp", SPEC, tune=2, records_path=records)
    assert second.tuning_trials == 0
    x = next(iter(first.example_inputs.values()))
    np.testing.assert_allclose(second(x), first(x), rtol=1e-5, atol=1e-5)


def test_measure_fills_the_reports_measured_speedup():
    cm = sparsecc.compile("zoo:mlp", "layers.0.weight=block(16,1)@0.95", measure=True)
    rows = {row["name"]: row for row in cm.report}
    assert rows["layers.0.weight"]["measured_speedup"] > 0  # a timing ratio; speed itself is shown in bench/
    assert rows["layers.1.weight"]["measured_speedup"] is None  # dense layers are not measured


def test_tuning_measures_through_an_rpc_tracker_on_loopback(tmp_path):
    pytest.importorskip("tornado")
    from tvm.rpc.server import Server
    from tvm.rpc.tracker import Tracker

    tracker = Tracker(host="127.0.0.1", port=9190, port_end=9290, silent=True)
    server = Server(
        host="127.0.0.1",
        port=9300,
        port_end=9400,
        tracker_addr=("127.0.0.1", tracker.port),
        key="loopback",
        silent=True,
    )
    try:
        records = tmp_path / "records.json"
        cm = sparsecc.compile(
            "zoo:mlp",
            "layers.0.weight=block(16,1)@0.9",
            tune=1,
            records_path=records,
            rpc=f"127.0.0.1:{tracker.port}:loopback",
        )
        assert cm.tuning_trials == 3
        assert all(r["ms"] > 0 for r in next(iter(json.loads(records.read_text()).values())).values())
    finally:
        server.terminate()
        tracker.terminate()


def test_bad_rpc_address_is_one_clear_error():
    from sparsecc.backends.tvm.tuning import RpcConfig

    with pytest.raises(sparsecc.SparseccError, match="must look like HOST:PORT:KEY"):
        RpcConfig.parse("localhost:abc")
