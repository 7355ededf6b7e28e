"""CPU schedules for the non-linear parts of a graph: each rule applies where meant and keeps the numbers."""

import numpy as np
import pytest

pytest.importorskip("tvm")

import tvm
from tvm import relax
from tvm.s_tir import dlight as dl

from sparsecc.backends.tvm.schedules import RowReduction, apply_cpu_schedules
from sparsecc.backends.tvm.target import resolve_target

CPU = resolve_target("cpu")


def legalized(shape, op):
    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with builder.function("main", [x]):
        with builder.dataflow():
            out = builder.emit_output(builder.emit(op(x)))
        builder.emit_func_output(out)
    return relax.get_pipeline("zero")(relax.transform.FastMathTransform()(builder.get()))


def run(module, x):
    vm = relax.VirtualMachine(tvm.compile(module, target=CPU.target), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x, tvm.cpu())).numpy()


def layer_norm(x):
    gamma = relax.const(np.linspace(0.5, 1.5, 768).astype(np.float32))
    beta = relax.const(np.linspace(-1, 1, 768).astype(np.float32))
    return relax.op.nn.layer_norm(x, gamma, beta, axes=[-1])


def numpy_layer_norm(x):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * np.linspace(0.5, 1.5, 768) + np.linspace(-1, 1, 768)


def numpy_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize(
    "shape, op, reference",
    [
        ((1, 128, 768), layer_norm, numpy_layer_norm),
        ((1, 12, 128, 128), lambda x: relax.op.nn.softmax(x, axis=-1), numpy_softmax),
    ],
)
def test_row_reduction_applies_and_matches_numpy(shape, op, reference):
    module = legalized(shape, op)
    with CPU.target:
        (func,) = [f for f in module.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
        assert RowReduction().apply(func, CPU.target, False) is not None
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = run(apply_cpu_schedules(module, CPU.target), x)
    np.testing.assert_allclose(got, reference(x.astype(np.float64)), rtol=1e-4, atol=1e-5)


def test_row_reduction_declines_a_reduction_over_a_leading_axis():
    module = legalized((64, 48), lambda x: relax.op.sum(x, axis=0))
    (func,) = [f for f in module.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    with CPU.target:
        assert RowReduction().apply(func, CPU.target, False) is None
    x = np.random.default_rng(1).standard_normal((64, 48)).astype(np.float32)
    with CPU.target:
        scheduled = dl.ApplyDefaultSchedule()(module)
    np.testing.assert_allclose(run(scheduled, x), x.sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [
        ((1, 12, 128, 64), (1, 12, 64, 128)),
        ((1, 12, 128, 128), (1, 12, 128, 64)),
        ((2, 3, 10, 7), (2, 3, 7, 5)),
    ],
)
def test_batch_matmul_register_tiles_and_fallback_match_numpy(a_shape, b_shape):
    from sparsecc.backends.tvm.schedules import BatchMatmul

    builder = relax.BlockBuilder()
    a, b = (
        relax.Var("a", relax.TensorType(a_shape, "float32")),
        relax.Var("b", relax.TensorType(b_shape, "float32")),
    )
    with builder.function("main", [a, b]):
        with builder.dataflow():
            out = builder.emit_output(builder.emit(relax.op.matmul(a, b)))
        builder.emit_func_output(out)
    module = relax.get_pipeline("zero")(builder.get())
    (func,) = [f for f in module.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    with CPU.target:
        assert BatchMatmul().apply(func, CPU.target, False) is not None  # tiled, or the plain fallback
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(a_shape).astype(np.float32), rng.standard_normal(b_shape).astype(np.float32)
    vm = relax.VirtualMachine(
        tvm.compile(apply_cpu_schedules(module, CPU.target), target=CPU.target), tvm.cpu()
    )
    got = vm["main"](tvm.runtime.tensor(x, tvm.cpu()), tvm.runtime.tensor(y, tvm.cpu())).numpy()
    np.testing.assert_allclose(got, x.astype(np.float64) @ y, rtol=1e-4, atol=1e-4)
