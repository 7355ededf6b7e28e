"""`--calibration FILE.npz` on the CLI: methods that need data run with it; bad data is one line, exit 2."""

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from tests.onnx_text import linear_model
from tests.tools.test_cli_errors import assert_user_error, sparsecc


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "linear.onnx"
    w = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    ir.save(linear_model(w, batch="8"), path)
    return path


def test_compile_with_calibration_runs_sparsegpt(model_path, tmp_path):
    calib = tmp_path / "calib.npz"
    np.savez(calib, X=np.random.default_rng(1).standard_normal((4, 8, 64)).astype(np.float32))
    out = tmp_path / "out.onnx"
    proc = sparsecc(
        "compile", str(model_path), "--spec", "*=2:4/sparsegpt", "--backend", "onnxruntime",
        "--calibration", str(calib), "-o", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    w = onnx.numpy_helper.to_array(onnx.load(str(out)).graph.initializer[0])
    assert w.size and "N:M 2:4" in proc.stdout


def test_calibration_needed_but_not_given(model_path, tmp_path):
    proc = sparsecc(
        "compile", str(model_path), "--spec", "*=2:4/wanda", "--backend", "onnxruntime", "-o", str(tmp_path / "o")
    )  # fmt: skip
    assert_user_error(proc, "uses method wanda, which needs calibration data: pass --calibration FILE.npz")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ({"Z": np.zeros((2, 8, 64), np.float32)}, "holds ['Z'], the model's inputs are ['X']"),
        ({"X": np.zeros((2, 8, 63), np.float32)}, "has shape [8, 63], the model takes [8, 64]"),
        ({"X": np.zeros((2, 8, 64), np.float64)}, "is float64, the model takes float32"),
        (b"", "not an .npz archive"),
        (b"not a zip file at all", "not an .npz archive"),
    ],
    ids=["names", "shape", "dtype", "empty", "not-zip"],
)
def test_bad_calibration_file(model_path, tmp_path, content, needle):
    calib = tmp_path / "calib.npz"
    if isinstance(content, bytes):
        calib.write_bytes(content)
    else:
        np.savez(calib, **content)
    out = tmp_path / "out.onnx"
    proc = sparsecc(
        "compile", str(model_path), "--spec", "*=2:4/sparsegpt", "--backend", "onnxruntime",
        "--calibration", str(calib), "-o", str(out),
    )  # fmt: skip
    assert_user_error(proc, "calib", needle)
    assert not out.exists()
