"""Pruning methods against straightforward numpy references written here, and the patterns they must meet."""

import numpy as np
import pytest

from sparsecc.sparsity.detect import conforms_nm
from sparsecc.sparsity.methods import prune_weight, reconstruction_error, sparsegpt
from sparsecc.sparsity.patterns import parse_pattern

RNG = np.random.default_rng(0)
W = RNG.standard_normal((16, 32)).astype(np.float32)
# Correlated inputs of uneven scale, one input always zero: where the methods differ from magnitude.
X = (RNG.standard_normal((256, 32)) * RNG.uniform(0.1, 3.0, 32)).astype(np.float32)
X[:, :8] += X[:, 8:16]
X[:, 31] = 0
GRAM = X.astype(np.float64).T @ X


def wanda_reference(w, x, sparsity):
    """Per output row: drop the round(sparsity * in) lowest |w| * ||x_j|| (no ties in random data)."""
    scores = np.abs(w) * np.linalg.norm(x.astype(np.float64), axis=0)
    keep = np.ones(w.shape, dtype=bool)
    for row in range(w.shape[0]):
        keep[row, np.argsort(scores[row])[: round(sparsity * w.shape[1])]] = False
    return np.where(keep, w, 0)


def obs_reference(w, gram, choose_at, choose, percdamp=0.01):
    """OBS column by column with the textbook update and no lazy batching or Cholesky trick: for
    column i, with F = the columns i.. and G = inv(H[F, F]), pruning row r's w_ri moves
    -w_ri / G_00 * G[0, :] onto the row's columns F."""
    h = gram.copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1
    h += percdamp * np.mean(np.diag(h)) * np.eye(len(h))
    w = w.astype(np.float64).copy()
    cols = w.shape[1]
    d2 = np.array([np.linalg.inv(h[j:, j:])[0, 0] for j in range(cols)])  # [H_F^-1]_00 per column
    keep = np.ones(w.shape, dtype=bool)
    for i in range(cols):
        if i in choose_at:
            end = choose_at[i]
            keep[:, i:end] = choose(w[:, i:end] ** 2 / d2[i:end], i)
        g = np.linalg.inv(h[i:, i:])
        err = np.where(keep[:, i], 0.0, w[:, i])
        w[:, i:] -= np.outer(err / g[0, 0], g[0, :])
    return np.where(keep, w, 0.0), keep


def drop_lowest(scores, n):
    keep = np.ones(scores.shape, dtype=bool)
    keep.reshape(-1)[np.argsort(scores.reshape(-1), kind="stable")[:n]] = False
    return keep


def test_wanda_matches_the_reference_per_output_row():
    got = prune_weight(parse_pattern("unstructured@0.5/wanda"), W, GRAM)
    np.testing.assert_array_equal(got, wanda_reference(W, X, 0.5))
    assert all(np.count_nonzero(row) == 16 for row in got)


def test_wanda_nm_keeps_the_best_scores_of_each_group():
    got = prune_weight(parse_pattern("2:4/wanda"), W, GRAM)
    scores = (np.abs(W) * np.linalg.norm(X, axis=0)).reshape(16, 8, 4)
    want = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(want, np.argsort(-scores, axis=2)[:, :, :2], True, axis=2)
    np.testing.assert_array_equal(got != 0, want.reshape(16, 32))


@pytest.mark.parametrize("blocksize", [128, 8])
def test_sparsegpt_unstructured_matches_column_by_column_obs(blocksize):
    """Lazy batches of `blocksize` columns; the mask is chosen per block of that many columns."""
    sparsity, out = 0.6, W.shape[0]
    starts = {i: min(i + blocksize, 32) for i in range(0, 32, blocksize)}

    def choose(scores, start):
        before, after = (round(sparsity * out * c) for c in (start, start + scores.shape[1]))
        return drop_lowest(scores, after - before)

    want, keep = obs_reference(W, GRAM, starts, choose)
    got = sparsegpt.prune(parse_pattern(f"unstructured@{sparsity}/sparsegpt"), W, GRAM, blocksize=blocksize)
    np.testing.assert_array_equal(got != 0, keep)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_sparsegpt_nm_matches_column_by_column_obs():
    def choose(scores, start):
        keep = np.zeros(scores.shape, dtype=bool)
        np.put_along_axis(keep, np.argsort(-scores, axis=1)[:, :2], True, axis=1)
        return keep

    want, keep = obs_reference(W, GRAM, {i: i + 4 for i in range(0, 32, 4)}, choose)
    got = prune_weight(parse_pattern("2:4/sparsegpt"), W, GRAM)
    np.testing.assert_array_equal(got != 0, keep)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_sparsegpt_blocks_chosen_up_front_by_summed_score():
    def choose(scores, start):
        sums = scores.reshape(4, 4, 8, 4).sum(axis=(1, 3))
        return np.repeat(np.repeat(drop_lowest(sums, 16), 4, axis=0), 4, axis=1)

    want, keep = obs_reference(W, GRAM, {0: 32}, choose)
    got = prune_weight(parse_pattern("block(4,4)@0.5/sparsegpt"), W, GRAM)
    np.testing.assert_array_equal(got != 0, keep)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pattern", ["unstructured@0.7", "2:4", "block(4,4)@0.5"])
def test_data_methods_reconstruct_better_than_magnitude(pattern):
    errors = {
        method: reconstruction_error(W, prune_weight(parse_pattern(f"{pattern}/{method}"), W, GRAM), GRAM)
        for method in ("magnitude", "wanda", "sparsegpt")
    }
    assert errors["sparsegpt"] < errors["magnitude"] and errors["wanda"] < errors["magnitude"], errors
    assert errors["sparsegpt"] < 0.9 * errors["magnitude"], errors


def test_reconstruction_error_is_measured_on_the_data():
    pruned = prune_weight(parse_pattern("unstructured@0.5"), W, GRAM)
    want = np.linalg.norm(X @ W.T - X @ pruned.T) / np.linalg.norm(X @ W.T)
    assert reconstruction_error(W, pruned, GRAM) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.77, 0.9])
@pytest.mark.parametrize("shape", [(16, 32), (48, 200), (7, 300)])
def test_unstructured_counts_are_exact(method, sparsity, shape):
    w, gram = _layer(shape)
    got = prune_weight(parse_pattern(f"unstructured@{sparsity}/{method}"), w, gram)
    assert got.size - np.count_nonzero(got) == round(sparsity * got.size)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 8), (3, 6), (4, 4)])
def test_nm_every_group_keeps_n(method, n, m):
    w, gram = _layer((12, 48))
    got = prune_weight(parse_pattern(f"{n}:{m}/{method}"), w, gram)
    assert conforms_nm(got, n, m)
    assert np.all(np.count_nonzero(got.reshape(12, -1, m), axis=2) == n)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize(
    ("block", "sparsity"), [((16, 1), 0.5), ((16, 1), 0.8), ((4, 8), 0.7), ((1, 16), 0.9)]
)
def test_blocks_are_whole_and_counted(method, block, sparsity):
    w, gram = _layer((32, 64))
    got = prune_weight(parse_pattern(f"block({block[0]},{block[1]})@{sparsity}/{method}"), w, gram)
    r, c = block
    tiles = got.reshape(32 // r, r, 64 // c, c)
    present = np.any(tiles != 0, axis=(1, 3))
    assert np.all(np.all(tiles != 0, axis=(1, 3)) == present)  # a kept block is whole
    assert present.size - np.count_nonzero(present) == round(sparsity * present.size)


def _layer(shape):
    rng = np.random.default_rng(shape[0] * shape[1])
    x = rng.standard_normal((64, shape[1])) * rng.uniform(0.2, 2.0, shape[1])
    return rng.standard_normal(shape).astype(np.float32), x.T @ x
