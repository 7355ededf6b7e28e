"""Every file a command writes gets the mode a new file gets from the user's umask, as any tool's."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sparsecc.compiler.onnx_save import save_onnx
from sparsecc.tools import cli
from tests.onnx_text import linear_model

pytest.importorskip("tvm")


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path) -> int:
    return path.stat().st_mode & 0o777


def test_written_files_follow_the_umask(tmp_path, umask):
    rng = np.random.default_rng(0)
    model = linear_model(rng.standard_normal((64, 32)).astype(np.float32), np.zeros(64, np.float32))
    source = tmp_path / "dense.onnx"
    save_onnx(model, source)
    np.save(tmp_path / "x.npy", rng.standard_normal((4, 32)).astype(np.float32))
    spec, feed = "*=unstructured@0.9", f"X={tmp_path / 'x.npy'}"
    commands = {
        "sparse.onnx": ["sparsify", str(source), "--spec", spec, "-o", str(tmp_path / "sparse.onnx")],
        "model.sccpkg": ["compile", str(source), "--spec", spec, "-o", str(tmp_path / "model.sccpkg")],
        "out.npz": ["run", str(tmp_path / "model.sccpkg"), "--input", feed, "-o", str(tmp_path / "out.npz")],
        "report.html": ["inspect", str(source), "--spec", spec, "--html", str(tmp_path / "report.html")],
    }
    for name, argv in commands.items():
        assert cli.main(argv) == 0, name
        assert _mode(tmp_path / name) == 0o666 & ~umask, name
    assert np.load(tmp_path / "out.npz")["Y"].shape == (4, 64)  # a real output, not an empty file
    # an output past the external-data threshold: both files
    save_onnx(model, tmp_path / "big.onnx", external_data_threshold=0)
    for name in ("big.onnx", "big.onnx.data"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name
