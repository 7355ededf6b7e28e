"""What the passes of one compile share: the spec, the target and its cost model, calibration
data, and the report they fill in.

Passes stay `onnx_ir` passes (`call(model) -> PassResult`); what they need beyond the IR
comes from the `CompileContext`, and what they learn about each weight goes into its
`WeightReport` rows, which the backends complete (the kernel that runs, and why).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

from sparsecc.passes.cost import CostModel
from sparsecc.sparsity.detect import WeightAnalysis
from sparsecc.sparsity.spec import Rule, SparsitySpec

logger = logging.getLogger(__name__)


class Target(Protocol):
    """What passes may know of the target a backend resolved (`backends/tvm/target.py` and others)."""

    name: str  # "cpu", "aarch64", "cuda:sm_90", "onnxruntime"
    family: str  # "x86", "aarch64", "cuda", "onnxruntime"


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Input batches for passes that need data, read one at a time: each pass over them (`iter`)
    reads them again from their source, so memory holds a batch, never the whole data.

    Each batch maps graph input names to arrays, checked against the graph's inputs as it is read
    (`compiler/calibration.py` makes these from an .npz file or an iterable)."""

    read: Callable[[], Iterator[dict[str, np.ndarray]]]  # a fresh pass over the batches
    label: str = "calibration data"  # where they come from, for messages
    count: int | None = None  # batches per pass, when known before reading them

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self.read()


@dataclasses.dataclass
class WeightReport:
    """One row of the report: what sparsecc saw and did for one linear weight."""

    name: str  # user-facing: torch parameter name or the module path the exporter recorded
    shape: tuple[int, int]  # W[out, in]
    initializer: str = ""  # the weight's initializer name in the file given
    density: float = 1.0  # after pruning
    detected: str = ""  # what analyze-sparsity found (before pruning)
    pattern: str = "-"  # the spec rule's pattern, "-" when no rule matched
    format: str = "dense"  # what the IR stores: "dense", "BSR 1x16", "N:M 2:4", "CSR"
    reason: str = ""  # why this format (and why not sparse, when dense)
    est_speedup: float | None = None  # the cost model's estimate, sparse kernel vs dense
    kernel: str | None = None  # filled by a backend: the kernel that runs this layer
    runs: str | None = None  # filled by a backend: the format that kernel computes with
    kernel_reason: str = ""  # filled by a backend: why that kernel (rules that declined, tuning)
    measured_speedup: float | None = None  # filled by a native backend when it measures
    method: str = ""  # how `prune` chose the entries to drop: "magnitude", "wanda", "sparsegpt"
    error: float | None = None  # with calibration data: ||WX - W'X|| / ||WX|| of the pruned W on it

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class AttentionGroup:
    """One row of the attention report: a group of heads of one layer that run one pattern
    (one `PatternAttention` node), or the heads of a layer that are skipped (not computed)."""

    layer: str  # the Attention node the heads came from
    layer_index: int  # its position among the model's attention layers
    mode: str  # "full", "diag", "mdiag", "vstripe", "blocks", or "skip"
    heads: tuple[int, ...]  # head indices in the model's original order
    density: float  # FLOP fraction of dense attention: the kept share of the score matrix (0: skip)
    node: str = ""  # the PatternAttention node ("" for skipped heads)
    pattern: dict = dataclasses.field(default_factory=dict)  # `HeadPattern.to_dict()` of the group
    # how the layer's heads were grouped: "in the weights" (no Gather at run time) or where a Gather runs
    reorder: str = ""
    kernel: str | None = None  # filled by a backend: the kernel that runs the group

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class CompileContext:
    """Everything one pipeline run shares; created by the compiler driver, read by passes and backends."""

    spec: SparsitySpec | None = None  # None: analysis only
    target: Target | None = None
    cost_model: CostModel | None = None  # the backend's, for `target`; dense-to-sparse requires it
    calibration: Calibration | None = None
    weights: dict[str, WeightReport] = dataclasses.field(default_factory=dict)
    analyses: dict[str, WeightAnalysis] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    attention: list[AttentionGroup] = dataclasses.field(default_factory=list)  # filled by fuse-heads
    # tokens per call where the IR leaves them symbolic and the backend builds one count (a decoder's
    # one-token step): what formats are priced at; None: the cost model's default
    tokens: int | None = None

    @property
    def report(self) -> list[WeightReport]:
        return list(self.weights.values())

    def record(self, name: str, shape: tuple[int, int], initializer: str = "") -> WeightReport:
        if name not in self.weights:
            self.weights[name] = WeightReport(name, tuple(shape), initializer=initializer)
        return self.weights[name]

    def rule_for(self, *names: str) -> Rule | None:
        return None if self.spec is None else self.spec.rule_for(*names)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            logger.warning(message)
