"""The decode kernels (1-4 tokens): N:M with 2-bit positions, CSR as bitmaps (AVX-512) and with
uint16 columns (gathers), against numpy at M = 1..4 on even and ragged shapes; their compact
layouts; and which layers the rules give them."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TVM_NUM_THREADS", "2")
tvm = pytest.importorskip("tvm")

from sparsecc.backends.tvm.kernels.csr_bitmap_gemv_cpu import pack_bitmap  # noqa: E402
from sparsecc.backends.tvm.kernels.csr_gemv_cpu import pack_rows  # noqa: E402
from sparsecc.backends.tvm.kernels.nm_gemv_cpu import pack_positions  # noqa: E402
from sparsecc.backends.tvm.kernels.rules import make_kernel, plan  # noqa: E402
from sparsecc.backends.tvm.target import resolve_target  # noqa: E402
from sparsecc.ops import CsrFormat, CsrWeight, NmFormat, NmWeight  # noqa: E402
from sparsecc.sparsity.masks import nm_mask, unstructured_mask  # noqa: E402
from tests.backends.tvm.kernel_checks import AVX512_TARGET, check  # noqa: E402
from tests.weights import encode  # noqa: E402

CPU = resolve_target("cpu")
AVX2 = resolve_target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell", "num-cores": 2})
AVX512 = CPU.lanes == 16
needs_avx512 = pytest.mark.skipif(not AVX512, reason="this host has no AVX-512")
RNG = np.random.default_rng(11)


def random(out: int, inp: int) -> np.ndarray:
    return RNG.standard_normal((out, inp)).astype(np.float32)


def nm(out: int, inp: int, n: int = 2, m: int = 4) -> np.ndarray:
    w = random(out, inp)
    return w * nm_mask(w, n, m)


def unstructured(out: int, inp: int, sparsity: float) -> np.ndarray:
    w = random(out, inp)
    return w * unstructured_mask(w, sparsity)


def built(weight, m: int, target=CPU):
    return make_kernel(weight, None, m, target)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(64, 128), (100, 96), (40, 32)], ids=str)  # (out, in): 100, 40 ragged
def test_nm_2_4(shape, m):
    w = nm(*shape)
    assert built(NmWeight.from_dense(w, 2, 4), m).name == "nm_2_4_gemv_x86"
    check(encode(NmWeight, w, 2, 4), CPU, m=m)


@pytest.mark.parametrize("n,inp", [(1, 64), (3, 60), (4, 32)])  # in: whole words of 2-bit positions
def test_nm_other_n_of_4(n, inp):
    w = nm(48, inp, n, 4)
    assert built(NmWeight.from_dense(w, n, 4), 2).name == f"nm_{n}_4_gemv_x86"
    check(encode(NmWeight, w, n, 4), CPU, m=2)


def test_other_groups_and_partial_words_take_the_gemm_kernel():
    chosen = plan(NmFormat(2, 8), (64, 64), 1, CPU)
    assert chosen.rule.name == "nm_permute" and "nm_gemv: takes N:4" in chosen.reason
    chosen = plan(NmFormat(2, 4), (64, 48), 1, CPU)
    assert chosen.rule.name == "nm_permute" and "not a multiple of 32" in chosen.reason


def test_nm_empty_rows_groups_and_no_bias():
    w = nm(48, 64)
    w[3] = 0
    w[10, :32] = 0
    w[20, 1::4] = 0
    check(encode(NmWeight, w, 2, 4), CPU, m=1, bias=False)
    check(encode(NmWeight, w, 2, 4), AVX2, m=3)  # 8-lane permute, uint8 words


def test_nm_positions_take_two_bits():
    weight = NmWeight.from_dense(nm(32, 64), 2, 4)
    values, words = pack_positions(weight, 16, 2)
    assert words.dtype == np.int32 and words.nbytes * 16 == values.nbytes  # 2 bits per 32-bit value
    # row 5, word 1 (inputs 32-63), slot 3: bits 6-7
    assert (words[0, 0, 1, 5] >> 6) & 3 == weight.indices[5, 16 + 3]


@needs_avx512
@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("shape,sparsity", [((64, 128), 0.5), ((37, 48), 0.7), ((20, 32), 0.95)], ids=str)
def test_csr_bitmap(shape, sparsity, m):
    w = unstructured(*shape, sparsity)
    w[5] = 0  # an empty row
    assert built(CsrWeight.from_dense(w), m).name == "csr_bitmap_gemv_x86"
    check(encode(CsrWeight, w), CPU, m=m)


def test_csr_bitmap_bytes_and_order():
    w = unstructured(22, 64, 0.5)  # 22 rows: 6 groups of 4, the last two rows padding
    values, masks, row_start = pack_bitmap(CsrWeight.from_dense(w), 4)
    assert masks.shape == (6, 4, 4) and masks.nbytes * 8 == 24 * 64  # one bit per weight
    np.testing.assert_array_equal(values, w[w != 0])  # CSR's order: row by row
    assert row_start[5] == np.count_nonzero(w[:5]) and list(row_start[22:]) == [values.size] * 2
    row5 = w[5, 32:48]  # group 1, window 2, row 1 of the group
    assert masks[1, 2, 1] == sum(1 << i for i in np.flatnonzero(row5))
    assert not masks[5, :, 2:].any()


@pytest.mark.parametrize("m", [1, 4])
@pytest.mark.parametrize("shape", [(48, 37), (33, 300)], ids=str)  # in not a multiple of 16
def test_csr_gather(shape, m):
    w = unstructured(*shape, 0.6)
    assert built(CsrWeight.from_dense(w), m).name == "csr_gemv_x86"
    check(encode(CsrWeight, w), CPU, m=m)


@pytest.mark.parametrize("m", [1, 2])
def test_csr_gather_avx2(m):
    w = unstructured(64, 128, 0.5)
    assert built(CsrWeight.from_dense(w), m, AVX2).name == "csr_gemv_x86"
    check(encode(CsrWeight, w), AVX2, m=m)


def test_csr_columns_take_half_the_value_bytes():
    w = unstructured(16, 40, 0.5)
    values, columns, chunk_ptr = pack_rows(CsrWeight.from_dense(w), 8)
    assert columns.dtype == np.uint16 and 2 * columns.nbytes == values.nbytes
    start, end = chunk_ptr[3] * 8, chunk_ptr[4] * 8
    kept = np.flatnonzero(w[3])
    np.testing.assert_array_equal(columns[start : start + kept.size], kept)
    assert not values[start + kept.size : end].any()  # the padding adds nothing


def test_rules_give_decode_kernels_few_tokens_only():
    aarch64 = resolve_target("aarch64")
    for fmt, rule in ((NmFormat(2, 4), "nm_gemv"), (CsrFormat(), "csr_gemv")):
        assert plan(fmt, (2048, 2048), 1, AVX2).rule.name == rule
        assert plan(fmt, (2048, 2048), 4, AVX2).rule.name == rule
        assert plan(fmt, (2048, 2048), 5, AVX2).rule.name != rule
        assert f"{rule}: it takes 1-4 tokens" in plan(fmt, (2048, 2048), None, AVX2).reason
        assert "needs an x86" in plan(fmt, (2048, 2048), 1, aarch64).reason
    avx512 = resolve_target(AVX512_TARGET)
    assert plan(CsrFormat(), (2048, 2048), 1, avx512).rule.name == "csr_bitmap_gemv"
    odd = plan(CsrFormat(), (2048, 2040), 1, avx512)
    assert odd.rule.name == "csr_gemv" and "not a multiple of 16" in odd.reason
    wide = plan(CsrFormat(), (16, 70000), 1, AVX2)
    assert wide.rule.name != "csr_gemv" and "reach of uint16 columns" in wide.reason
