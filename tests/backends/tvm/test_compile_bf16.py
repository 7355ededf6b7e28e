"""compile(..., dtype="bfloat16") end to end: bf16 kernels in the report, within tolerance of the
float32 build, saved and loaded; the CLI's --dtype; a bad dtype is one clear error."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tvm")

import sparsecc
from sparsecc.errors import SparseccError
from sparsecc.ops.precision import TOLERANCE, within_tolerance

SPEC = "layers.0.weight=block(16,1)@0.9; layers.2.weight=2:4"


@pytest.fixture(scope="module")
def builds():
    fp32 = sparsecc.compile("zoo:mlp", SPEC)
    bf16 = sparsecc.compile("zoo:mlp", SPEC, dtype="bf16")
    x = next(iter(fp32.example_inputs.values()))
    return fp32, bf16, x


def test_bf16_within_tolerance_of_float32(builds):
    fp32, bf16, x = builds
    want, got = fp32(x), bf16(x)
    assert got.dtype == np.float32 and got.shape == want.shape  # outputs stay the model's dtype
    ok, relative = within_tolerance(got, want, "bfloat16")
    assert ok, f"error {relative:.2e} of max |Y| > {TOLERANCE['bfloat16']}"
    assert relative > 0  # the weights were rounded


def test_report_says_what_runs_in_bf16(builds):
    _, bf16, _ = builds
    reasons = {row["name"]: row["kernel_reason"] for row in bf16.report}
    kernels = {row["name"]: row["kernel"] for row in bf16.report}
    assert kernels["layers.0.weight"].endswith("_bf16")  # BSR 16x1: bf16 values
    # 2:4 does not pay here (the cost model), so it runs the dense bf16 kernel
    assert "bfloat16 weights" in reasons["layers.2.weight"] and "_bf16_" in kernels["layers.2.weight"]
    assert bf16.manifest["dtype"] == "bfloat16"


def test_bf16_artifact_saves_and_loads(builds, tmp_path):
    _, bf16, x = builds
    path = tmp_path / "mlp_bf16.sccpkg"
    bf16.save(path)
    loaded = sparsecc.load(path)
    np.testing.assert_array_equal(loaded(x), bf16(x))


def test_bad_dtype_is_one_clear_error():
    with pytest.raises(SparseccError, match="unknown dtype 'int8'; valid dtypes: float32, bfloat16, float16"):
        sparsecc.compile("zoo:mlp", "dense", dtype="int8")
    with pytest.raises(SparseccError, match="needs the tvm backend"):
        sparsecc.compile("zoo:mlp", "dense", dtype="bfloat16", backend="onnxruntime")


def test_cli_dtype(tmp_path):
    command = [sys.executable, "-m", "sparsecc.tools.cli", "compile", "zoo:mlp", "--spec", "dense"]
    proc = subprocess.run(
        [*command, "--dtype", "half8", "-o", str(tmp_path / "x.sccpkg")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "valid dtypes" in proc.stderr + proc.stdout
    proc = subprocess.run(
        [*command, "--dtype", "bfloat16", "-o", str(tmp_path / "m.sccpkg")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert sparsecc.load(tmp_path / "m.sccpkg").manifest["dtype"] == "bfloat16"
