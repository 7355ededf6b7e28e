"""Cost model: is a sparse format worth it for one linear layer?

Estimated speedup over the dense kernel = efficiency / density, where `efficiency`
is the fraction of dense FLOP throughput a format's kernel keeps per stored value
(index loads, gathers, short vectors). The constants are calibrated on sparsecc's
x86 TVM kernels against onnxruntime dense (bench/bench_layers.py, M=128, 2 threads,
50-95% sparsity; README "Performance"), rounded down: estimates should err towards
dense. A tuned build (`tune=N`) measures instead and keeps whichever kernel is faster.
"""

from __future__ import annotations

import dataclasses
import math

# Convert only when the estimate beats dense by this margin: estimates are rough.
MIN_SPEEDUP = 1.1

CSR_EFFICIENCY = 0.35  # measured 0.40-0.44 (90%), 0.40 at 50% on (768, 3072)
NM_EFFICIENCY = 0.65  # 2:4, lane-permute kernel: measured 0.76
# rows per block -> efficiency: the kernel vectorises over tokens and shares each X^T load
# across the R rows of a block, so tall blocks amortise loads best. Measured at (3072, 768):
# 16x1 0.80 (90%) / 0.98 (50%), 8x1 0.86 / 0.95, 4x4 0.83 / 0.91; 2 rows not measured.
BLOCK_ROWS_EFFICIENCY = ((8, 0.75), (4, 0.7), (2, 0.5))


def block_efficiency(block: tuple[int, int]) -> float:
    """Tall blocks (many outputs per block) run closest to dense speed; 1xC rows are CSR-like."""
    rows, cols = block
    for min_rows, efficiency in BLOCK_ROWS_EFFICIENCY:
        if rows >= min_rows:
            return efficiency
    return CSR_EFFICIENCY + (0.05 if cols >= 4 else 0.0)  # 1x16: measured 0.42-0.45


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A format's estimated speed and storage against the dense weight."""

    format: str  # "bsr", "nm", "csr"
    detail: str  # "1x16", "2:4", ""
    density: float  # stored values / dense values (incl. zeros stored inside blocks or N:M groups)
    speedup: float
    bytes_ratio: float  # sparse bytes / dense bytes

    @property
    def pays(self) -> bool:
        return self.speedup >= MIN_SPEEDUP and self.bytes_ratio < 1.0

    @property
    def label(self) -> str:
        return {"bsr": f"BSR {self.detail}", "nm": f"N:M {self.detail}", "csr": "CSR"}[self.format]

    def why_not(self) -> str:
        """One phrase that says why this format does not pay (empty when it does)."""
        if self.speedup < MIN_SPEEDUP:
            return (
                f"{self.label} at density {self.density:.2f} is estimated at {self.speedup:.2f}x dense "
                f"(needs >= {MIN_SPEEDUP}x)"
            )
        if self.bytes_ratio >= 1.0:
            return f"{self.label} would take {self.bytes_ratio:.2f}x the dense bytes"
        return ""


def _safe_div(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


def estimate_bsr(shape: tuple[int, int], block: tuple[int, int], block_density: float) -> Estimate:
    out, inp = shape
    r, c = block
    n_blocks = (out // r) * (inp // c)
    nnzb = block_density * n_blocks
    sparse_bytes = nnzb * r * c * 4 + nnzb * 4 + (out // r + 1) * 4
    return Estimate(
        "bsr",
        f"{r}x{c}",
        block_density,
        _safe_div(block_efficiency(block), block_density),
        sparse_bytes / (out * inp * 4),
    )


def estimate_nm(shape: tuple[int, int], n: int, m: int) -> Estimate:
    density = n / m
    # values (4 B) + one uint8 index per kept value
    return Estimate("nm", f"{n}:{m}", density, NM_EFFICIENCY / density, density * 5 / 4)


def estimate_csr(shape: tuple[int, int], density: float) -> Estimate:
    out, inp = shape
    nnz = density * out * inp
    sparse_bytes = nnz * 8 + (out + 1) * 4
    return Estimate("csr", "", density, _safe_div(CSR_EFFICIENCY, density), sparse_bytes / (out * inp * 4))
