"""Bad input: exit code 2, one line that says what is wrong, no traceback, no output file."""

import subprocess
import sys

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from tests.onnx_text import linear_model


def sparsecc(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "sparsecc.tools.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "linear.onnx"
    w = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    ir.save(linear_model(w), path)
    return path


def assert_user_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_malformed_spec(model_path, tmp_path):
    out = tmp_path / "out.onnx"
    assert_user_error(sparsecc("sparsify", str(model_path), "--spec", "*=3:2", "-o", str(out)), "3:2")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_block_that_does_not_divide(model_path, tmp_path):
    out = tmp_path / "out.onnx"
    assert_user_error(
        sparsecc("sparsify", str(model_path), "--spec", "block(5,16)@0.9", "-o", str(out)), "does not divide"
    )
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path):
    out = tmp_path / "out.onnx"
    assert_user_error(
        sparsecc("sparsify", str(tmp_path / "nope.onnx"), "--spec", "2:4", "-o", str(out)), "nope.onnx"
    )
    assert list(tmp_path.iterdir()) == []


def test_not_onnx_and_truncated(model_path, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a model")
    assert_user_error(sparsecc("inspect", str(junk)), "junk.onnx")
    truncated = tmp_path / "trunc.onnx"
    truncated.write_bytes(model_path.read_bytes()[: model_path.stat().st_size // 2])
    out = tmp_path / "out.onnx"
    assert_user_error(sparsecc("sparsify", str(truncated), "--spec", "2:4", "-o", str(out)), "trunc.onnx")
    assert not out.exists()


def test_unsupported_op(tmp_path):
    proto = onnx.parser.parse_model("""<ir_version: 10, opset_import: ["" : 23, "acme" : 1]>
        g (float[4] X) => (float[4] Y) { Y = acme.Frobnicate(X) }""")
    path = tmp_path / "custom.onnx"
    onnx.save(proto, path)
    out = tmp_path / "out.onnx"
    assert_user_error(sparsecc("sparsify", str(path), "--spec", "2:4", "-o", str(out)), "acme::Frobnicate")
    assert not out.exists()


def test_unknown_pass(model_path, tmp_path):
    out = tmp_path / "out.onnx"
    assert_user_error(sparsecc("opt", str(model_path), "-p", "canonicalize,frob", "-o", str(out)), "frob")
    assert not out.exists()


def test_debug_shows_traceback(model_path, tmp_path):
    proc = sparsecc("--debug", "sparsify", str(model_path), "--spec", "*=3:2", "-o", str(tmp_path / "o.onnx"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr
