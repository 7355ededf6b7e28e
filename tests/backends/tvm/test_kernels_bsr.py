"""BSR linear kernels (x86 here; aarch64 and CUDA as builds) against numpy on odd cases."""

import re

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparsecc.backends.tvm.kernels.blocked_cpu import token_tile_choices
from sparsecc.backends.tvm.kernels.rules import make_kernel
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.ops import BsrWeight
from sparsecc.sparsity.masks import block_mask
from tests.backends.tvm.kernel_checks import EM_AARCH64, aarch64_build, check, cuda_ptx, elf_machine
from tests.conftest import require
from tests.weights import encode

CPU = resolve_target("cpu")
RNG = np.random.default_rng(5)


def pruned(out, inp, block, sparsity):
    w = RNG.standard_normal((out, inp)).astype(np.float32)
    return encode(BsrWeight, w * block_mask(w, block, sparsity), block)


@pytest.mark.parametrize("block", [(1, 1), (3, 5), (2, 8), (32, 1), (1, 32)])
def test_block_shapes_beyond_the_common_ones(block):
    out, inp = block[0] * 6, block[1] * 7
    check(pruned(out, inp, block, 0.6), CPU, m=19, rng=RNG)


@pytest.mark.parametrize("m", [1, 2, 15, 17, 130])
def test_token_counts_that_are_not_a_tile_multiple(m):
    check(pruned(64, 48, (16, 1), 0.7), CPU, m=m, rng=RNG)


def test_row_with_no_blocks_one_block_and_every_block():
    w = np.zeros((32, 40), np.float32)
    w[8:12, 0:4] = RNG.standard_normal((4, 4))  # block row 2: one block
    w[12:16] = RNG.standard_normal((4, 40))  # block row 3: every block
    weight = encode(BsrWeight, w, (4, 4))
    assert list(np.diff(weight.weight.row_ptr)) == [0, 0, 1, 10, 0, 0, 0, 0]
    check(weight, CPU, m=9, rng=RNG)
    check(weight, CPU, m=9, bias=False, rng=RNG)


def test_no_blocks_at_all_gives_the_bias_or_zeros():
    weight = encode(BsrWeight, np.zeros((48, 32), np.float32), (16, 1))
    assert weight.weight.nnz_blocks == 0
    check(weight, CPU, m=5, rng=RNG)
    check(weight, CPU, m=5, bias=False, rng=RNG)


def test_token_tiles_are_whole_vectors_dividing_the_padded_tokens():
    assert token_tile_choices(45, 16) == [16, 48] and token_tile_choices(128, 16) == [16, 32, 64, 128]
    assert token_tile_choices(45, 8) == [8, 16, 24, 48] and token_tile_choices(128, 8) == [8, 16, 32, 64]


@pytest.mark.parametrize("m", [45, 128])
def test_every_tile_the_tuner_may_choose_is_correct(m):
    for mt in token_tile_choices(m, CPU.lanes):
        check(pruned(64, 32, (8, 1), 0.5), CPU, m=m, rng=RNG, tiles={"MT": mt})


def test_a_tile_that_does_not_divide_the_tokens_is_refused():
    with pytest.raises(ValueError, match="MT must be one of"):
        make_kernel(pruned(64, 32, (8, 1), 0.5).weight, None, 45, CPU, {"MT": 32})


def test_layer_size_at_ninety_percent():
    check(pruned(3072, 768, (16, 1), 0.9), CPU, m=128, rng=RNG)


def test_kernel_metadata():
    weight = pruned(64, 32, (16, 1), 0.5).weight
    kernel = make_kernel(weight, None, 10, CPU)
    assert kernel.name == "bsr_16x1_x86"
    assert kernel.flops == 2 * 10 * weight.nnz_blocks * 16
    values, col, row_ptr, bias = kernel.constants
    # 16-row blocks run as stacks of four 4-row blocks: 4x the block indices, the same values
    assert values.shape == (weight.nnz_blocks * 4, 1, 4) and col.dtype == row_ptr.dtype == np.int32
    assert row_ptr.shape == (64 // 4 + 1,) and "stacks of 4" in kernel.reason
    assert np.array_equal(bias, np.zeros(64, np.float32))
    assert kernel.tiles["MT"] % CPU.lanes == 0


def test_aarch64_build_uses_neon_and_exports_an_aarch64_object(tmp_path):
    asm, library = aarch64_build(pruned(64, 32, (4, 4), 0.5).weight, 9, resolve_target("aarch64"), tmp_path)
    assert re.search(r"fmla\s+v\d+\.4s", asm)  # 128-bit NEON FMAs
    require(library is not None, "needs g++-aarch64-linux-gnu for the export half")
    assert elf_machine(library) == EM_AARCH64


@pytest.mark.requires_tool("nvcc", reason="needs nvcc (the CUDA toolkit) on PATH")
def test_cuda_build_compiles_to_ptx(monkeypatch):
    monkeypatch.setenv("TVM_CUDA_COMPILE_MODE", "nvcc")
    target = resolve_target("cuda:sm_90")
    for weight in (
        pruned(64, 32, (16, 1), 0.5).weight,
        BsrWeight.from_dense(np.zeros((32, 8), np.float32), (4, 4)),
    ):
        ptx = cuda_ptx(weight, np.ones(weight.shape[0], np.float32), 7, target)
        assert ".target sm_90" in ptx and ".entry" in ptx
    assert re.search(r"fma\.rn(\.ftz)?\.f32", cuda_ptx(pruned(64, 32, (16, 1), 0.5).weight, None, 7, target))
