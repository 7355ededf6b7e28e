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
from tests.conftest import require

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
    assert "tvm.relax" not in sys.modules  # the runtime library alone ran it
    np.save(sys.argv[3], out[0] if isinstance(out, tuple) else out)
    """
)


def sysroot_ready() -> bool:
    return shutil.which("qemu-aarch64") is not None and (SYSROOT / ".provisioned-v1").exists()


def one_token_mlp():
    """Batch 1 through the public API with explicit inputs: the GEMV kernels only M <= 4 selects."""
    from sparsecc.models.mlp import build_mlp

    module, inputs = build_mlp(batch=1)
    return module, MLP_SPEC, inputs


CASES = {  # name: (model, spec, example inputs), and the kernels the report must show
    "mlp": (lambda: ("zoo:mlp", MLP_SPEC, None), {"bsr_16x1", "csr_tiled", "dense_gemm"}),
    "bert": (lambda: ("zoo:bert", BERT_SPEC, None), {"bsr_16x1", "csr_tiled", "dense_gemm"}),
    "mlp-1-token": (one_token_mlp, {"bsr_16x1", "dense_gemv"}),
    # channel-blocked dense Convs (4 lanes), CSR Convs in NCHW between them, a blocked MaxPool
    "resnet": (
        lambda: ("zoo:resnet", "*stage1*conv*=unstructured@0.9; *stage1*shortcut*=unstructured@0.9", None),
        {"conv_csr", "conv_dense_blocked"},
    ),
}


@pytest.mark.requires_tool(
    "aarch64-linux-gnu-g++", reason="needs g++-aarch64-linux-gnu (scripts/test.sh installs it as root)"
)
# "mlp" is slow (~24 s) and expects the kernels "bert" also shows; "mlp-1-token" keeps the MLP itself
@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c == "mlp" else c for c in CASES]
)
def test_aarch64_artifact_runs_under_qemu_and_matches_onnxruntime(case, tmp_path):
    require(
        sysroot_ready(), "run scripts/aarch64_sysroot.sh (as root) to provision qemu and the arm64 sysroot"
    )
    build, expected_kernels = CASES[case]
    model, spec, example_inputs = build()
    cm = sparsecc.compile(model, spec, example_inputs, target="aarch64")
    kernels = [row["kernel"] for row in cm.report]
    assert all(k.endswith("_aarch64") for k in kernels), kernels
    assert expected_kernels <= {k.rsplit("_", 1)[0] for k in kernels}, kernels
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

    sparse = sparsify_ir(model, spec, example_inputs).model
    want = session.run(ir.serde.serialize_model(sparse), feeds)[0]
    assert got.shape == want.shape
    # float32 with another summation order than onnxruntime: 1e-4 of the largest output
    error = np.abs(got - want).max() / np.abs(want).max()
    print(f"{case}: max |aarch64 - onnxruntime| = {error:.1e} of max |onnxruntime|")
    assert error <= 1e-4, f"max |aarch64 - onnxruntime| is {error:.1e} of max |onnxruntime|"
