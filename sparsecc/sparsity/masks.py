"""Deterministic keep-masks of a linear weight `W[out, in]` (torch layout): by magnitude, or by
any per-entry importance score of W's shape (`methods/`: Wanda, SparseGPT).

Each function returns a boolean keep-mask of W's shape. Ties are broken by position, as a
stable sort would (the lower position is dropped first, or kept first within an N:M
group), so the same weight always gives the same mask on every machine. No function sorts
the whole weight: an int64 argsort holds twice a float32 weight's bytes, which is what a
big model's `sparsify` peaked on; a partition finds the threshold instead.
"""

from __future__ import annotations

import numpy as np

_CHUNK_ELEMENTS = 1 << 22  # N:M groups are ranked this many weights at a time (bounded temporaries)


def _drop_smallest(scores: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask over `scores` that drops the round(sparsity * size) lowest scores."""
    return drop_lowest(scores, int(round(sparsity * scores.size)))


def drop_lowest(scores: np.ndarray, n_drop: int) -> np.ndarray:
    """Keep-mask over `scores` that drops the `n_drop` lowest scores.

    Equal to dropping the first n of a stable ascending argsort: everything below the n-th
    smallest score goes, and of the scores equal to it the lowest positions go first."""
    flat = scores.reshape(-1)
    if n_drop <= 0:
        return np.ones(scores.shape, dtype=bool)
    if n_drop >= flat.size:
        return np.zeros(scores.shape, dtype=bool)
    threshold = np.partition(flat, n_drop - 1)[n_drop - 1]
    keep = flat > threshold
    ties = np.flatnonzero(flat == threshold)
    below = flat.size - int(np.count_nonzero(keep)) - ties.size  # strictly below the threshold
    keep[ties[n_drop - below :]] = True  # the ties past the first (n_drop - below) are kept
    return keep.reshape(scores.shape)


def spread_drops(sparsity: float, per_part: int, parts: int) -> np.ndarray:
    """How many of `per_part` entries each of `parts` equal parts drops, so that the total is exactly
    round(sparsity * per_part * parts) (as a whole-weight mask drops) and no two parts differ by more
    than one: the cumulative counts are rounded, not each part's."""
    cumulative = np.rint(sparsity * (per_part * np.arange(parts + 1))).astype(np.int64)
    return np.diff(cumulative)


def drop_lowest_per_row(scores: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask that drops the lowest scores of each row (Wanda compares weights per output)."""
    keep = np.empty(scores.shape, dtype=bool)
    for row, n_drop in enumerate(spread_drops(sparsity, scores.shape[1], scores.shape[0])):
        keep[row] = drop_lowest(scores[row], int(n_drop))
    return keep


def unstructured_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep the largest |w|; exactly round(sparsity * w.size) entries are dropped."""
    return _drop_smallest(np.abs(w), sparsity)


def block_mask(w: np.ndarray, block: tuple[int, int], sparsity: float) -> np.ndarray:
    """Keep whole R x C blocks of W by block L2 norm; round(sparsity * n_blocks) are dropped."""
    out, inp = w.shape
    r, c = block
    tiles = w.reshape(out // r, r, inp // c, c)
    norms = np.sqrt(np.einsum("arbc,arbc->ab", tiles, tiles, dtype=np.float64))  # [out/R, in/C]
    return _expand_blocks(_drop_smallest(norms, sparsity), block)


def block_mask_from_scores(scores: np.ndarray, block: tuple[int, int], sparsity: float) -> np.ndarray:
    """Keep whole R x C blocks by the sum of their entries' scores; round(sparsity * n_blocks) dropped."""
    out, inp = scores.shape
    r, c = block
    sums = scores.reshape(out // r, r, inp // c, c).sum(axis=(1, 3), dtype=np.float64)
    return _expand_blocks(_drop_smallest(sums, sparsity), block)


def _expand_blocks(keep_blocks: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    return np.repeat(np.repeat(keep_blocks, block[0], axis=0), block[1], axis=1)


def nm_mask(w: np.ndarray, n: int, m: int) -> np.ndarray:
    """In each group of M consecutive inputs of a row keep the N largest |w|."""
    return nm_mask_from_scores(w, n, m, np.abs)


def nm_mask_from_scores(scores: np.ndarray, n: int, m: int, transform=None) -> np.ndarray:
    """In each group of M consecutive columns of a row keep the N largest `transform(scores)`."""
    out, inp = scores.shape
    keep = np.empty((out, inp), dtype=bool)
    rows = max(1, _CHUNK_ELEMENTS // max(inp, 1))
    for start in range(0, out, rows):
        chunk = scores[start : start + rows]
        groups = (chunk if transform is None else transform(chunk)).reshape(-1, inp // m, m)
        # Stable sort of -score: among equal scores the lower position is kept.
        order = np.argsort(-groups, axis=2, kind="stable")[:, :, :n]
        kept = np.zeros(groups.shape, dtype=bool)
        np.put_along_axis(kept, order, True, axis=2)
        keep[start : start + rows] = kept.reshape(-1, inp)
    return keep
