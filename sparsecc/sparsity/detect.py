"""Find the sparsity that is already in a linear weight `W[out, in]`: structure facts, no prices.

Which storage format would pay for that structure is the backend's cost model's call
(see `passes/dense_to_sparse.py`); this module only measures.
"""

from __future__ import annotations

import dataclasses

import numpy as np

NM_CANDIDATES = ((1, 4), (2, 4), (2, 8), (4, 8))
BLOCK_CANDIDATES = (
    (1, 4),
    (1, 8),
    (1, 16),
    (1, 32),
    (4, 1),
    (8, 1),
    (16, 1),
    (2, 2),
    (4, 4),
    (8, 8),
    (16, 16),
)


@dataclasses.dataclass(frozen=True)
class BlockFit:
    """How well W is covered by R x C blocks: fraction of blocks present and their fill."""

    block: tuple[int, int]
    block_density: float  # present blocks / all blocks
    fill: float  # non-zeros / values stored in the present blocks


@dataclasses.dataclass(frozen=True)
class WeightAnalysis:
    """Everything analyze-sparsity learns about one weight."""

    shape: tuple[int, int]
    density: float
    nm: tuple[tuple[int, int], ...]  # N:M patterns the weight conforms to
    block_fits: tuple[BlockFit, ...]  # every candidate block shape that divides W
    zero_rows: int
    zero_cols: int

    @property
    def best_block(self) -> BlockFit | None:
        """The block shape whose blocks are fullest (the largest among ties)."""
        return max(self.block_fits, key=lambda f: (round(f.fill, 2), f.block[0] * f.block[1]), default=None)

    def describe(self) -> str:
        """Short human text for the report's "detected" column."""
        if self.density == 1.0:
            return "dense"
        if self.density == 0.0:
            return "all zero"
        parts = []
        # An N:M pattern is "the" structure only when the weight is about as dense as N/M;
        # a 95%-sparse weight conforms to 4:8 by accident.
        structural = [(n, m) for n, m in self.nm if self.density >= 0.9 * n / m]
        if structural:
            n, m = max(structural, key=lambda nm: nm[1] / nm[0])
            parts.append(f"{n}:{m}")
        fit = self.best_block
        if fit is not None and fit.fill >= 0.9 and fit.block_density < 1.0:
            r, c = fit.block
            parts.append(f"block {r}x{c} @ {1 - fit.block_density:.0%} (fill {fit.fill:.0%})")
        if not parts:
            parts.append(f"unstructured @ {1 - self.density:.0%}")
        return ", ".join(parts)


def conforms_nm(w: np.ndarray, n: int, m: int) -> bool:
    out, inp = w.shape
    if inp % m:
        return False
    return bool(np.all(np.count_nonzero(w.reshape(out, inp // m, m), axis=2) <= n))


def block_fit(w: np.ndarray, block: tuple[int, int], nnz: int | None = None) -> BlockFit:
    out, inp = w.shape
    r, c = block
    nnz = int(np.count_nonzero(w)) if nnz is None else nnz
    present = np.any(w.reshape(out // r, r, inp // c, c) != 0, axis=(1, 3))
    n_present = int(present.sum())
    return BlockFit(block, n_present / present.size, nnz / (n_present * r * c) if n_present else 1.0)


def analyze_weight(w: np.ndarray) -> WeightAnalysis:
    """Density, N:M conformance, the fit of every candidate block shape, empty rows and columns."""
    out, inp = w.shape
    nonzero = w != 0
    nnz = int(nonzero.sum())
    fits = tuple(block_fit(w, b, nnz) for b in BLOCK_CANDIDATES if out % b[0] == 0 and inp % b[1] == 0)
    return WeightAnalysis(
        shape=(out, inp),
        density=nnz / w.size,
        nm=tuple(p for p in NM_CANDIDATES if conforms_nm(w, *p)),
        block_fits=fits,
        zero_rows=int(np.sum(~nonzero.any(axis=1))),
        zero_cols=int(np.sum(~nonzero.any(axis=0))),
    )
