"""SparseGPT (Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in
One-Shot", 2023): layer-wise OBS reconstruction with the inverse Hessian of H = X^T X.

Columns are visited left to right. Pruning w_ij costs w_ij^2 / [H^-1]_jj (with H^-1 restricted to
the columns not yet visited, i.e. the diagonal of the upper Cholesky factor of H^-1); its error
is moved onto the row's later columns. As in the paper: damping of 1% of the mean diagonal, lazy
updates in blocks of 128 columns, the unstructured mask chosen per block of 128 columns (exact
counts spread over the blocks), the N:M mask chosen per group when the sweep reaches it. Blocks
of the block pattern are chosen once, up front, by their summed score, then reconstructed.
"""

from __future__ import annotations

import numpy as np

from sparsecc.sparsity import masks

BLOCKSIZE = 128  # columns per lazy update (and per unstructured mask choice), as in the paper
PERCDAMP = 0.01  # damping: this fraction of the mean of H's diagonal


def inverse_hessian_factor(gram: np.ndarray, percdamp: float = PERCDAMP) -> np.ndarray:
    """The upper Cholesky factor U of (H + damp I)^-1 (H^-1 = U^T U); row j of U, divided by
    U_jj, is how an error in column j moves onto the later columns."""
    h = np.array(gram, dtype=np.float64)
    index = np.arange(len(h))
    dead = index[h[index, index] == 0]
    h[dead, dead] = 1.0  # an input that is always zero: its column is left alone (the paper zeroes
    # it, but zero on the calibration data need not be zero on other data)
    damp = percdamp * float(np.mean(h[index, index]))
    for _ in range(6):  # rounding can leave a nearly singular H indefinite: damp harder
        try:
            hinv = np.linalg.inv(np.linalg.cholesky(h + damp * np.eye(len(h))))
            return np.linalg.cholesky(hinv.T @ hinv).T
        except np.linalg.LinAlgError:
            damp *= 10
    raise np.linalg.LinAlgError("the Hessian X^T X stays singular after damping")


def _unstructured(pattern, out: int, cols: int, blocksize: int):
    """Per block of columns, the lowest scores of the block; the blocks' counts sum to the pattern's."""
    width = min(blocksize, cols)

    def choose(scores: np.ndarray, start: int) -> np.ndarray:
        before, after = (round(pattern.sparsity * (out * c)) for c in (start, start + scores.shape[1]))
        return masks.drop_lowest(scores, after - before)

    return width, choose


def _nm(pattern, out: int, cols: int, blocksize: int):
    """Per group of M columns, the N best scores of each row."""
    return pattern.m, lambda scores, start: masks.nm_mask_from_scores(scores, pattern.n, pattern.m)


def _blocks(pattern, out: int, cols: int, blocksize: int):
    """Once, over the whole weight: blocks by summed score."""
    return cols, lambda scores, start: pattern.keep_from_scores(scores)


# pattern kind -> (columns chosen together, choose(scores of those columns, first column) -> keep)
_CHOOSERS = {
    "unstructured": _unstructured,  # the paper's adaptive mask: per lazy block of 128 columns
    "nm": _nm,  # the paper's N:M: within each group, when the sweep reaches it
    "block": _blocks,  # blocks span rows and columns: fixed before the sweep
}


def prune(pattern, w: np.ndarray, gram: np.ndarray, blocksize: int = BLOCKSIZE) -> np.ndarray:
    """W pruned to `pattern`, the kept weights updated to make up for the dropped ones."""
    out, cols = w.shape
    work = w.astype(np.float64)
    u = inverse_hessian_factor(gram)
    d = np.diagonal(u).copy()
    group, choose = _CHOOSERS[pattern.kind](pattern, out, cols, blocksize)
    keep = np.ones((out, cols), dtype=bool)
    if group >= cols:
        keep = choose(work**2 / d**2, 0)
        block = blocksize
    else:
        block = max(group, blocksize // group * group)  # a lazy block holds whole groups
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1, u1 = work[:, i1:i2], u[i1:i2, i1:i2]  # w1 is a view: updated in place
        errors = np.zeros_like(w1)
        for i in range(i2 - i1):
            column = i1 + i
            if group < cols and column % group == 0:
                end = min(column + group, i2)
                keep[:, column:end] = choose(w1[:, i : i + end - column] ** 2 / d[column:end] ** 2, column)
            err = np.where(keep[:, column], 0.0, w1[:, i]) / u1[i, i]
            w1[:, i:] -= np.outer(err, u1[i, i:])
            errors[:, i] = err
        work[:, i2:] -= errors @ u[i1:i2, i2:]
    return np.where(keep, work, 0.0).astype(np.float32)
