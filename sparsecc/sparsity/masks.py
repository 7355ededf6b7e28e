"""Deterministic magnitude pruning of a linear weight `W[out, in]` (torch layout).

Each function returns a boolean keep-mask of W's shape. Ties are broken by position
(a stable sort), so the same weight always gives the same mask on every machine.
"""

from __future__ import annotations

import numpy as np


def _drop_smallest(scores: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask over `scores` that drops the round(sparsity * size) lowest scores."""
    flat = scores.reshape(-1)
    n_drop = int(round(sparsity * flat.size))
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argsort(flat, kind="stable")[:n_drop]] = False
    return keep.reshape(scores.shape)


def unstructured_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep the largest |w|; exactly round(sparsity * w.size) entries are dropped."""
    return _drop_smallest(np.abs(w), sparsity)


def block_mask(w: np.ndarray, block: tuple[int, int], sparsity: float) -> np.ndarray:
    """Keep whole R x C blocks of W by block L2 norm; round(sparsity * n_blocks) are dropped."""
    out, inp = w.shape
    r, c = block
    tiles = w.reshape(out // r, r, inp // c, c).astype(np.float64)
    norms = np.sqrt(np.sum(tiles * tiles, axis=(1, 3)))  # [out/R, in/C]
    keep_blocks = _drop_smallest(norms, sparsity)
    return np.repeat(np.repeat(keep_blocks, r, axis=0), c, axis=1)


def nm_mask(w: np.ndarray, n: int, m: int) -> np.ndarray:
    """In each group of M consecutive inputs of a row keep the N largest |w|."""
    out, inp = w.shape
    groups = np.abs(w).reshape(out, inp // m, m)
    # Stable sort of -|w|: among equal magnitudes the lower position is kept.
    order = np.argsort(-groups, axis=2, kind="stable")[:, :, :n]
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, order, True, axis=2)
    return keep.reshape(out, inp)
