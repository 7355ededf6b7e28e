"""save/load: a fresh process without torch or onnx, and every refusal."""

import json
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import sparsecc
from sparsecc.backends.tvm.package import manifest_digest
from sparsecc.errors import ArtifactError

pytest.importorskip("tvm")


BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "onnx", "onnx_ir", "onnxscript", "onnxruntime"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
"""


def test_round_trip_in_a_fresh_process_without_torch_or_onnx(saved, tmp_path):
    path, x, expected = saved
    np.save(tmp_path / "x.npy", x)
    script = BLOCKER + textwrap.dedent(f"""
        import numpy as np, sparsecc
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("torch import was not blocked")
        cm = sparsecc.load({str(path)!r})
        y = cm(np.load({str(tmp_path / "x.npy")!r}))
        np.save({str(tmp_path / "y.npy")!r}, y)
        assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'onnx_ir')]
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


def other_arch(name, data):
    """Rewrite the manifest as if the artifact had been built for aarch64."""
    if name != "manifest.json":
        return data
    manifest = json.loads(data)
    manifest["target"]["arch"] = "aarch64"
    manifest["manifest_sha256"] = manifest_digest(manifest)  # as a build on aarch64 would have written it
    return json.dumps(manifest).encode()


def _rewrite(path, out, mutate):
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item.filename, mutate(item.filename, data))


def test_corrupted_truncated_and_foreign_artifacts(saved, tmp_path):
    path, _, _ = saved
    flipped = tmp_path / "flipped.sccpkg"
    _rewrite(path, flipped, lambda n, d: d[:-100] + bytes(100) if n == "model.so" else d)
    with pytest.raises(ArtifactError, match="corrupted: the sha256 of model.so does not match"):
        sparsecc.load(flipped)
    truncated = tmp_path / "truncated.sccpkg"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArtifactError, match="truncated or corrupted"):
        sparsecc.load(truncated)

    foreign = tmp_path / "foreign.sccpkg"
    _rewrite(path, foreign, other_arch)
    with pytest.raises(ArtifactError, match="built for aarch64, this machine is x86_64"):
        sparsecc.load(foreign)
    with pytest.raises(ArtifactError, match="does not exist"):
        sparsecc.load(tmp_path / "missing.sccpkg")


def test_save_is_atomic_on_failure(tmp_path):
    with pytest.raises(sparsecc.SparseccError, match="does not exist"):
        sparsecc.compile("zoo:mlp", "dense").save(tmp_path / "no-such-dir" / "x.sccpkg")
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_a_foreign_artifact_in_one_line(saved, tmp_path):
    path, _, _ = saved

    foreign = tmp_path / "foreign.sccpkg"
    _rewrite(path, foreign, other_arch)
    proc = subprocess.run(
        [sys.executable, "-m", "sparsecc.tools.cli", "run", str(foreign)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "aarch64" in proc.stderr
