"""The onnxruntime backend: run the sparsified ONNX as it is, in onnxruntime.

Sparse ops run through their reference bodies, which onnxruntime inlines and folds into a
dense weight at session start: the same speed as dense, a smaller model file. So this
backend's cost model prices formats by bytes alone, and its report says so. It is the
reference the tests compare native builds with, and a way to ship smaller ONNX files.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnx_ir as ir

from sparsecc.backends import generation
from sparsecc.backends.base import BuildRequest, TensorSpec, arguments, results
from sparsecc.backends.ort import session
from sparsecc.backends.ort.decoder import OrtDecoderSteps
from sparsecc.backends.ort.model_file import FILE_BYTES, ModelFile, weight_bytes
from sparsecc.errors import SparseccError
from sparsecc.files import write_bytes
from sparsecc.ops import SparseFormat
from sparsecc.passes.context import CompileContext
from sparsecc.passes.cost import Estimate

MAX_BYTES_RATIO = 0.9  # a format pays here when it stores at most this share of the dense bytes


@dataclasses.dataclass(frozen=True)
class OrtTarget:
    name: str = "onnxruntime"
    family: str = "onnxruntime"
    threads: int = 0  # intra-op threads (0: onnxruntime's default)


class OrtCostModel:
    """Speed stays dense; a format pays when it makes the file smaller."""

    name = "onnxruntime cost model (dense speed, fewer bytes)"

    def estimate(self, fmt: SparseFormat, w: np.ndarray, m: int | None) -> Estimate:
        storage = fmt.storage(w)
        dense_bytes = w.size * 4
        ratio = storage.nbytes / dense_bytes
        pays = ratio <= MAX_BYTES_RATIO
        reason = (
            f"{fmt.label} keeps {ratio:.0%} of the dense bytes; onnxruntime runs it at dense speed"
            if pays
            else f"{fmt.label} would keep {ratio:.0%} of the dense bytes (needs <= {MAX_BYTES_RATIO:.0%})"
        )
        return Estimate(fmt, storage, dense_bytes, 1.0, pays, reason, "onnxruntime" if pays else None)


class OrtCompiledModel(generation.GeneratesTokens):
    """The sparsified model in an onnxruntime session."""

    def __init__(self, model: ir.Model, request: BuildRequest, report: list[dict], threads: int):
        # past 2 GB a model cannot be one protobuf message: onnxruntime runs it from a file instead
        self.file = ModelFile(model) if weight_bytes(model) > FILE_BYTES else None
        self._proto = None if self.file else ir.serde.serialize_model(model)
        source = str(self.file.path) if self.file else self._proto
        self.session = session.make_session(source, threads=threads or None)
        self.input_specs = list(request.inputs)
        self.output_specs = [TensorSpec(o["name"], tuple(o["shape"]), o["dtype"]) for o in request.outputs]
        self.report = report
        self.example_inputs = request.example_inputs
        self.target = "onnxruntime"

    def __call__(self, *args, **kwargs):
        values, torch_in = arguments(self.input_specs, args, kwargs)
        outputs = self.session.run(None, {spec.name: v for spec, v in zip(self.input_specs, values)})
        return results(list(outputs), torch_in)

    def _decoder_steps(self, signature: generation.DecoderSignature) -> OrtDecoderSteps:
        return OrtDecoderSteps(self.session, signature)

    @property
    def proto(self) -> onnx.ModelProto:
        """The sparsified model (past 2 GB: its graph, the weights left in the data file)."""
        return (
            self._proto
            if self._proto is not None
            else onnx.load(str(self.file.path), load_external_data=False)
        )

    def save(self, path) -> None:
        """Write the sparsified ONNX file (atomically); any ONNX runtime runs it. Past 2 GB of weights:
        PATH and PATH.data (external data)."""
        if self.file is not None:
            self.file.save_as(path)
        else:
            write_bytes(path, self._proto.SerializeToString())

    def __repr__(self) -> str:
        return f"OrtCompiledModel(inputs={[s.name for s in self.input_specs]})"


class OrtBackend:
    name = "onnxruntime"
    dynamic_shapes = True  # onnxruntime runs the model's symbolic dimensions as they are

    def resolve_target(self, target) -> OrtTarget:
        if isinstance(target, dict) and set(target) <= {"threads"}:
            threads = target.get("threads", 0)
            if not isinstance(threads, int) or threads < 0:
                raise SparseccError(f"target threads must be a whole number >= 0, got {threads!r}")
            return OrtTarget(threads=threads)
        if target not in (None, "cpu", "onnxruntime"):
            raise SparseccError(
                f"the onnxruntime backend runs on this CPU only; give target='cpu', not {target!r}"
            )
        return OrtTarget()

    def cost_model(self, target: OrtTarget) -> OrtCostModel:
        return OrtCostModel()

    def build(self, model: ir.Model, context: CompileContext, request: BuildRequest) -> OrtCompiledModel:
        if request.tune or request.rpc or request.measure:
            raise SparseccError(
                "the onnxruntime backend has nothing to tune or measure; use backend='tvm' for that"
            )
        for row in context.report:
            row.kernel = "onnxruntime"
            row.runs = "dense"
            row.kernel_reason = (
                f"onnxruntime rebuilds W from the {row.format} reference body at session start"
                if row.format != "dense"
                else "onnxruntime MatMul"
            )
        return OrtCompiledModel(
            model, request, [row.as_dict() for row in context.report], context.target.threads
        )
