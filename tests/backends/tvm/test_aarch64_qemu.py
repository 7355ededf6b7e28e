"""An aarch64 artifact runs under qemu-user (arm64 python + TVM runtime) and matches onnxruntime.

The sysroot comes from scripts/aarch64_sysroot.sh, which scripts/test.sh runs as root (CI).
Emulation makes this a correctness check only; it says nothing about speed on real cores.
"""

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest

import sparsecc
from sparsecc.backends.ort import session
from sparsecc.compiler.api import sparsify_ir

pytest.importorskip("tvm")
REPO = Path(__file__).resolve().parents[3]
SYSROOT = Path(os.environ.get("SPARSECC_AARCH64_SYSROOT", REPO / ".cache" / "aarch64"))
MLP_SPEC = "layers.0.weight=block(16,1)@0.9; layers.1.weight=unstructured@0.95; layers.2.weight=2:4"
BERT_SPEC = "*intermediate*=block(16,1)@0.9; *attention.output*=unstructured@0.9; *attention.self*=2:4"
RUNNER = textwrap.dedent(
    """
    import platform, sys
    import numpy as np
    import sparsecc
    assert platform.machine() == "aarch64", platform.machine()
    model = sparsecc.load(sys.argv[1])
    out = model(**dict(np.load(sys.argv[2])))
    np.save(sys.argv[3], out[0] if isinstance(out, tuple) else out)
    """
)


def sysroot_ready() -> bool:
    return shutil.which("qemu-aarch64") is not None and (SYSROOT / ".provisioned-v1").exists()


@pytest.mark.skipif(
    not sysroot_ready() and os.environ.get("CI") != "true",
    reason="run scripts/aarch64_sysroot.sh (as root) to provision qemu and the arm64 sysroot",
)
@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None, reason="needs g++-aarch64-linux-gnu")
@pytest.mark.parametrize("model, spec", [("zoo:mlp", MLP_SPEC), ("zoo:bert", BERT_SPEC)])
def test_aarch64_artifact_runs_under_qemu_and_matches_onnxruntime(model, spec, tmp_path):
    assert sysroot_ready(), "CI must provision the aarch64 sysroot (scripts/aarch64_sysroot.sh)"
    cm = sparsecc.compile(model, spec, target="aarch64")
    kernels = {row["kernel"].rsplit("_", 1)[0] for row in cm.report}
    assert {"bsr_16x1", "csr"} <= kernels and all(
        k.endswith("_aarch64") for k in [r["kernel"] for r in cm.report]
    )
    cm.save(tmp_path / "model.sccpkg")
    feeds = {name: np.asarray(value) for name, value in cm.example_inputs.items()}
    np.savez(tmp_path / "inputs.npz", **feeds)
    (tmp_path / "run.py").write_text(RUNNER)

    env = {"PATH": os.environ.get("PATH", "")}
    command = [
        "qemu-aarch64",
        "-L",
        str(SYSROOT / "root"),
        "-E",
        f"PYTHONPATH={SYSROOT / 'site'}:{REPO}",
        "-E",
        "TVM_USE_RUNTIME_LIB=1",  # the runtime library only: no compiler, no torch, no onnx
        str(SYSROOT / "root" / "usr" / "bin" / "python3.11"),
        str(tmp_path / "run.py"),
        str(tmp_path / "model.sccpkg"),
        str(tmp_path / "inputs.npz"),
        str(tmp_path / "y.npy"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "y.npy")

    sparse = sparsify_ir(model, spec, None).model
    want = session.run(ir.serde.serialize_model(sparse), feeds)[0]
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
