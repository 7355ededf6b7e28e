"""The dense linear kernel (BSR with every block present) on odd shapes, and its cross builds."""

import re

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparsecc.backends.tvm.kernels.blocks import dense_as_blocks
from sparsecc.backends.tvm.kernels.rules import make_kernel
from sparsecc.backends.tvm.target import resolve_target
from tests.backends.tvm.kernel_checks import EM_AARCH64, aarch64_build, check, cuda_ptx, elf_machine
from tests.conftest import require
from tests.weights import encode

CPU = resolve_target("cpu")
RNG = np.random.default_rng(9)


def dense(out, inp):
    return RNG.standard_normal((out, inp)).astype(np.float32)


@pytest.mark.parametrize(
    ("out", "inp", "m"),
    [(1, 1, 1), (13, 7, 3), (6, 10, 31), (4, 33, 16), (40, 24, 17), (96, 80, 1), (250, 130, 129)],
)
def test_odd_shapes(out, inp, m):
    check(dense(out, inp), CPU, m=m, rng=RNG)


@pytest.mark.parametrize(("out", "inp"), [(768, 768), (768, 3072)])
def test_layer_shapes(out, inp):
    check(dense(out, inp), CPU, m=128, rng=RNG)
    check(dense(out, inp), CPU, m=5, bias=False, rng=RNG)


def test_dense_blocks_are_the_weight_exactly():
    for out, inp in ((48, 20), (13, 7), (6, 5), (250, 3)):
        w = dense(out, inp)
        blocks = dense_as_blocks(w)
        assert np.array_equal(blocks.to_dense(), w) and blocks.block[1] == 1
        assert blocks.nnz_blocks == out // blocks.block[0] * inp
    assert dense_as_blocks(dense(48, 20)).block == (8, 1)
    assert dense_as_blocks(dense(13, 7)).block == (1, 1)


def test_kernel_metadata():
    kernel = make_kernel(dense(48, 20), None, 10, CPU)
    assert kernel.name == "dense_gemm_x86" and kernel.flops == 2 * 10 * 48 * 20
    assert kernel.runs == "dense" and kernel.reason.startswith("GEMM micro-kernel")
    odd = make_kernel(dense(13, 7), None, 10, CPU)  # 13 outputs: no whole vector panel
    assert odd.name == "dense_1rows_x86" and "dense_cpu: out_features 13" in odd.reason


@pytest.mark.parametrize("m", [5, 8, 9, 31, 128, 197])
@pytest.mark.parametrize("out, inp", [(48, 20), (64, 32), (96, 48), (768, 768)])
def test_gemm_kernel_any_tokens(m, out, inp):
    """Tokens that 8 does not divide go through a zero-padded copy of X and a copy-out of Y."""
    kernel = make_kernel(dense(out, inp), None, m, CPU)
    assert kernel.name == "dense_gemm_x86"
    check(dense(out, inp), CPU, m=m, rng=RNG)


@pytest.mark.parametrize(
    "tiles", [{"MR": 8, "NV": 1}, {"MR": 4, "NV": 2}, {"MR": 2, "NV": 1}, {"MR": 1, "NV": 1}]
)
def test_gemm_tiles_are_tunable_without_changing_the_result(tiles):
    w = dense(64, 40)
    kernel = make_kernel(w, None, 16, CPU, tiles)
    assert kernel.tiles == tiles
    check(w, CPU, m=16, rng=RNG, tiles=tiles)


def test_gemm_refuses_tiles_that_do_not_fit():
    # AVX2 (8 lanes): the dense kernel takes 40 outputs (5 vectors), but 2 vectors (16) do not divide 40
    with pytest.raises(ValueError, match="dense tiles"):
        make_kernel(dense(40, 20), None, 16, resolve_target("x86_64"), {"MR": 8, "NV": 2})


def test_aarch64_build(tmp_path):
    asm, library = aarch64_build(dense(40, 24), 6, resolve_target("aarch64"), tmp_path)
    assert re.search(r"fmla\s+v\d+\.4s", asm)
    require(library is not None, "needs g++-aarch64-linux-gnu for the export half")
    assert elf_machine(library) == EM_AARCH64


@pytest.mark.requires_tool("nvcc", reason="needs nvcc (the CUDA toolkit) on PATH")
def test_cuda_build_compiles_to_ptx(monkeypatch):
    monkeypatch.setenv("TVM_CUDA_COMPILE_MODE", "nvcc")
    ptx = cuda_ptx(dense(13, 7), np.ones(13, np.float32), 3, resolve_target("cuda:sm_80"))
    assert ".target sm_80" in ptx and re.search(r"fma\.rn(\.ftz)?\.f32", ptx)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("out, inp", [(64, 32), (37, 48), (768, 768)])
def test_few_tokens_use_the_gemv_kernel(m, out, inp):
    w = RNG.standard_normal((out, inp)).astype(np.float32)
    kernel = make_kernel(w, None, m, CPU)
    assert kernel.name == "dense_gemv_x86" and kernel.tiles["OB"] * m <= 8
    check(w, CPU, m=m, rng=RNG)
    check(w, CPU, m=m, bias=False, rng=RNG)


def test_gemv_needs_whole_vectors_along_the_inputs():
    w = RNG.standard_normal((16, 20)).astype(np.float32)  # 20 inputs: whole vectors of neither 8 nor 16 lanes
    assert make_kernel(w, None, 1, CPU).name == "dense_gemm_x86"
    check(w, CPU, m=1, rng=RNG)


def test_one_token_through_one_row_blocks_runs_the_dense_gemv():
    """1x1 blocks at one token run the dense GEMV; CSR has decode kernels of its own on x86
    (`csr_bitmap_gemv` with AVX-512, `csr_gemv` elsewhere: tests/backends/tvm/test_kernels_decode.py)."""
    from sparsecc.ops import BsrWeight, CsrWeight

    w = RNG.standard_normal((64, 64)).astype(np.float32) * (RNG.random((64, 64)) < 0.1)
    blocks = encode(BsrWeight, w, (1, 1))
    assert make_kernel(blocks.weight, None, 1, CPU).name == "dense_gemv_x86"
    assert make_kernel(blocks.weight, None, 2, CPU).name != "dense_gemv_x86"  # 2+ tokens: sparse pays again
    check(blocks, CPU, m=1, rng=RNG)
    csr = encode(CsrWeight, w)
    assert make_kernel(csr.weight, None, 1, CPU).name in ("csr_bitmap_gemv_x86", "csr_gemv_x86")
    check(csr, CPU, m=1, rng=RNG)
