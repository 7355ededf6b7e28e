"""Cost model: is a sparse format worth it for one linear layer?

Estimated speedup over the dense kernel = efficiency / density, where `efficiency`
is the fraction of dense FLOP throughput a format's kernel keeps per stored value
(index loads, gathers, short vectors). The constants come from the kernel
measurements in ../shared/tvm-0.27.md (16x1 BSR at 90%: ~5x vs oneDNN; the issue's
targets: CSR 2x at 90%, 2:4 1.3x); backends may replace them with measurements.
"""

from __future__ import annotations

import dataclasses
import math

# Convert only when the estimate beats dense by this margin: estimates are rough.
MIN_SPEEDUP = 1.1

CSR_EFFICIENCY = 0.2
NM_EFFICIENCY = 0.65


def block_efficiency(block: tuple[int, int]) -> float:
    """Larger blocks amortise the index load over more FMAs; 1x1 behaves like CSR."""
    size = block[0] * block[1]
    return min(0.6, CSR_EFFICIENCY + 0.1 * math.log2(size)) if size > 1 else CSR_EFFICIENCY


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
