"""`sparsecc.sparsify`: model in, sparsified ONNX out (the front half of the compiler)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np
import onnx
import onnx_ir as ir

from sparsecc.compiler import frontend
from sparsecc.compiler.op_support import check_supported_ops
from sparsecc.compiler.pipeline import DEFAULT_PIPELINE, PORTABLE_PIPELINE, PassRun, Pipeline
from sparsecc.compiler.spec import SparsitySpec
from sparsecc.passes.context import CompileContext, WeightReport

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class SparsifyResult:
    """The sparsified IR and everything the passes learned on the way."""

    model: ir.Model
    spec: SparsitySpec
    report: list[WeightReport]
    example_inputs: dict[str, np.ndarray] | None
    passes: list[PassRun]
    warnings: list[str]


def sparsify_ir(
    model,
    spec,
    example_inputs=None,
    *,
    portable: bool = False,
    pipeline: str | None = None,
    verify: bool = False,
    after_pass: Callable[[str, ir.Model], None] | None = None,
) -> SparsifyResult:
    """Run the sparsity pipeline and return the IR (`portable`: pruned dense weights only)."""
    spec = SparsitySpec.parse(spec)
    ir_model, inputs = frontend.resolve_model(model, example_inputs)
    check_supported_ops(ir_model)
    context = CompileContext(spec=spec)
    text = pipeline or (PORTABLE_PIPELINE if portable else DEFAULT_PIPELINE)
    runs = Pipeline(text, verify=verify, after_pass=after_pass).run(ir_model, context)
    for rule in spec.unmatched_rules(list(context.weights)):
        context.warn(
            f"spec rule {rule.index} ('{rule.match}={rule.pattern.describe()}') matches no linear weight"
        )
    return SparsifyResult(ir_model, spec, list(context.weights.values()), inputs, runs, context.warnings)


def sparsify(model, spec, example_inputs=None, *, portable: bool = False) -> onnx.ModelProto:
    """Sparsify `model` (torch module, ONNX path/proto or "zoo:NAME") by `spec`; returns ONNX.

    The result runs in any ONNX runtime: sparse ops carry reference bodies as
    model-local functions. `portable=True` writes standard ONNX only (pruned dense weights).
    """
    return ir.serde.serialize_model(sparsify_ir(model, spec, example_inputs, portable=portable).model)
