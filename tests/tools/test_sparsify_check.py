"""`sparsecc sparsify`'s output check: the user's --input arrays, synthetic inputs only where they are
valid for the input model (else a one-line skip), the input model written unchanged when nothing gets
sparser, and a real disagreement still an error. The CLI runs in-process (`cli.main`)."""

import numpy as np
import onnx
import pytest

from sparsecc.backends.ort import session
from sparsecc.tools import cli
from sparsecc.tools.commands import sparsify
from sparsecc.tools.commands.common import load_source

RNG = np.random.default_rng(0)
W = RNG.standard_normal((64, 32)).astype(np.float32)  # X[4, 64] @ W: no zeros, so "existing" keeps it dense
PRUNE = "unstructured@0.9"  # a spec that changes the weight, so the check runs


def save(tmp_path, text: str, name: str = "model.onnx"):
    proto = onnx.parser.parse_model(text)
    proto.graph.initializer.append(onnx.numpy_helper.from_array(W, "W"))
    onnx.checker.check_model(proto)
    path = tmp_path / name
    onnx.save(proto, path)
    return path


def sparsecc(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def npy(tmp_path, name: str, array: np.ndarray) -> str:
    path = tmp_path / f"{name}.npy"
    np.save(path, array)
    return f"{name}={path}"


STRING_MODEL = """<ir_version: 10, opset_import: ["" : 23]>
g (float[4, 64] X, string[2] S) => (float[4, 32] Y, string[2] T) { Y = MatMul(X, W)  T = Identity(S) }"""

RESHAPE_MODEL = """<ir_version: 10, opset_import: ["" : 23]>
g (float[4, 64] X, int64[1] shape) => (float[4, 32] Y, float[?] Z) { Y = MatMul(X, W)  Z = Reshape(X, shape) }"""


def test_nothing_sparser_writes_the_input_model_unchanged(tmp_path, capsys):
    path = save(tmp_path, STRING_MODEL)  # old opset, string input: neither matters when nothing changes
    out = tmp_path / "out.onnx"
    code, stdout, _ = sparsecc(capsys, "sparsify", path, "--spec", "existing", "-o", out)
    assert code == 0
    assert out.read_bytes() == path.read_bytes()
    assert "the input model, unchanged (no weight was pruned or stored sparse)" in stdout


def test_a_string_input_skips_the_check_and_says_why(tmp_path, capsys):
    path, out = save(tmp_path, STRING_MODEL), tmp_path / "out.onnx"
    code, stdout, stderr = sparsecc(capsys, "sparsify", path, "--spec", PRUNE, "-o", out)
    assert code == 0 and out.exists()
    lines = [line for line in stderr.splitlines() if "check skipped" in line]
    assert lines == [
        "warning: output check skipped: sparsecc cannot make up input 'S' (a string tensor); "
        "give inputs with --input NAME=file.npy"
    ]
    assert "skipped" in stdout

    x, s = RNG.standard_normal((4, 64)).astype(np.float32), np.array(["a", "bc"])
    code, stdout, stderr = sparsecc(
        capsys,
        "sparsify",
        path,
        "--spec",
        PRUNE,
        "-i",
        npy(tmp_path, "X", x),
        "-i",
        npy(tmp_path, "S", s),
        "-o",
        out,
    )
    assert code == 0 and "check skipped" not in stderr
    assert "onnxruntime check" in stdout and "ok" in stdout
    y, t = session.run(str(out), {"X": x, "S": s})
    assert np.count_nonzero(y) == y.size and list(t) == ["a", "bc"]


def test_a_shape_input_that_synthetic_values_break_skips_the_check(tmp_path, capsys):
    """Reshape's target shape made up (0s and 1s) fails in onnxruntime on the input model itself."""
    path, out = save(tmp_path, RESHAPE_MODEL), tmp_path / "out.onnx"
    code, _, stderr = sparsecc(capsys, "sparsify", path, "--spec", PRUNE, "-o", out)
    assert code == 0 and out.exists()
    (line,) = [line for line in stderr.splitlines() if line.strip()]
    assert line.startswith("warning: output check skipped: the input model does not run on synthetic inputs")
    assert "Reshape" in line and "--input" in line and "sparsecc bug" not in line

    x = RNG.standard_normal((4, 64)).astype(np.float32)
    feeds = [npy(tmp_path, "X", x), npy(tmp_path, "shape", np.array([256], np.int64))]
    code, stdout, stderr = sparsecc(
        capsys, "sparsify", path, "--spec", PRUNE, "-i", feeds[0], "-i", feeds[1], "-o", out
    )
    assert code == 0 and "check skipped" not in stderr and "ok" in stdout
    y, z = session.run(str(out), {"X": x, "shape": np.array([256], np.int64)})
    np.testing.assert_array_equal(z, x.reshape(-1))  # the Reshape is untouched
    pruned = np.where(np.abs(W) >= np.quantile(np.abs(W), 0.9), W, 0)
    np.testing.assert_allclose(y, x @ pruned, rtol=1e-5, atol=1e-5)


def test_inputs_the_input_model_rejects_are_a_user_error(tmp_path, capsys):
    path, out = save(tmp_path, RESHAPE_MODEL), tmp_path / "out.onnx"
    x = npy(tmp_path, "X", RNG.standard_normal((4, 64)).astype(np.float32))
    bad = npy(tmp_path, "shape", np.array([3], np.int64))
    code, _, stderr = sparsecc(capsys, "sparsify", path, "--spec", PRUNE, "-i", x, "-i", bad, "-o", out)
    assert code == 2 and not out.exists()
    (line,) = [line for line in stderr.splitlines() if line.strip()]
    assert line.startswith("error: the input model does not run on the inputs given") and "Reshape" in line

    code, _, stderr = sparsecc(capsys, "sparsify", path, "--spec", PRUNE, "-i", x, "-o", out)
    assert code == 2 and "missing ['shape']" in stderr and not out.exists()
    code, _, stderr = sparsecc(capsys, "sparsify", path, "--spec", PRUNE, "-i", "X", "-o", out)
    assert code == 2 and "NAME=file.npy" in stderr
    (tmp_path / "empty.npy").write_bytes(b"")
    code, _, stderr = sparsecc(
        capsys, "sparsify", path, "--spec", PRUNE, "-i", f"X={tmp_path / 'empty.npy'}", "-o", out
    )
    assert code == 2 and "cannot read input 'X'" in stderr and not out.exists()


def test_nan_on_both_sides_of_the_check_agrees(tmp_path, capsys):
    """sqrt of a pruned linear's output: NaN wherever it is negative, in both models."""
    text = """<ir_version: 10, opset_import: ["" : 23]>
    g (float[4, 64] X) => (float[4, 32] Y) { T = MatMul(X, W)  Y = Sqrt(T) }"""
    path, out = save(tmp_path, text), tmp_path / "out.onnx"
    code, stdout, _ = sparsecc(capsys, "sparsify", path, "--spec", PRUNE, "-o", out)
    assert code == 0 and "ok" in stdout
    (y,) = session.run(str(out), session.random_inputs(onnx.load(path)))
    assert np.isnan(y).any() and np.isfinite(y).any()


def test_a_real_disagreement_is_still_an_error(tmp_path):
    """The check itself, given a 'sparsified' model whose weight is not the pruned one."""
    path = save(
        tmp_path,
        RESHAPE_MODEL.replace("int64[1] shape", "int64[1] shape_unused").replace("shape)", "shape_unused)"),
    )
    source = load_source(str(path), {"X": np.ones((4, 64), np.float32), "shape_unused": np.array([256])})
    wrong = onnx.load(path)
    wrong.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(W * 2, "W"))
    with pytest.raises(RuntimeError, match="disagrees with the pruned dense model"):
        sparsify.check_outputs(source, PRUNE, wrong, portable=False)
