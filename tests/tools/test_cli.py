"""The CLI's happy paths: inspect (with HTML), sparsify, opt, demo."""

import subprocess
import sys

import onnx
import pytest


def cli(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "sparsecc.tools.cli", *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_inspect_with_spec_and_html(tmp_path):
    html = tmp_path / "report.html"
    out = cli(
        "inspect",
        "zoo:mlp",
        "--spec",
        "layers.0.weight=block(16,1)@0.9; layers.1.weight=2:4",
        "--html",
        str(html),
    )
    assert "layers.0.weight" in out and "BSR 16x1" in out and "N:M 2:4" in out
    assert "no spec rule matches" in out  # layers.2 stays dense and says why
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 3 and "layers.1.weight" in page


def test_sparsify_writes_a_checked_sparse_model(tmp_path):
    out = tmp_path / "mlp.onnx"
    stdout = cli("sparsify", "zoo:mlp", "--spec", "layers.0.weight=unstructured@0.95", "-o", str(out))
    assert "onnxruntime check" in stdout and "ok" in stdout
    ops = [n.op_type for n in onnx.load(out).graph.node if n.domain == "sparsecc"]
    assert ops == ["CsrMatMul"]


def test_sparsify_portable_has_no_sparse_ops(tmp_path):
    out = tmp_path / "mlp.onnx"
    cli("sparsify", "zoo:mlp", "--spec", "2:4", "--portable", "-o", str(out))
    model = onnx.load(out)
    assert not any(n.domain == "sparsecc" for n in model.graph.node) and not model.functions


def test_opt_prints_ir_after_each_pass(tmp_path):
    out = tmp_path / "o.onnx"
    stdout = cli(
        "opt", "zoo:mlp", "-p", "canonicalize,analyze-sparsity", "--print-ir-after-all", "-o", str(out)
    )
    assert stdout.count("IR Dump After") == 2 and "MatMul" in stdout
    assert "canonicalize" in stdout and out.exists()


@pytest.mark.slow
def test_demo_runs(tmp_path):
    import re

    stdout = cli("demo", "-o", str(tmp_path))
    assert "onnxruntime check" in stdout and "smaller" in stdout
    assert (tmp_path / "bert-sparse.onnx").exists()
    # the TVM half: sparse build vs onnxruntime on the pruned dense model, 1e-4 of the largest output
    error = re.search(r"max\s+relative\s+difference\s+(\d\.\de[+-]\d+)", stdout)
    assert error is not None, stdout[-2000:]
    assert float(error.group(1)) <= 1e-4, error.group(0)


def test_bench_profile_shows_where_the_time_goes():
    out = cli("bench", "zoo:mlp", "--spec", "layers.0.weight=block(16,1)@0.9", "--rounds", "1", "--profile")
    assert "TVM sparse" in out and "onnxruntime dense" in out
    table = out[out.index("time per function group") :]
    assert "bsr_16x1_x86" in table and "dense_gemm_x86" in table and "%" in table


def test_sparsify_a_model_whose_outputs_hold_nan(tmp_path):
    """onnx's own test model: sqrt of random inputs gives NaN on both sides of the output check."""
    import os

    source = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "pytorch-operator")
    out = tmp_path / "out.onnx"
    stdout = cli(
        "sparsify",
        os.path.join(source, "test_operator_sqrt", "model.onnx"),
        "--spec",
        "existing",
        "-o",
        str(out),
    )
    # no weight to sparsify: the input model is written as it was (test_sparsify_check.py checks NaN = NaN)
    assert "the input model, unchanged" in stdout
    assert onnx.load(str(out)).graph.node[0].op_type == "Sqrt"
