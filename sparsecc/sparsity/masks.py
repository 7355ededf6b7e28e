"""Deterministic magnitude pruning of a linear weight `W[out, in]` (torch layout).

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
    """Keep-mask over `scores` that drops the round(sparsity * size) lowest scores.

    Equal to dropping the first n of a stable ascending argsort: everything below the n-th
    smallest score goes, and of the scores equal to it the lowest positions go first."""
    flat = scores.reshape(-1)
    n_drop = int(round(sparsity * flat.size))
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


def unstructured_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep the largest |w|; exactly round(sparsity * w.size) entries are dropped."""
    return _drop_smallest(np.abs(w), sparsity)


def block_mask(w: np.ndarray, block: tuple[int, int], sparsity: float) -> np.ndarray:
    """Keep whole R x C blocks of W by block L2 norm; round(sparsity * n_blocks) are dropped."""
    out, inp = w.shape
    r, c = block
    tiles = w.reshape(out // r, r, inp // c, c)
    norms = np.sqrt(np.einsum("arbc,arbc->ab", tiles, tiles, dtype=np.float64))  # [out/R, in/C]
    keep_blocks = _drop_smallest(norms, sparsity)
    return np.repeat(np.repeat(keep_blocks, r, axis=0), c, axis=1)


def nm_mask(w: np.ndarray, n: int, m: int) -> np.ndarray:
    """In each group of M consecutive inputs of a row keep the N largest |w|."""
    out, inp = w.shape
    keep = np.empty((out, inp), dtype=bool)
    rows = max(1, _CHUNK_ELEMENTS // max(inp, 1))
    for start in range(0, out, rows):
        groups = np.abs(w[start : start + rows]).reshape(-1, inp // m, m)
        # Stable sort of -|w|: among equal magnitudes the lower position is kept.
        order = np.argsort(-groups, axis=2, kind="stable")[:, :, :n]
        chunk = np.zeros(groups.shape, dtype=bool)
        np.put_along_axis(chunk, order, True, axis=2)
        keep[start : start + rows] = chunk.reshape(-1, inp)
    return keep
