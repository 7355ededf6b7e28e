import pytest

from sparsecc.sparsity import cost


def test_bsr_pays_at_high_sparsity_not_when_dense():
    assert cost.estimate_bsr((3072, 768), (16, 1), 0.1).pays
    dense_ish = cost.estimate_bsr((3072, 768), (16, 1), 0.8)
    assert not dense_ish.pays
    assert "needs >=" in dense_ish.why_not()


def test_csr_pays_only_when_very_sparse():
    assert cost.estimate_csr((768, 768), 0.05).pays
    assert not cost.estimate_csr((768, 768), 0.5).pays


def test_two_four_estimate_and_bytes():
    e = cost.estimate_nm((768, 768), 2, 4)
    assert e.speedup == pytest.approx(1.3)
    assert e.bytes_ratio == pytest.approx(0.625)
    assert e.label == "N:M 2:4"


def test_larger_blocks_are_more_efficient():
    assert cost.block_efficiency((1, 1)) < cost.block_efficiency((1, 4)) < cost.block_efficiency((4, 4))
