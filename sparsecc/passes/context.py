"""State shared by the passes of one pipeline run: the spec and the per-weight report.

Passes stay `onnx_ir` passes (`call(model) -> PassResult`); what they learn about each
weight goes into `CompileContext.weights`, which the report and the backends read.
"""

from __future__ import annotations

import dataclasses
import logging

from sparsecc.sparsity.detect import WeightAnalysis

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class WeightReport:
    """One row of the report: what sparsecc saw and did for one linear weight."""

    name: str  # user-facing: torch parameter name or ONNX initializer name
    shape: tuple[int, int]  # W[out, in]
    density: float = 1.0  # after pruning
    detected: str = ""  # what analyze-sparsity found (before pruning)
    pattern: str = "-"  # the spec rule's pattern, "-" when no rule matched
    format: str = "dense"  # "dense", "BSR 1x16", "N:M 2:4", "CSR"
    reason: str = ""  # why this format (and why not sparse, when dense)
    est_speedup: float | None = None  # cost model, sparse kernel vs dense
    kernel: str | None = None  # filled by a native backend
    measured_speedup: float | None = None  # filled by a native backend when it measures

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class CompileContext:
    """The spec (None: analysis only) and what the passes recorded per weight name."""

    spec: object | None = None  # sparsecc.compiler.spec.SparsitySpec
    weights: dict[str, WeightReport] = dataclasses.field(default_factory=dict)
    analyses: dict[str, WeightAnalysis] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def record(self, name: str, shape: tuple[int, int]) -> WeightReport:
        if name not in self.weights:
            self.weights[name] = WeightReport(name, tuple(shape))
        return self.weights[name]

    def rule_for(self, name: str):
        return None if self.spec is None else self.spec.rule_for(name)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            logger.warning(message)
