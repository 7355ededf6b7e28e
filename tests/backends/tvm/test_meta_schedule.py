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

CPU = resolve_target("cpu")


def bsr_weight(seed=0):
    w = np.random.default_rng(seed).standard_normal((256, 128)).astype(np.float32)
    return BsrWeight.from_dense(w * block_mask(w, (8, 1), 0.8), (8, 1))


def test_tuning_measures_each_schedule_once_and_the_best_is_correct(tmp_path):
    weight, m = bsr_weight(), 128
    bias = np.linspace(-1, 1, 256).astype(np.float32)
    kernel = make_kernel(weight, bias, m, CPU)
    tuner = MetaScheduleTuner(CPU, tmp_path, trials=16)
    tuned, ms = tuner.tune(kernel, m, weight.shape)
    assert tuner.trials_run == len(token_tile_choices(m, CPU.lanes)) == 4  # 16 asked, 4 distinct schedules
    assert ms > 0 and tuned.tiles["MT"] in token_tile_choices(m, CPU.lanes)
    check_kernel(tuned, weight, bias, m)

    database = database_dir(tmp_path, CPU)
    assert json.loads((database / "target.json").read_text()) == CPU.target_dict
    assert len((database / "database_tuning_record.json").read_text().splitlines()) == 4

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
