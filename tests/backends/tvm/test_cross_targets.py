"""Builds for targets that do not run here: aarch64 (cross compiler) and CUDA (nvcc, no GPU)."""

import struct
import zipfile

import pytest

import sparsecc

pytest.importorskip("tvm")
SPEC = "layers.0.weight=block(16,1)@0.9; layers.1.weight=unstructured@0.95; layers.2.weight=2:4"
EM_AARCH64 = 183


@pytest.mark.requires_tool(
    "aarch64-linux-gnu-g++", reason="needs g++-aarch64-linux-gnu (scripts/test.sh installs it as root)"
)
def test_aarch64_artifact_is_an_aarch64_elf(tmp_path):
    cm = sparsecc.compile("zoo:mlp", SPEC, target="aarch64")
    # 2:4 has no lane-permute kernel on NEON; the token-vectorised one is slower than dense, so it runs dense
    kernels = {row["name"]: row["kernel"] for row in cm.report}
    assert kernels == {
        "layers.0.weight": "bsr_16x1_aarch64",
        "layers.1.weight": "csr_tiled_aarch64",
        "layers.2.weight": "dense_gemm_aarch64",
    }
    path = tmp_path / "mlp-a64.sccpkg"
    cm.save(path)
    library = zipfile.ZipFile(path).read("model.so")
    assert library[:4] == b"\x7fELF" and library[4] == 2  # 64-bit
    (machine,) = struct.unpack_from("<H", library, 18)
    assert machine == EM_AARCH64
    with pytest.raises(sparsecc.SparseccError, match="built for aarch64"):
        sparsecc.load(path)


@pytest.mark.requires_tool("nvcc", reason="needs nvcc (the CUDA toolkit) on PATH")
def test_cuda_artifact_holds_ptx_for_each_sparse_kernel(tmp_path):
    cm = sparsecc.compile("zoo:mlp", SPEC, target="cuda:sm_90")
    kernels = {row["kernel"] for row in cm.report}
    assert kernels == {"bsr_16x1_cuda", "csr_cuda", "nm_2_4_cuda"}
    path = tmp_path / "mlp-cuda.sccpkg"
    cm.save(path)
    ptx = zipfile.ZipFile(path).read("device.ptx").decode()
    assert ".target sm_90" in ptx
    entries = [line for line in ptx.splitlines() if ".entry" in line]
    for kernel in kernels:
        assert any(kernel in entry for entry in entries), (kernel, entries)
