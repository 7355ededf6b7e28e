import numpy as np
import pytest

from sparsecc.sparsity.masks import block_mask, nm_mask, unstructured_mask


@pytest.fixture
def w():
    return np.random.default_rng(0).standard_normal((64, 96)).astype(np.float32)


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.95])
def test_unstructured_drops_exactly_the_smallest(w, sparsity):
    keep = unstructured_mask(w, sparsity)
    assert (~keep).sum() == round(sparsity * w.size)
    assert np.abs(w[keep]).min() >= np.abs(w[~keep]).max()


@pytest.mark.parametrize("block", [(1, 16), (16, 1), (4, 4), (8, 8)])
def test_block_mask_keeps_whole_blocks_by_l2_norm(w, block):
    keep = block_mask(w, block, 0.75)
    r, c = block
    tiles = keep.reshape(64 // r, r, 96 // c, c)
    assert np.all(tiles.all(axis=(1, 3)) == tiles.any(axis=(1, 3)))  # all-or-nothing per block
    kept_blocks = tiles.any(axis=(1, 3))
    assert (~kept_blocks).sum() == round(0.75 * kept_blocks.size)
    norms = np.sqrt((w.reshape(64 // r, r, 96 // c, c) ** 2).sum(axis=(1, 3)))
    assert norms[kept_blocks].min() >= norms[~kept_blocks].max()


@pytest.mark.parametrize(("n", "m"), [(1, 4), (2, 4), (2, 8), (4, 8)])
def test_nm_mask_keeps_n_largest_per_group(w, n, m):
    keep = nm_mask(w, n, m)
    groups = keep.reshape(64, 96 // m, m)
    assert np.all(groups.sum(axis=2) == n)
    mags = np.abs(w).reshape(64, 96 // m, m)
    kept_min = np.where(groups, mags, np.inf).min(axis=2)
    dropped_max = np.where(groups, -np.inf, mags).max(axis=2)
    assert np.all(kept_min >= dropped_max)


def test_masks_are_deterministic_under_ties():
    """Ties break by position (a stable sort), written out here rather than compared with a second call."""
    w = np.ones((4, 8), dtype=np.float32)  # every magnitude ties
    # N:M keeps the lower positions of each group
    np.testing.assert_array_equal(nm_mask(w, 2, 4), np.tile([True, True, False, False], (4, 2)))
    # unstructured and block masks drop the lowest positions first (row-major)
    np.testing.assert_array_equal(unstructured_mask(w, 0.5), np.arange(32).reshape(4, 8) >= 16)
    np.testing.assert_array_equal(unstructured_mask(-w, 0.25), np.arange(32).reshape(4, 8) >= 8)
    expected_blocks = np.repeat(
        np.repeat([[False, False, False, True], [True, True, True, True]], 2, 0), 2, 1
    )
    np.testing.assert_array_equal(block_mask(w, (2, 2), 0.375), expected_blocks)
