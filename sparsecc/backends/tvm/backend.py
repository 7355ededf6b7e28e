"""The TVM backend: sparsified IR -> native code, one step per module.

1. find_layers      the linear layers and the tokens each sees       (layers.py)
2. select_kernels   the kernel rule chain per layer, tuned on request (selection.py, kernels/rules.py)
3. import_onnx      ONNX -> Relax, the chosen kernels as call_tir     (importer.py)
4. build_with_weights  Relax pipeline, CPU schedules, weights lifted to parameters, codegen
                        (build.py, schedules.py, params.py)
5. CompiledModel    the executable, its weights, manifest and report  (runtime.py)
"""

from __future__ import annotations

import logging
import platform
import time

import onnx_ir as ir

from sparsecc.backends.base import BuildRequest, TensorSpec
from sparsecc.backends.tvm.cost import TvmCostModel
from sparsecc.backends.tvm.env import configure_tvm
from sparsecc.backends.tvm.runtime import CompiledModel
from sparsecc.backends.tvm.target import TargetInfo, resolve_target
from sparsecc.ops.precision import round_weight
from sparsecc.passes.context import CompileContext

logger = logging.getLogger(__name__)


def index_limits(model: ir.Model) -> dict[str, int]:
    """Graph inputs used directly as Gather indices -> the smallest indexed table length.

    TVM's Gather does not check bounds, so an out-of-vocabulary id would read stray memory.
    """
    limits: dict[str, int] = {}
    for value in model.graph.inputs:
        for node, position in value.uses():
            data = node.inputs[0]
            if node.op_type != "Gather" or node.domain not in ("", "ai.onnx") or position != 1:
                continue
            axis = node.attributes.get_int("axis", 0)
            shape = data.shape if data is not None else None
            if shape is None or not -len(shape) <= axis < len(shape) or not isinstance(shape[axis], int):
                continue
            limits[value.name] = min(limits.get(value.name, shape[axis]), shape[axis])
    return limits


def _drop_kernel_weights(model: ir.Model, nodes: set[str]) -> None:
    """Take out of `model` the initializers only kernel-run `nodes` read (their kernels hold packed
    copies), so that serialising the graph for TVM's importer copies none of them: one copy of the
    weights at a time (issue 14)."""
    owned = [node for node in model.graph if node.name in nodes]
    for node in owned:
        for value in node.inputs[1:]:
            if value is None or value.name not in model.graph.initializers:
                continue
            if all(user.name in nodes for user, _ in value.uses()) and not value.is_graph_output():
                model.graph.initializers.pop(value.name)
                value.const_value = None


def _versions() -> dict:
    import onnx
    import tvm

    import sparsecc

    return {"sparsecc": sparsecc.__version__, "tvm": tvm.__version__, "onnx": onnx.__version__}


class TvmBackend:
    """Native code for x86, aarch64 (cross-compiled) and CUDA through Apache TVM."""

    name = "tvm"

    def resolve_target(self, target) -> TargetInfo:
        return resolve_target(target)

    def cost_model(self, target: TargetInfo) -> TvmCostModel:
        return TvmCostModel(target)

    def build(self, model: ir.Model, context: CompileContext, request: BuildRequest) -> CompiledModel:
        from sparsecc.backends.tvm.build import build_with_weights, device_ptx
        from sparsecc.backends.tvm.importer import import_onnx, symbolic_shapes
        from sparsecc.backends.tvm.layers import find_conv_layers, find_layers
        from sparsecc.backends.tvm.pattern_attention import report_kernels
        from sparsecc.backends.tvm.selection import measured_speedups, select_conv_kernels, select_kernels

        configure_tvm()
        target: TargetInfo = context.target
        step = time.perf_counter()
        layers = find_layers(model, request.example_inputs, context.tokens)
        tuner = self._tuner(target, request)
        kernels = select_kernels(layers, target, tuner, request.dtype)
        conv_layers = find_conv_layers(model, request.example_inputs)
        for conv in conv_layers:  # Conv kernels compute float32: their weights rounded to the dtype
            conv.weight = round_weight(conv.weight, request.dtype)
        conv_kernels, convs = select_conv_kernels(model, conv_layers, target)
        if tuner is not None:
            logger.info("tuning: %d new trials (records: %s)", tuner.trials_run, tuner.records_dir)
        logger.info(
            "chose %d linear and %d Conv kernels in %.1f s",
            len(kernels),
            len(conv_kernels),
            time.perf_counter() - step,
        )

        measuring = request.measure and target.runs_here  # measuring runs the kernels again
        if not measuring:  # the kernels hold their own packed copies now
            for layer in [*layers, *conv_layers]:
                layer.weight = None
        if request.release_weights:
            _drop_kernel_weights(model, set(kernels) | set(conv_kernels))

        step = time.perf_counter()
        limits = index_limits(model)
        inputs = [TensorSpec(s.name, s.shape, s.dtype, limits.get(s.name)) for s in request.inputs]
        proto = ir.serde.serialize_model(model)
        module = import_onnx(
            proto,
            symbolic_shapes(inputs, model),
            {s.name: s.dtype for s in inputs},
            {**kernels, **conv_kernels},
            target,
            {layer.bias_add for layer in layers if layer.bias_add},
            tuner,
            convs,
            owned=True,
            release=not measuring,
        )
        del proto  # the Relax module holds the weights now
        logger.info("lowered to Relax in %.1f s", time.perf_counter() - step)
        step = time.perf_counter()
        from sparsecc.backends.tvm.schedules import ScheduleLog

        schedule_log = ScheduleLog()
        executable, weights = build_with_weights(module, target, schedule_log, tuner)
        logger.info("built for %s in %.1f s", target.name, time.perf_counter() - step)

        rows = {row.name: row for row in context.report}
        all_kernels = {**kernels, **conv_kernels}
        for layer in [*layers, *(c for c in conv_layers if c.node in conv_kernels)]:
            kernel, row = all_kernels[layer.node], rows.get(layer.name)
            if row is not None:
                row.kernel, row.runs, row.kernel_reason = kernel.name, kernel.runs, kernel.reason
        report_kernels(context.attention, model, target)  # the kernel of each PatternAttention group
        if request.measure and target.runs_here:
            for name, speedup in measured_speedups(layers, kernels, target).items():
                if name in rows:
                    rows[name].measured_speedup = speedup
        manifest = {
            "inputs": [s.as_dict() for s in inputs],
            "outputs": request.outputs,
            "target": {
                "name": target.name,
                "family": target.family,
                "arch": target.arch,
                "dict": target.target_dict,
            },
            "spec": context.spec.to_dict() if context.spec is not None else None,
            "dtype": request.dtype,
            "versions": _versions(),
            "report": [row.as_dict() for row in context.report],
            "attention": [group.as_dict() for group in context.attention],
            "built_on": platform.machine(),
        }
        compiled = CompiledModel(executable, manifest, weights)
        if target.family == "cuda":
            step = time.perf_counter()
            compiled.device_code = {"device.ptx": device_ptx(executable, target).encode()}
            logger.info("compiled device code to PTX with nvcc in %.1f s", time.perf_counter() - step)
        compiled.example_inputs = request.example_inputs
        compiled.schedule_log = schedule_log
        compiled.tuning_trials = tuner.trials_run if tuner is not None else 0
        return compiled

    @staticmethod
    def _tuner(target: TargetInfo, request: BuildRequest):
        if not request.tune:
            return None
        from sparsecc.backends.tvm.tuning import KernelTuner, RpcConfig

        tuner = KernelTuner(
            target, request.tune, request.records_path, RpcConfig.parse(request.rpc) if request.rpc else None
        )
        if not tuner.active:
            logger.warning(
                "tune=%d ignored: target %s does not run here and no --rpc was given",
                request.tune,
                target.name,
            )
            return None
        return tuner
