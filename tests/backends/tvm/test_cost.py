"""The TVM cost model prices formats by the kernel rules of its target."""

import numpy as np
import pytest

from sparsecc.backends.tvm.cost import TvmCostModel
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.ops import BsrFormat, CsrFormat, NmFormat
from sparsecc.sparsity.masks import block_mask, nm_mask, unstructured_mask

RNG = np.random.default_rng(0)
X86 = TvmCostModel(resolve_target("x86_64"))
AARCH64 = TvmCostModel(resolve_target("aarch64"))


def weight(out, inp, keep=None):
    w = RNG.standard_normal((out, inp)).astype(np.float32)
    return w if keep is None else w * keep(w)


def test_bsr_pays_at_high_sparsity_not_when_dense():
    w = weight(3072, 768, lambda w: block_mask(w, (16, 1), 0.9))
    sparse = X86.estimate(BsrFormat((16, 1)), w, 128)
    assert sparse.pays and sparse.kernel == "bsr_16x1_x86" and sparse.speedup == pytest.approx(4.0, rel=1e-3)
    dense_ish = X86.estimate(
        BsrFormat((16, 1)), weight(3072, 768, lambda w: block_mask(w, (16, 1), 0.2)), 128
    )
    assert not dense_ish.pays and "needs >=" in dense_ish.reason


def test_csr_pays_only_when_very_sparse():
    assert X86.estimate(CsrFormat(), weight(768, 768, lambda w: unstructured_mask(w, 0.95)), 128).pays
    assert not X86.estimate(CsrFormat(), weight(768, 768, lambda w: unstructured_mask(w, 0.5)), 128).pays


def test_two_four_breaks_even_here_so_it_does_not_pay():
    e = X86.estimate(NmFormat(2, 4), weight(768, 768, lambda w: nm_mask(w, 2, 4)), 128)
    assert e.speedup == pytest.approx(1.0) and not e.pays and "needs >= 1.1x" in e.reason
    assert e.bytes_ratio == pytest.approx(0.625)
    assert e.label == "N:M 2:4" and e.kernel == "nm_2_4_x86"


def test_blocks_of_four_rows_and_more_are_the_most_efficient():
    w = weight(256, 256)  # dense: density 1, so the speedup is the efficiency itself
    speedups = [X86.estimate(BsrFormat(b), w, 128).speedup for b in ((1, 1), (1, 4), (4, 4), (16, 1))]
    assert speedups == sorted(speedups) and speedups[0] < speedups[2] == speedups[3]


def test_a_format_without_a_kernel_on_the_target_does_not_pay():
    """aarch64 has no N:M kernel: the estimate says it would run dense, and why."""
    e = AARCH64.estimate(NmFormat(2, 4), weight(768, 768, lambda w: nm_mask(w, 2, 4)), 128)
    assert not e.pays and e.kernel is None and e.speedup == 1.0
    assert "needs an x86 lane permute" in e.reason and "runs dense" in e.reason


def test_one_token_one_row_blocks_run_dense():
    w = weight(768, 768, lambda w: unstructured_mask(w, 0.95))
    assert X86.estimate(CsrFormat(), w, 128).pays
    assert X86.estimate(CsrFormat(), w, 1).pays  # the CSR decode kernel
    one = AARCH64.estimate(CsrFormat(), w, 1)
    assert not one.pays and "one token" in one.reason


def test_csr_at_half_density_pays_for_decode_in_the_bitmap_kernels_bytes():
    """The decode kernel streams values and 1 bit per weight (0.53x dense at 50%), not CSR's int32 columns."""
    avx512 = TvmCostModel(
        resolve_target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "sapphirerapids"})
    )
    w = weight(2048, 2048, lambda w: unstructured_mask(w, 0.5))
    decode = avx512.estimate(CsrFormat(), w, 1)
    assert decode.pays and decode.kernel == "csr_bitmap_gemv_x86"
    assert decode.bytes_ratio == pytest.approx(0.5 + 1 / 32, abs=0.01)
    assert not avx512.estimate(CsrFormat(), w, 128).pays  # prefill: the CSR GEMM does not pay at 50%
