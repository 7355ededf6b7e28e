"""`sparsecc.compile()`: sparsify, lower to Relax with our kernels, build with TVM.

Steps (each logged, and shown as progress by the CLI):
  1. sparsify_ir          the front half (spec -> sparse ops), or skipped for a model already sparse
  2. import_onnx          ONNX -> Relax; linear layers -> our TIR kernels (call_tir)
  3. tvm.compile          Relax pipeline + codegen for the target (CUDA: dlight schedules the rest)
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import time

import numpy as np

from sparsecc.backends.tvm.env import configure_tvm
from sparsecc.backends.tvm.runtime import CompiledModel, TensorSpec
from sparsecc.backends.tvm.target import TargetInfo, resolve_target
from sparsecc.errors import ModelError

logger = logging.getLogger(__name__)


def _versions() -> dict:
    import onnx
    import tvm

    import sparsecc

    return {"sparsecc": sparsecc.__version__, "tvm": tvm.__version__, "onnx": onnx.__version__}


def _input_specs(proto, inputs: dict[str, np.ndarray] | None) -> list[TensorSpec]:
    from sparsecc.backends.ort.session import random_inputs

    initializers = {i.name for i in proto.graph.initializer}
    graph_inputs = [i for i in proto.graph.input if i.name not in initializers]
    if inputs is None:
        for value in graph_inputs:
            dims = value.type.tensor_type.shape.dim
            if any(not d.HasField("dim_value") for d in dims):
                raise ModelError(
                    f"input '{value.name}' has a dynamic shape; pass example_inputs so sparsecc can compile "
                    "for a static shape"
                )
        inputs = random_inputs(proto)
    return [TensorSpec(v.name, tuple(inputs[v.name].shape), str(inputs[v.name].dtype)) for v in graph_inputs]


def _index_limits(ir_model) -> dict[str, int]:
    """Graph inputs used directly as Gather indices -> the smallest indexed table length."""
    limits: dict[str, int] = {}
    for value in ir_model.graph.inputs:
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


def _layer_weight_names(ir_model) -> dict[str, str]:
    """Node name -> user-facing weight name, for every linear layer the importer may lower."""
    from sparsecc.passes.linear import PARAM_KEY

    names = {}
    for index, node in enumerate(ir_model.graph):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
        if node.domain == "sparsecc" or node.op_type == "MatMul":
            weight = node.inputs[1] if len(node.inputs) > 1 else None
            if weight is not None and weight.const_value is not None:
                names[node.name] = (
                    node.name
                    if node.domain == "sparsecc"
                    else (weight.metadata_props.get(PARAM_KEY) or weight.name)
                )
    return names


def build_relax(module, target: TargetInfo):
    import tvm
    from tvm import relax

    if target.family == "cuda":
        import os

        import tvm.support.nvcc
        from tvm.s_tir import dlight as dl

        os.environ.setdefault("TVM_CUDA_COMPILE_MODE", "nvcc")  # nvrtc needs the cuda-bindings wheel

        with target.target:
            module = relax.get_pipeline("zero")(module)
            module = dl.ApplyDefaultSchedule(
                dl.gpu.Matmul(),
                dl.gpu.GEMV(),
                dl.gpu.Reduction(),
                dl.gpu.GeneralReduction(),
                dl.gpu.Fallback(),
            )(module)
    else:
        from sparsecc.backends.tvm.schedules import apply_cpu_schedules

        # erf/exp/softmax as vectorisable polynomials (float32-accurate; checked against onnxruntime in tests)
        module = relax.transform.FastMathTransform()(module)
        module = relax.get_pipeline("zero")(module)
        module = apply_cpu_schedules(module, target.target)
    return tvm.compile(module, target=target.target)


def device_ptx(executable, target: TargetInfo) -> str:
    """PTX of every CUDA kernel in the build, compiled with nvcc (TVM keeps only CUDA source)."""
    from tvm.support import nvcc

    pending, sources = [executable.mod], []
    while pending:
        module = pending.pop()
        if module.kind == "cuda":
            sources.append(module.inspect_source("cuda"))
        pending.extend(module.imports)
    arch = target.target_dict.get("arch", "sm_90")
    with target.target:
        return "\n".join(
            nvcc.compile_cuda(src, target_format="ptx", arch=arch, compiler="nvcc").decode()
            for src in sources
        )


def measure_layers(layers, report_rows: dict, names: dict, target: TargetInfo) -> None:
    """Fill `measured_speedup`: each sparse kernel against our dense kernel of the same shape, here."""
    from sparsecc.backends.tvm.kernels.registry import make_kernel
    from sparsecc.backends.tvm.tuning import measure_ms

    dense_ms: dict[tuple, float] = {}
    for layer in layers:
        row = report_rows.get(names.get(layer.node, layer.node))
        if row is None or layer.kind == "MatMul":
            continue
        out, inp = layer.weight_shape
        m = layer.m
        key = (out, inp, m)
        if key not in dense_ms:
            dense = np.random.default_rng(0).standard_normal((out, inp)).astype(np.float32)
            dense_ms[key] = measure_ms(make_kernel(dense, None, m, target), m, inp, out, target)
        row["measured_speedup"] = round(dense_ms[key] / measure_ms(layer.kernel, m, inp, out, target), 2)


def compile(
    model,
    spec=None,
    example_inputs=None,
    target="cpu",
    tune: int = 0,
    *,
    records_path=None,
    measure: bool = False,
    rpc: str | None = None,
):
    """Compile `model` for `target`; returns a CompiledModel (see design.md, "Python API").

    `tune` > 0 runs up to that many trials per kernel: MetaSchedule for the blocked kernels
    (BSR, CSR, dense), a grid search for N:M. `records_path` is the records directory
    (default ~/.cache/sparsecc/tuning); records are reused, so a second compile runs no trials.
    `measure` times every sparse kernel against our dense kernel here (the report's measured speedup).
    `rpc` ("HOST:PORT:KEY") makes tuning measure on the device behind a TVM RPC tracker.
    """
    configure_tvm()
    import onnx_ir as ir

    from sparsecc.backends.tvm.importer import import_onnx
    from sparsecc.compiler.api import sparsify_ir

    info = resolve_target(target)
    started = time.perf_counter()
    result = sparsify_ir(model, spec if spec is not None else "existing", example_inputs)
    names = _layer_weight_names(result.model)
    proto = ir.serde.serialize_model(result.model)
    limits = _index_limits(result.model)
    inputs = [
        dataclasses.replace(spec, index_limit=limits.get(spec.name))
        for spec in _input_specs(proto, result.example_inputs)
    ]
    logger.info("sparsified in %.1f s", time.perf_counter() - started)
    tuner = None
    if tune:
        from sparsecc.backends.tvm.tuning import KernelTuner, RpcConfig

        tuner = KernelTuner(info, tune, records_path, RpcConfig.parse(rpc) if rpc else None)
        if not tuner.active:
            logger.warning(
                "tune=%d ignored: target %s does not run here and no --rpc was given", tune, info.name
            )

    step = time.perf_counter()
    module, layers = import_onnx(
        proto, {s.name: s.shape for s in inputs}, {s.name: s.dtype for s in inputs}, info, tuner=tuner
    )
    if tuner is not None:
        logger.info("tuning: %d new trials (records: %s)", tuner.trials_run, tuner.records_dir)
    logger.info("lowered to Relax in %.1f s (%d linear kernels)", time.perf_counter() - step, len(layers))
    step = time.perf_counter()
    executable = build_relax(module, info)
    logger.info("built for %s in %.1f s", info.name, time.perf_counter() - step)

    report = [row.as_dict() for row in result.report]
    by_name = {row["name"]: row for row in report}
    for layer in layers:
        row = by_name.get(names.get(layer.node, layer.node))
        if row is not None:
            row["kernel"] = layer.kernel.name
    if measure and info.runs_here:
        measure_layers(layers, by_name, names, info)
    outputs = _output_specs(proto)
    manifest = {
        "inputs": [s.as_dict() for s in inputs],
        "outputs": outputs,
        "target": {"name": info.name, "family": info.family, "arch": info.arch, "dict": info.target_dict},
        "spec": result.spec.to_dict(),
        "versions": _versions(),
        "report": report,
        "built_on": platform.machine(),
    }
    compiled = CompiledModel(executable, manifest)
    if info.family == "cuda":
        step = time.perf_counter()
        compiled.device_code = {"device.ptx": device_ptx(executable, info).encode()}
        logger.info("compiled device code to PTX with nvcc in %.1f s", time.perf_counter() - step)
    compiled.example_inputs = result.example_inputs
    compiled.tuning_trials = tuner.trials_run if tuner is not None else 0
    return compiled


def _output_specs(proto) -> list[dict]:
    import onnx

    specs = []
    for value in proto.graph.output:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type) if tensor.elem_type else np.float32
        specs.append({"name": value.name, "shape": dims, "dtype": str(np.dtype(dtype))})
    return specs
