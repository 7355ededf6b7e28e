"""Pruning methods: which entries a pattern drops from `W[out, in]`, and what the kept ones become.

The pattern says how many and in which shape (`patterns.py`); the method ranks the entries:
- magnitude: |w| (no data);
- wanda: |w_ij| * ||x_j||_2, compared within each output row (`wanda.py`);
- sparsegpt: layer-wise OBS reconstruction with H = X^T X, which also updates the kept
  weights (`sparsegpt.py`).
Data-driven methods get the Gram matrix `X^T X` of the layer's inputs over the calibration
data (float64 [in, in]; rows of X are tokens, or im2col patches for a Conv).
"""

from __future__ import annotations

import math

import numpy as np

from sparsecc.sparsity.methods import sparsegpt, wanda
from sparsecc.sparsity.patterns import Method, Pattern


def _magnitude(pattern: Pattern, w: np.ndarray, gram: np.ndarray | None) -> np.ndarray:
    return np.where(pattern.keep_mask(w), w, np.float32(0))


# method -> prune(pattern, W, gram) -> pruned W (float32, zeros where the pattern drops)
PRUNERS = {
    Method.MAGNITUDE: _magnitude,  # keep the largest |w| (by the pattern's own mask)
    Method.WANDA: wanda.prune,  # keep the largest |w| * ||x_j|| of each row
    Method.SPARSEGPT: sparsegpt.prune,  # OBS: drop the cheapest, move their error onto the kept
}


def prune_weight(pattern: Pattern, w: np.ndarray, gram: np.ndarray | None = None) -> np.ndarray:
    """W pruned to `pattern` by the pattern's method; `gram` (X^T X) is required by wanda and sparsegpt."""
    method = Method(pattern.method)
    if method.needs_data and gram is None:
        raise ValueError(f"method {method.value} needs the Gram matrix of the layer's inputs")
    return PRUNERS[method](pattern, w, gram)


# methods that only choose which entries to drop (the kept ones keep their values):
# method -> keep_mask(pattern, W, gram) -> bool mask of W's shape
MASKERS = {
    Method.MAGNITUDE: lambda pattern, w, gram: pattern.keep_mask(w),
    Method.WANDA: wanda.keep_mask,
}


def keep_mask(pattern: Pattern, w: np.ndarray, gram: np.ndarray | None = None) -> np.ndarray | None:
    """Which entries of W the pattern's method keeps, for methods that change no kept value; None
    for the others (sparsegpt: call `prune_weight`). None too when the pattern prunes nothing."""
    method = Method(pattern.method)
    if method not in MASKERS:
        return None
    if method.needs_data and gram is None:
        raise ValueError(f"method {method.value} needs the Gram matrix of the layer's inputs")
    return MASKERS[method](pattern, w, gram)


def reconstruction_error(w: np.ndarray, pruned: np.ndarray, gram: np.ndarray) -> float:
    """||W X^T - W' X^T||_F / ||W X^T||_F over the calibration rows X, from X^T X alone."""
    w64 = w.astype(np.float64)
    diff = w64 - pruned
    num = float(np.einsum("ij,ij->", diff @ gram, diff))
    den = float(np.einsum("ij,ij->", w64 @ gram, w64))
    return math.sqrt(max(num, 0.0) / den) if den > 0 else 0.0
