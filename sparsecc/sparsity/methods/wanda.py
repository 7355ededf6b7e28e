"""Wanda (Sun et al., "A Simple and Effective Pruning Approach for LLMs", 2023).

The score of w_ij is |w_ij| * ||x_j||_2, the norm of input j over the calibration data; as
in the paper, unstructured sparsity is met per output row; N:M keeps the N best scores of each
group, and blocks compete by their summed score. The kept weights keep their values.
"""

from __future__ import annotations

import numpy as np


def scores(w: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """|W| * ||X_j||_2 (the norms are the square roots of X^T X's diagonal)."""
    norms = np.sqrt(np.maximum(np.diagonal(gram), 0.0)).astype(np.float32)
    return np.abs(w) * norms[None, :]


def keep_mask(pattern, w: np.ndarray, gram: np.ndarray) -> np.ndarray:
    return pattern.keep_from_scores(scores(w, gram), per_row=True)


def prune(pattern, w: np.ndarray, gram: np.ndarray) -> np.ndarray:
    return np.where(keep_mask(pattern, w, gram), w, np.float32(0))
