"""The spec's `attention:` section: per-head attention patterns (Sparse-vDiT).

attention:
  layout: {frames: 4, frame_tokens: 64, text: 16, text_first: false}
  heads: search            # or a head-pattern table (mapping), or the path of its YAML file
  eps: 0.25                # keep a head full when every mode's loss exceeds eps
  lambda: 0.5              # loss = error + lambda * relative cost
  modes: [diag, mdiag, vstripe, skip]
  window: 0                # diag: frames either side
  radius: 0                # mdiag: positions either side
  stripe_coverage: 0.9     # vstripe: keep the fewest columns holding this share of the attention
  max_stripes: 0.125       # vstripe: at most this fraction of the latent tokens
  costs: flops             # a mode's cost: its FLOP ratio, or `measured` (its kernel's time
                           # relative to dense attention, timed on the TVM CPU target at compile)
"""

from __future__ import annotations

import dataclasses
import os

from sparsecc.errors import SpecError
from sparsecc.sparsity.attention_patterns import HEAD_MODES, TokenLayout
from sparsecc.sparsity.head_table import HeadTable, layout_from_dict

SEARCH_MODES = tuple(m for m in HEAD_MODES if m not in ("full", "blocks"))
COST_SOURCES = ("flops", "measured")  # where a mode's relative cost comes from


@dataclasses.dataclass(frozen=True)
class AttentionSpec:
    layout: TokenLayout
    heads: str | HeadTable = "search"  # "search" or a table
    eps: float = 0.25
    lam: float = 0.5
    modes: tuple[str, ...] = SEARCH_MODES
    window: int = 0
    radius: int = 0
    stripe_coverage: float = 0.9
    max_stripes: float = 0.125
    costs: str = "flops"  # one of COST_SOURCES

    def __post_init__(self):
        if self.costs not in COST_SOURCES:
            raise SpecError(f"attention: costs must be one of {', '.join(COST_SOURCES)}, got {self.costs!r}")
        bad = [m for m in self.modes if m not in SEARCH_MODES]
        if bad or not self.modes:
            raise SpecError(
                f"attention: modes must be a non-empty list of {', '.join(SEARCH_MODES)}, got {list(self.modes)}"
            )
        if not (
            self.eps >= 0 and self.lam >= 0 and 0 < self.stripe_coverage <= 1 and 0 < self.max_stripes <= 1
        ):
            raise SpecError(
                "attention: eps and lambda must be >= 0, stripe_coverage and max_stripes in (0, 1]"
            )
        if self.window < 0 or self.radius < 0:
            raise SpecError("attention: window and radius must be >= 0")
        if isinstance(self.heads, str) and self.heads != "search":
            raise SpecError(f"attention: heads must be 'search', a table or a .yaml path, got {self.heads!r}")

    @classmethod
    def from_dict(cls, data) -> AttentionSpec:
        names = {
            "layout",
            "heads",
            "eps",
            "lambda",
            "modes",
            "window",
            "radius",
            "stripe_coverage",
            "max_stripes",
            "costs",
        }
        if not isinstance(data, dict):
            raise SpecError(f"spec: 'attention' must be a mapping with keys {', '.join(sorted(names))}")
        unknown = sorted(map(repr, set(data) - names))
        if unknown:
            raise SpecError(
                f"spec attention: unknown key {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}"
            )
        if "layout" not in data:
            raise SpecError("spec attention: 'layout' is missing (frames, frame_tokens, text, text_first)")
        layout = layout_from_dict(data["layout"])
        heads = data.get("heads", "search")
        if isinstance(heads, dict):
            heads = HeadTable.from_dict(heads, layout)
        elif isinstance(heads, (str, os.PathLike)) and str(heads) != "search":
            heads = HeadTable.from_file(heads, layout)
        try:
            numbers = {
                key: float(data[key]) for key in ("eps", "stripe_coverage", "max_stripes") if key in data
            } | {key: int(data[key]) for key in ("window", "radius") if key in data}
            if "lambda" in data:
                numbers["lam"] = float(data["lambda"])
        except (TypeError, ValueError):
            raise SpecError(
                "spec attention: eps, lambda, stripe_coverage, max_stripes, window and radius must be numbers"
            ) from None
        modes = data.get("modes", SEARCH_MODES)
        if isinstance(modes, str):
            modes = [m.strip() for m in modes.split(",")]
        costs = str(data.get("costs", "flops")).strip().lower()
        return cls(layout, heads, modes=tuple(modes), costs=costs, **numbers)

    def to_dict(self) -> dict:
        return {
            "layout": self.layout.to_dict(),
            "heads": self.heads if isinstance(self.heads, str) else self.heads.to_dict(),
            "eps": self.eps,
            "lambda": self.lam,
            "modes": list(self.modes),
            "window": self.window,
            "radius": self.radius,
            "stripe_coverage": self.stripe_coverage,
            "max_stripes": self.max_stripes,
            "costs": self.costs,
        }
