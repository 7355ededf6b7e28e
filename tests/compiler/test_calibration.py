"""Calibration data reaches the compile context checked, from an .npz file or from Python."""

import numpy as np
import pytest
import torch

from sparsecc.compiler import api
from sparsecc.compiler.calibration import load_calibration
from sparsecc.errors import InputError
from sparsecc.passes.context import Calibration

NAMES = ["input_ids", "attention_mask"]


def batch(seed):
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(0, 100, (1, 8)), "attention_mask": np.ones((1, 8), np.int64)}


def test_npz_batches_on_axis_zero(tmp_path):
    path = tmp_path / "calib.npz"
    batches = [batch(i) for i in range(3)]
    np.savez(path, **{n: np.stack([b[n] for b in batches]) for n in NAMES})
    calibration = load_calibration(str(path), NAMES)
    assert len(calibration) == 3
    np.testing.assert_array_equal(list(calibration)[2]["input_ids"], batches[2]["input_ids"])


def test_iterables_of_dicts_tuples_and_torch_tensors():
    dicts = load_calibration([batch(0), batch(1)], NAMES)
    tuples = load_calibration(
        [(torch.tensor(b["input_ids"]), b["attention_mask"]) for b in (batch(0), batch(1))], NAMES
    )
    for a, b in zip(dicts, tuples):
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
    assert load_calibration(None, NAMES) is None
    assert load_calibration(dicts, NAMES) is dicts


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ([{"input_ids": np.zeros((1, 8))}], "holds ['input_ids'], the model's inputs are"),
        ([(np.zeros((1, 8)),)], "has 1 arrays, the model takes"),
        ([], "holds no batches"),
        (42, "must be an .npz path or an iterable"),
        ("missing.npz", "cannot read calibration data"),
    ],
)
def test_bad_calibration_is_one_clear_error(source, needle):
    with pytest.raises(InputError) as info:
        load_calibration(source, NAMES)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_the_passes_see_it_in_the_context():
    x = np.random.default_rng(0).standard_normal((4, 32, 256)).astype(np.float32)
    result = api.sparsify_ir("zoo:mlp", "existing", calibration=[(b,) for b in x])
    assert isinstance(result.context.calibration, Calibration) and len(result.context.calibration) == 4
