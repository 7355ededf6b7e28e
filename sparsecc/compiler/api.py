"""The compiler driver: `sparsify` (model in, sparsified ONNX out) and `compile` (model in, runnable model out).

Read top to bottom, a compile is:
  1. backend and target  the backend resolves the target and supplies its cost model
  2. frontend            torch module / ONNX file / zoo model -> onnx_ir.Model, names tagged
  3. pass pipeline       canonicalize, analyze-sparsity, prune, dense-to-sparse, cleanup
  4. backend.build       the sparsified IR -> a compiled model with its report
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from sparsecc import backends
from sparsecc.backends.base import BuildRequest
from sparsecc.compiler import frontends
from sparsecc.compiler.calibration import load_calibration
from sparsecc.compiler.frontends import inputs
from sparsecc.compiler.frontends.decode_step import DecodeStep, decode_step
from sparsecc.compiler.op_support import check_supported_ops
from sparsecc.compiler.pipeline import PassRun, Pipeline, pipeline_for
from sparsecc.errors import SparseccError
from sparsecc.ops.precision import parse_dtype
from sparsecc.passes.context import CompileContext, WeightReport
from sparsecc.sparsity.spec import SparsitySpec

logger = logging.getLogger(__name__)

WEIGHT_PASSES = ("prune", "dense-to-sparse")  # the passes that change weights (the rest reorganise)


@dataclasses.dataclass
class SparsifyResult:
    """The sparsified IR and everything the passes learned on the way."""

    model: ir.Model
    context: CompileContext
    example_inputs: dict[str, np.ndarray] | None
    passes: list[PassRun]
    decode_step: DecodeStep | None = None  # what a static-shape backend builds of a KV-cache decoder

    @property
    def spec(self) -> SparsitySpec:
        return self.context.spec

    @property
    def report(self) -> list[WeightReport]:
        return self.context.report

    @property
    def warnings(self) -> list[str]:
        return self.context.warnings

    @property
    def changed_weights(self) -> bool:
        """Whether a pass pruned a weight or stored one sparse (False: nothing is sparser than it was)."""
        return any(run.modified for run in self.passes if run.name in WEIGHT_PASSES)


def sparsify_ir(
    model,
    spec,
    example_inputs=None,
    *,
    portable: bool = False,
    pipeline: str | None = None,
    verify: bool = False,
    after_pass: Callable[[str, ir.Model], None] | None = None,
    target="cpu",
    backend: str = "tvm",
    calibration=None,
) -> SparsifyResult:
    """Run the sparsity pipeline and return the IR (`portable`: pruned dense weights only).

    Formats are chosen by `backend`'s cost model for `target`: by default, what sparsecc's
    native kernels gain on this CPU.
    """
    spec = SparsitySpec.parse(spec)
    chosen = backends.get(backend)
    target_info = chosen.resolve_target(target)
    ir_model, feeds = frontends.resolve_model(model, example_inputs)
    check_supported_ops(ir_model)
    step = None
    if feeds is None and not getattr(chosen, "dynamic_shapes", False) and not inputs.is_static(ir_model):
        step = decode_step(ir_model, inputs.output_specs(ir_model))
    context = CompileContext(
        spec=spec,
        target=target_info,
        cost_model=chosen.cost_model(target_info),
        calibration=load_calibration(calibration, inputs.graph_inputs(ir_model)),
        tokens=step.tokens if step is not None else None,
    )
    text = pipeline or pipeline_for(spec, portable)
    runs = Pipeline(text, verify=verify, after_pass=after_pass).run(ir_model, context)
    for rule in spec.unmatched_rules([(row.name, row.initializer) for row in context.report]):
        context.warn(
            f"spec rule {rule.index} ('{rule.match}={rule.pattern.describe()}') matches no linear weight"
        )
    return SparsifyResult(ir_model, context, feeds, runs, step)


def sparsify(
    model,
    spec,
    example_inputs=None,
    *,
    portable: bool = False,
    target="cpu",
    backend: str = "onnxruntime",
    calibration=None,
) -> onnx.ModelProto:
    """Sparsify `model` (torch module, ONNX path/proto or "zoo:NAME") by `spec`; returns ONNX.

    The result runs in any ONNX runtime: sparse ops carry reference bodies as model-local
    functions. `portable=True` writes standard ONNX only (pruned dense weights). Formats are
    priced by `backend`'s cost model: "onnxruntime" (default) keeps a sparse format where the
    file gets smaller; "tvm" where sparsecc's kernels run faster on `target`. `calibration` (an
    .npz path, or an iterable of input batches: tuples in input order or dicts by input name)
    feeds the pruning methods that need data (`2:4/sparsegpt`, `unstructured@0.7/wanda`).
    """
    result = sparsify_ir(
        model,
        spec,
        example_inputs,
        portable=portable,
        target=target,
        backend=backend,
        calibration=calibration,
    )
    ir.external_data.load_to_model(result.model)  # weights a file kept on disk: into the proto
    return ir.serde.serialize_model(result.model)


def compile(
    model,
    spec=None,
    example_inputs=None,
    target="cpu",
    tune: int = 0,
    *,
    backend: str = "tvm",
    calibration=None,
    records_path=None,
    measure: bool = False,
    rpc: str | None = None,
    dtype: str = "float32",
):
    """Compile `model` for `target` with `backend` ("tvm" or "onnxruntime"); returns a compiled model.

    `spec` defaults to "existing" (use the zeros already there). `tune` > 0 runs up to that many
    trials per kernel (TVM: MetaSchedule for the blocked kernels, a grid search for N:M);
    `records_path` is the records directory (default ~/.cache/sparsecc/tuning), reused so a second
    compile runs no trials. `measure` times every sparse kernel against dense (the report's
    measured speedup). `rpc` ("HOST:PORT:KEY") makes tuning measure on the device behind a TVM
    RPC tracker. `calibration` (an .npz path or an iterable of input batches) feeds the pruning
    methods that need data (wanda, sparsegpt).
    `dtype` ("float32", "bfloat16", "float16"; TVM only) is the precision the
    weights of linear and Conv layers are stored in: they are rounded to it here, once, and every
    kernel accumulates in float32; inputs, outputs and the activations between layers stay float32
    (`ops/precision.py`).
    """
    dtype = parse_dtype(dtype)
    if dtype != "float32" and backend != "tvm":
        raise SparseccError(f"dtype {dtype} needs the tvm backend; the {backend} backend runs float32 only")
    started = time.perf_counter()
    result = sparsify_ir(
        model,
        spec if spec is not None else "existing",
        example_inputs,
        target=target,
        backend=backend,
        calibration=calibration,
    )
    logger.info("sparsified in %.1f s", time.perf_counter() - started)
    dynamic = getattr(backends.get(backend), "dynamic_shapes", False)
    outputs = inputs.output_specs(result.model)
    step = result.decode_step  # a KV-cache decoder: its one-token step
    if step is not None:
        feeds, specs = step.feeds, step.specs
    else:
        feeds = inputs.example_feeds(result.model, result.example_inputs, allow_dynamic=dynamic)
        specs = inputs.input_specs(result.model, feeds, keep_dynamic=dynamic)
    request = BuildRequest(
        inputs=specs,
        outputs=outputs,
        example_inputs=feeds,
        tune=tune,
        records_path=Path(records_path) if records_path else None,
        measure=measure,
        rpc=rpc,
        dtype=dtype,
        release_weights=True,
    )
    ir.external_data.load_to_model(result.model)  # backends take every weight in memory
    return backends.get(backend).build(result.model, result.context, request)
