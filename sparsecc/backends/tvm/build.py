"""Relax module -> executable for the target: the Relax pipeline, schedules for what is not ours, codegen."""

from __future__ import annotations

import os

from sparsecc.backends.tvm.target import TargetInfo


def build_relax(module, target: TargetInfo, log=None, tuner=None):
    """tvm.compile with every PrimFunc scheduled; the weights stay constants of the executable."""
    import tvm

    return tvm.compile(lower_relax(module, target, log, tuner), target=target.target)


def build_with_weights(module, target: TargetInfo, log=None, tuner=None):
    """(executable, weight tensors): as `build_relax`, but `main` takes the module's big constants as
    parameters after its inputs (`params.py`), so neither tvm.compile nor the executable holds them."""
    import tvm

    from sparsecc.backends.tvm.params import lift_weights

    module, weights = lift_weights(lower_relax(module, target, log, tuner))
    return tvm.compile(module, target=target.target), weights


def lower_relax(module, target: TargetInfo, log=None, tuner=None):
    """The Relax pipeline with every PrimFunc scheduled (ours are already; the rest by CPU rules or dlight).

    `log` (a `schedules.ScheduleLog`) records which CPU rule took each function; an active
    `tuner` (tuning.KernelTuner) then tunes those functions with MetaSchedule and keeps the
    faster schedule of each.
    """
    from tvm import relax

    if target.family == "cuda":
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
        # erf/exp/softmax as vectorisable polynomials (float32-accurate; checked against onnxruntime in tests)
        from sparsecc.backends.tvm.schedules import ScheduleLog, apply_cpu_schedules

        log = log if log is not None else ScheduleLog()
        module = relax.transform.FastMathTransform()(module)
        module = relax.get_pipeline("zero")(module)
        originals = {
            gvar.name_hint: func
            for gvar, func in module.functions_items()
            if "tirx.is_scheduled" not in func.attrs
        }
        module = apply_cpu_schedules(module, target.target, log)
        if tuner is not None:
            tuner.tune_functions(module, originals, log)
    return module


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
