"""Kernel selection, before lowering: each linear layer gets the kernel its rule chain picks,
tuned when asked; and, when asked, each sparse kernel is timed against the dense one."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx_ir as ir

from sparsecc.backends.tvm.kernels import Kernel
from sparsecc.backends.tvm.kernels.conv_blocked_cpu import channel_blocked_tiles, make_blocked_conv_kernel
from sparsecc.backends.tvm.kernels.conv_cpu import make_conv_kernel, sparse_rows
from sparsecc.backends.tvm.kernels.rules import make_kernel
from sparsecc.backends.tvm.layers import ConvCall, ConvLayer, LinearLayer
from sparsecc.backends.tvm.layouts import blocked_values
from sparsecc.backends.tvm.target import TargetInfo
from sparsecc.ops import CsrWeight, NmWeight

logger = logging.getLogger(__name__)


def select_kernels(
    layers: list[LinearLayer], target: TargetInfo, tuner=None, dtype: str = "float32"
) -> dict[str, Kernel]:
    """Node name -> the kernel for it (the tuned one when `tuner` is active).

    A sparse op in the model (a sparsified file, made for another target or for size) runs
    sparse only where this target's cost model says it pays; a tuned build measures instead.
    `dtype`: the weights' precision (`rules.make_kernel`); the tuner measures float32 kernels
    only, so a bf16/fp16 build runs the default schedules.
    """
    if tuner is not None and dtype != "float32":
        logger.warning(
            "tuning skipped: it measures float32 kernels only, and this build stores %s weights", dtype
        )
        tuner = None
    from sparsecc.backends.tvm.cost import TvmCostModel

    cost_model = TvmCostModel(target)
    kernels = {}
    for index, layer in enumerate(layers, start=1):
        weight, note = layer.weight, ""
        if not isinstance(weight, np.ndarray) and tuner is None:
            estimate = cost_model.estimate(weight.format, weight.to_dense(), layer.m)
            if not estimate.pays:
                weight, note = weight.to_dense(), f"{estimate.reason}, so it runs dense; "
        kernel = make_kernel(weight, layer.bias, layer.m, target, dtype=dtype)
        if note:
            kernel = dataclasses.replace(kernel, reason=note + kernel.reason)
        if tuner is not None:
            kernel = tuner.tune(kernel, layer.weight, layer.bias, layer.m)
        logger.debug("layer %d/%d %s: %s (%s)", index, len(layers), layer.name, kernel.name, kernel.reason)
        kernels[layer.node] = kernel
    return kernels


def measured_speedups(
    layers: list[LinearLayer], kernels: dict[str, Kernel], target: TargetInfo
) -> dict[str, float]:
    """Layer name -> our dense kernel's time / this layer's kernel time, measured here (sparse kernels only)."""
    from sparsecc.backends.tvm.tuning import measure_ms

    dense_ms: dict[tuple, float] = {}
    speedups = {}
    for layer in layers:
        kernel = kernels[layer.node]
        if kernel.runs == "dense":
            continue
        out, inp = layer.weight.shape
        key = (out, inp, layer.m)
        if key not in dense_ms:
            dense = np.random.default_rng(0).standard_normal((out, inp)).astype(np.float32)
            dense_ms[key] = measure_ms(make_kernel(dense, None, layer.m, target), layer.m, inp, out, target)
        speedups[layer.name] = round(dense_ms[key] / measure_ms(kernel, layer.m, inp, out, target), 2)
    return speedups


def select_conv_kernels(
    model: ir.Model, layers: list[ConvLayer], target: TargetInfo
) -> tuple[dict[str, Kernel], dict[str, ConvCall]]:
    """Node name -> the Conv kernel for it, and how the importer calls it (CPU targets; on CUDA,
    Convs stay TVM's own).

    A sparse weight runs sparse where the cost model says it pays at the layer's positions
    (its GEMM rows), else dense; the kernel's reason says which and why. Dense Convs of whole
    vectors of output channels run channel-blocked, the rest in NCHW (`layouts.py`).
    """
    from sparsecc.backends.tvm.cost import TvmCostModel

    if target.family == "cuda":
        return {}, {}
    cost_model = TvmCostModel(target)
    chosen = {}
    for layer in layers:
        weight, reason = layer.weight, ""
        positions = layer.geometry.n * layer.geometry.out_h * layer.geometry.out_w
        if not isinstance(weight, np.ndarray):
            if isinstance(weight, NmWeight):  # N:M rows run as CSR: the kernel walks taps
                weight = CsrWeight.from_dense(weight.to_dense())
            estimate = cost_model.estimate(weight.format, weight.to_dense(), positions)
            if estimate.pays and layer.geometry.o // layer.geometry.groups % sparse_rows(weight, 8) == 0:
                reason = f"sparse Conv kernel ({estimate.reason})"
            else:
                weight, reason = weight.to_dense(), f"{estimate.reason}, so it runs dense"
        chosen[layer.node] = (weight, reason)
    blocked_tiles = {
        layer.node: tiles
        for layer in layers
        if isinstance(chosen[layer.node][0], np.ndarray)
        and (tiles := channel_blocked_tiles(layer.geometry, target.lanes, target.vector_registers))
    }
    blocked = blocked_values(model, layers, set(blocked_tiles))
    kernels, calls = {}, {}
    for layer in layers:
        weight, reason = chosen[layer.node]
        fmt = None if isinstance(weight, np.ndarray) else weight.format
        label = "conv_dense" if fmt is None else f"conv_{fmt.label.lower().replace(' ', '_')}"
        g = layer.geometry
        if layer.node in blocked_tiles:
            tiles = blocked_tiles[layer.node]
            kind = "depthwise" if tiles.depthwise else "dense"
            kernel = make_blocked_conv_kernel(
                weight,
                layer.bias,
                g,
                layer.epilogue,
                target.lanes,
                tiles,
                layer.input in blocked,
                target.num_cores,
                f"conv_{kind}_blocked_{target.family}",
            )
            vectorised = "channels" if tiles.depthwise else "output channels"
            reason = ", ".join(
                filter(None, [reason, f"Conv kernel: channel-blocked (NCHWc), {vectorised} vectorised"])
            )
        else:
            kernel = make_conv_kernel(
                weight,
                layer.bias,
                g,
                layer.epilogue,
                target.lanes,
                target.vector_registers,
                target.num_cores,
                f"{label}_{target.family}",
            )
            reason = reason or "Conv kernel: GEMM over shifted rows of the padded NCHW input"
        runs = "dense" if fmt is None else fmt.label
        kernels[layer.node] = dataclasses.replace(
            kernel,
            m=g.n * g.out_h * g.out_w,
            runs=runs,
            reason=f"{reason}; epilogue: {layer.epilogue.describe()}",
        )
        calls[layer.node] = ConvCall(
            layer.residual,
            layer.absorbed,
            (g.n, g.o, g.out_h, g.out_w),
            blocked_input=layer.node in blocked_tiles and layer.input in blocked,
            blocked_output=layer.node in blocked_tiles,
        )
    return kernels, calls
