"""tune=N runs MetaSchedule (blocked kernels) or a grid search (N:M) once; a second compile reuses the records."""

import json

import numpy as np
import pytest

import sparsecc
from sparsecc.backends.ort import session

pytest.importorskip("tvm")
SPEC = "layers.0.weight=block(16,1)@0.9; layers.2.weight=2:4"


def meta_schedule_records(records) -> list[dict]:
    (database,) = [d for d in records.iterdir() if d.is_dir()]
    lines = (database / "database_tuning_record.json").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_second_compile_reuses_records(tmp_path):
    records = tmp_path / "records"
    # sparsified by bytes, so the file holds the 2:4 op that the x86 cost model would keep dense
    model = sparsecc.sparsify("zoo:mlp", SPEC, backend="onnxruntime")
    first = sparsecc.compile(model, "existing", tune=2, records_path=records)
    # MetaSchedule, 2 trials each: BSR 1024x256, dense 1024x1024, and the dense twins of both sparse
    # layers (measured so a sparse layer never runs slower than dense); 2:4: grid search, 2 candidates;
    # then every other function of the graph (MetaSchedule's own rules against ours)
    functions = first.tuning_trials - 2 * 5
    assert functions >= 1 and first.schedule_log.tuned
    assert all(("MetaSchedule" in note) for note in first.schedule_log.tuned.values())
    tuned = meta_schedule_records(records)
    assert len(tuned) == 8 + functions
    # seconds per call of kernels of at most 1024x1024x32 (67 MFLOP) and of small graph functions:
    # a positive time well under 0.1 s (a time in ms, or a zero left by a failed run, would fall outside)
    assert all(0 < min(run_secs) <= max(run_secs) < 0.1 for _, (_, run_secs, *_) in tuned)
    (grid,) = json.loads((records / "grid_search.json").read_text()).values()
    assert len(grid) == 1 and next(iter(grid.values()))["trials"] == 2
    second = sparsecc.compile(model, "existing", tune=2, records_path=records)
    assert second.tuning_trials == 0
    x = np.random.default_rng(0).standard_normal((32, 256)).astype(np.float32)
    np.testing.assert_allclose(second(x), first(x), rtol=1e-5, atol=1e-5)
    # onnxruntime on the pruned dense model (standard ONNX, the same spec), not another compile of ours
    (want,) = session.run(sparsecc.sparsify("zoo:mlp", SPEC, portable=True), {first.input_specs[0].name: x})
    np.testing.assert_allclose(first(x), want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    np.testing.assert_allclose(second(x), want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_records_path_must_be_a_directory(tmp_path):
    with pytest.raises(sparsecc.SparseccError, match="must be a directory"):
        sparsecc.compile("zoo:mlp", SPEC, tune=1, records_path=tmp_path / "records.json")


def test_measure_fills_the_reports_measured_speedup():
    cm = sparsecc.compile("zoo:mlp", "layers.0.weight=block(16,1)@0.95", measure=True)
    rows = {row["name"]: row for row in cm.report}
    # dense time / sparse time for a 1024x256 layer, 32 tokens, 95% of 16x1 blocks gone: a twentieth of
    # the FMAs. A ratio near or below 1 (or a swapped ratio) means the measurement or the kernel is broken;
    # 1.5x leaves room for a loaded 2-core machine (measured 2026-12-03, 2-core AVX-512 VM: 4.8x).
    assert rows["layers.0.weight"]["runs"] != "dense"
    assert rows["layers.0.weight"]["measured_speedup"] > 1.5
    assert rows["layers.1.weight"]["measured_speedup"] is None  # dense layers are not measured


def test_tuning_measures_through_an_rpc_tracker_on_loopback(tmp_path):
    # tornado (the tracker's event loop) is a declared dependency: without it this fails, not skips
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
        records = tmp_path / "records"
        cm = sparsecc.compile(
            "zoo:mlp",
            "layers.0.weight=block(16,1)@0.9",
            tune=1,
            records_path=records,
            rpc=f"127.0.0.1:{tracker.port}:loopback",
        )
        # one MetaSchedule trial per workload (BSR, its dense twin, two dense layers), run by the server
        assert cm.tuning_trials == 4
        assert len(meta_schedule_records(records)) == 4
    finally:
        server.terminate()
        tracker.terminate()


def test_bad_rpc_address_is_one_clear_error():
    from sparsecc.backends.tvm.tuning import RpcConfig

    with pytest.raises(sparsecc.SparseccError, match="must look like HOST:PORT:KEY"):
        RpcConfig.parse("localhost:abc")


def test_a_sparse_layer_that_measures_slower_than_dense_runs_dense(tmp_path):
    from sparsecc.backends.tvm.kernels.rules import make_kernel
    from sparsecc.backends.tvm.target import resolve_target
    from sparsecc.backends.tvm.tuning import KernelTuner
    from sparsecc.ops import CsrWeight
    from tests.backends.tvm.kernel_checks import check_kernel

    cpu = resolve_target("cpu")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((512, 512)).astype(np.float32)
    csr = CsrWeight.from_dense(w)  # no zeros: 1x1 blocks measured 2-3x slower than the dense kernel
    bias = np.ones(512, np.float32)
    tuner = KernelTuner(cpu, 2, tmp_path)
    kernel = tuner.tune(make_kernel(csr, bias, 64, cpu), csr, bias, 64)
    assert kernel.name == "dense_gemm_x86"
    check_kernel(kernel, w, bias, 64)  # the test's own array, not csr.to_dense()


def test_a_sparse_layer_far_faster_than_dense_keeps_its_sparse_kernel(tmp_path):
    """The other side of the comparison: 97% of 16x1 blocks gone on a 1024x1024 layer, 64 tokens.

    A thirtieth of the dense FMAs: no load on the machine hides that gap, so the tuner must keep the
    sparse kernel (a tuner that always picked dense, or compared the wrong way, fails here).
    """
    from sparsecc.backends.tvm.kernels.rules import make_kernel
    from sparsecc.backends.tvm.target import resolve_target
    from sparsecc.backends.tvm.tuning import KernelTuner
    from sparsecc.ops import BsrWeight
    from sparsecc.sparsity.masks import block_mask
    from tests.backends.tvm.kernel_checks import check_kernel

    cpu = resolve_target("cpu")
    w = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    w *= block_mask(w, (16, 1), 0.97)
    bsr = BsrWeight.from_dense(w, (16, 1))
    bias = np.ones(1024, np.float32)
    tuner = KernelTuner(cpu, 2, tmp_path)
    kernel = tuner.tune(make_kernel(bsr, bias, 64, cpu), bsr, bias, 64)
    assert kernel.runs != "dense" and kernel.name.startswith("bsr_16x1"), kernel.name
    assert "kept dense" not in kernel.reason and "tuning measured" not in kernel.reason
    check_kernel(kernel, w, bias, 64)


def test_attention_tiles_and_graph_functions_are_tuned_and_recorded(tmp_path):
    """tune=N reaches past the linear kernels: attention's tiles by grid search, the rest by MetaSchedule."""
    from sparsecc.backends.ort import session
    from tests.hf_bert import export_hf_bert

    path = tmp_path / "bert.onnx"
    feeds = export_hf_bert(path, "dynamo", 18)
    records = tmp_path / "records"
    cm = sparsecc.compile(str(path), "dense", example_inputs=feeds, tune=2, records_path=records)
    grid = json.loads((records / "grid_search.json").read_text())
    (by_workload,) = grid.values()
    attention = [record for key, record in by_workload.items() if key.startswith("attention|")]
    assert attention and all(record["trials"] == 2 for record in attention)
    assert any("layer_norm" in name for name in cm.schedule_log.tuned)
    want = session.run(str(path), feeds)[0]
    np.testing.assert_allclose(cm(**feeds), want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    again = sparsecc.compile(str(path), "dense", example_inputs=feeds, tune=2, records_path=records)
    assert again.tuning_trials == 0
