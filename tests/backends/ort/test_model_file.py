"""Models past protobuf's 2 GB run and save through a file with external data (the threshold is
lowered here so a small model takes that path)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

import sparsecc
from sparsecc.backends.ort import backend as ort_backend
from tests.onnx_text import linear_model


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr(ort_backend, "FILE_BYTES", 1000)


def test_big_model_runs_from_a_file_and_saves_with_external_data(small_threshold, tmp_path):
    rng = np.random.default_rng(0)
    model = linear_model(rng.standard_normal((64, 48)).astype(np.float32))
    x = rng.standard_normal((4, 48)).astype(np.float32)
    compiled = sparsecc.compile(ir.serde.serialize_model(model), "*=2:4", backend="onnxruntime")
    assert compiled.file is not None and compiled.report[0]["format"] == "N:M 2:4"
    expected = ort.InferenceSession(str(compiled.file.path)).run(None, {"X": x})[0]
    np.testing.assert_array_equal(compiled(x), expected)
    pruned = model.graph.initializers["W"].const_value.numpy().copy()  # W^T [in, out]: 2:4 along `in`
    groups = pruned.T.reshape(64, 12, 4)
    keep = np.argsort(-np.abs(groups), axis=-1, kind="stable")[..., :2]
    mask = np.zeros_like(groups, dtype=bool)
    np.put_along_axis(mask, keep, True, axis=-1)
    np.testing.assert_allclose(expected, x @ (groups * mask).reshape(64, 48).T, rtol=1e-5, atol=1e-5)
    out = tmp_path / "big.onnx"
    compiled.save(out)
    assert (tmp_path / "big.onnx.data").stat().st_size > 0
    saved = onnx.load(str(out), load_external_data=False)
    locations = {e.value for t in saved.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"big.onnx.data"}
    del compiled  # the private folder goes; the saved copy stands alone
    again = ort.InferenceSession(str(out)).run(None, {"X": x})[0]
    np.testing.assert_array_equal(again, expected)
