"""MetaSchedule over the blocked kernel's design space: real operands, records per target, correct results."""

import json

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparsecc.backends.tvm.kernels.blocked_cpu import token_tile_choices
from sparsecc.backends.tvm.kernels.rules import make_kernel
from sparsecc.backends.tvm.meta_schedule import MetaScheduleTuner, database_dir
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.ops import BsrWeight
from sparsecc.sparsity.masks import block_mask
from tests.backends.tvm.kernel_checks import AVX512_TARGET, check_kernel
from tests.weights import encode

CPU = resolve_target("cpu")


def bsr_weight(seed=0):
    w = np.random.default_rng(seed).standard_normal((256, 128)).astype(np.float32)
    return encode(BsrWeight, w * block_mask(w, (8, 1), 0.8), (8, 1))


def test_tuning_measures_each_schedule_once_and_the_best_is_correct(tmp_path):
    encoded, m = bsr_weight(), 128
    weight = encoded.weight
    bias = np.linspace(-1, 1, 256).astype(np.float32)
    kernel = make_kernel(weight, bias, m, CPU)
    tuner = MetaScheduleTuner(CPU, tmp_path, trials=16)
    tuned, ms = tuner.tune(kernel, m, weight.shape)
    assert tuner.trials_run == len(token_tile_choices(m, CPU.lanes)) == 4  # 16 asked, 4 distinct schedules
    assert tuned.tiles["MT"] in token_tile_choices(m, CPU.lanes)
    check_kernel(tuned, encoded, bias, m)

    database = database_dir(tmp_path, CPU)
    assert json.loads((database / "target.json").read_text()) == CPU.target_dict
    lines = (database / "database_tuning_record.json").read_text().splitlines()
    assert len(lines) == 4
    # the time returned is the best record's (lowest mean, as MetaSchedule ranks them) median, in ms
    run_secs = [np.array(json.loads(line)[1][1], float) for line in lines]
    best = min(run_secs, key=np.mean)
    assert ms == pytest.approx(float(np.median(best)) * 1000.0, rel=1e-6)
    assert 0 < ms < 50  # 1.7 MFLOP: microseconds here; 50 ms would be < 35 MFLOP/s

    again = MetaScheduleTuner(CPU, tmp_path, trials=16)
    retuned, _ = again.tune(make_kernel(weight, bias, m, CPU), m, weight.shape)
    assert again.trials_run == 0 and retuned.tiles == tuned.tiles


def test_another_target_gets_its_own_records(tmp_path):
    avx2, avx512 = resolve_target("x86_64"), resolve_target(AVX512_TARGET)
    assert database_dir(tmp_path, avx2) != database_dir(tmp_path, avx512)


def test_unreadable_records_are_one_clear_error(tmp_path):
    import sparsecc

    database = database_dir(tmp_path, CPU)
    database.mkdir(parents=True)
    (database / "database_workload.json").write_text("this is not json\n")
    with pytest.raises(sparsecc.SparseccError, match="unreadable .*delete that directory"):
        MetaScheduleTuner(CPU, tmp_path, trials=2)
