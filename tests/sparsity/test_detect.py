import numpy as np
import pytest

from sparsecc.sparsity.detect import analyze_weight, conforms_nm
from sparsecc.sparsity.masks import block_mask, nm_mask, unstructured_mask


@pytest.fixture
def w():
    return np.random.default_rng(1).standard_normal((256, 128)).astype(np.float32)


def test_block_1x16_at_90_is_found(w):
    a = analyze_weight(w * block_mask(w, (1, 16), 0.9))
    assert a.best_block.block == (1, 16)
    assert a.best_block.fill == 1.0
    assert a.best_block.block_density == pytest.approx(0.1, abs=1e-3)
    assert a.describe() == "block 1x16 @ 90% (fill 100%)"
    assert {f.block for f in a.block_fits} >= {(1, 16), (16, 1), (4, 4)}


def test_two_four_is_found(w):
    a = analyze_weight(w * nm_mask(w, 2, 4))
    assert (2, 4) in a.nm and (4, 8) in a.nm and (1, 4) not in a.nm
    assert a.describe() == "2:4"
    assert a.density == pytest.approx(0.5)


def test_unstructured_picks_csr_and_reports_zero_rows(w):
    pruned = w * unstructured_mask(w, 0.95)
    pruned[3] = 0
    a = analyze_weight(pruned)
    assert a.zero_rows >= 1
    assert a.describe().startswith("unstructured @ 9")


def test_dense_and_all_zero(w):
    dense = analyze_weight(w)
    assert dense.describe() == "dense" and dense.density == 1.0
    zero = analyze_weight(np.zeros_like(w))
    assert zero.describe() == "all zero" and zero.zero_rows == 256 and zero.zero_cols == 128


def test_conforms_nm_counts_per_group():
    w = np.array([[1, 1, 0, 0, 1, 0, 1, 1]], dtype=np.float32)
    assert not conforms_nm(w, 2, 4)  # second group holds 3
    assert conforms_nm(w, 3, 4)
    assert not conforms_nm(w, 2, 3)  # 8 inputs are not groups of 3
