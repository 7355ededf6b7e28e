"""Find the sparsity that is already in a linear weight `W[out, in]`."""

from __future__ import annotations

import dataclasses

import numpy as np

from sparsecc.sparsity import cost

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
    best_block: BlockFit | None  # the block shape whose blocks are fullest (largest among ties)
    zero_rows: int
    zero_cols: int
    best: cost.Estimate | None  # the best format for `existing` (None when nothing pays)
    candidates: tuple[cost.Estimate, ...]

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


def block_fit(w: np.ndarray, block: tuple[int, int], nnz: int) -> BlockFit:
    out, inp = w.shape
    r, c = block
    present = np.any(w.reshape(out // r, r, inp // c, c) != 0, axis=(1, 3))
    n_present = int(present.sum())
    return BlockFit(block, n_present / present.size, nnz / (n_present * r * c) if n_present else 1.0)


def analyze_weight(w: np.ndarray) -> WeightAnalysis:
    """Density, N:M conformance, best block shape and the best format by the cost model."""
    out, inp = w.shape
    nonzero = w != 0
    nnz = int(nonzero.sum())
    density = nnz / w.size
    nm = tuple(p for p in NM_CANDIDATES if conforms_nm(w, *p))
    candidates = [cost.estimate_csr(w.shape, density)]
    candidates += [cost.estimate_nm(w.shape, n, m) for n, m in nm]
    fits = [block_fit(w, b, nnz) for b in BLOCK_CANDIDATES if out % b[0] == 0 and inp % b[1] == 0]
    block_estimates = {f.block: cost.estimate_bsr(w.shape, f.block, f.block_density) for f in fits}
    candidates += block_estimates.values()
    # The block that describes the weight: the fullest blocks, then the largest of those.
    best_block = max(fits, key=lambda f: (round(f.fill, 2), f.block[0] * f.block[1]), default=None)
    paying = [e for e in candidates if e.pays]
    return WeightAnalysis(
        shape=(out, inp),
        density=density,
        nm=nm,
        best_block=best_block,
        zero_rows=int(np.sum(~nonzero.any(axis=1))),
        zero_cols=int(np.sum(~nonzero.any(axis=0))),
        best=max(paying, key=lambda e: (round(e.speedup, 6), -e.bytes_ratio), default=None),
        candidates=tuple(candidates),
    )
