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
    from sparsecc.backends.tvm.schedules import TILE_ROWS, TILE_VECTORS, BatchMatmul

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
        schedule = BatchMatmul().apply(func, CPU.target, False)
    assert schedule is not None
    # the register tile where rows and columns divide into it (both BERT shapes, with 8 or 16 lanes),
    # else the plain fallback; only the tiled schedule stages its accumulator through a cache_write
    rows, columns = a_shape[-2], b_shape[-1]
    tiled = rows % TILE_ROWS == 0 and columns % (TILE_VECTORS * CPU.lanes) == 0
    assert tiled == (a_shape[-2] >= 128)  # the shapes above are chosen so on AVX2 and AVX-512
    kinds = [inst.kind.name for inst in schedule.trace.insts]
    assert ("CacheWrite" in kinds and "Unroll" in kinds) == tiled, kinds
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(a_shape).astype(np.float32), rng.standard_normal(b_shape).astype(np.float32)
    vm = relax.VirtualMachine(
        tvm.compile(apply_cpu_schedules(module, CPU.target), target=CPU.target), tvm.cpu()
    )
    got = vm["main"](tvm.runtime.tensor(x, tvm.cpu()), tvm.runtime.tensor(y, tvm.cpu())).numpy()
    np.testing.assert_allclose(got, x.astype(np.float64) @ y, rtol=1e-4, atol=1e-4)


def masked_scores_module(shape=(1, 4, 32, 32)):
    """Attention's Q K^T with a boolean mask applied as an epilogue, as the exporters write it."""
    builder = relax.BlockBuilder()
    q, k = (relax.Var(n, relax.TensorType(shape, "float32")) for n in ("q", "k"))
    mask = relax.Var("mask", relax.TensorType((1, 1, shape[2], shape[3]), "bool"))
    with builder.function("main", [q, k, mask]):
        with builder.dataflow():
            scores = builder.emit(relax.op.matmul(q, k))
            out = builder.emit(relax.op.where(mask, scores, relax.const(-1e9, "float32")))
            out = builder.emit_output(out)
        builder.emit_func_output(out)
    return relax.get_pipeline("zero")(builder.get())


def test_row_reduction_declines_a_matmul_with_an_epilogue():
    """It once crashed on this function ("the loop no longer exists"), and the crash was swallowed."""
    module = masked_scores_module()
    funcs = [f for f in module.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    with CPU.target:
        assert all(RowReduction().apply(func, CPU.target, False) is None for func in funcs)
    rng = np.random.default_rng(3)
    q, k = (rng.standard_normal((1, 4, 32, 32)).astype(np.float32) for _ in range(2))
    mask = rng.random((1, 1, 32, 32)) > 0.3
    vm = relax.VirtualMachine(
        tvm.compile(apply_cpu_schedules(module, CPU.target), target=CPU.target), tvm.cpu()
    )
    got = vm["main"](*(tvm.runtime.tensor(a, tvm.cpu()) for a in (q, k, mask))).numpy()
    np.testing.assert_allclose(got, np.where(mask, q.astype(np.float64) @ k, -1e9), rtol=1e-4, atol=1e-4)


def test_a_rule_that_crashes_fails_the_build_in_debug_mode(monkeypatch, caplog):
    """Never swallowed: logged with the rule's name, and an error under --debug and in the tests."""
    from sparsecc.backends.tvm import schedules

    def broken(self, func, target, tunable):
        raise ValueError("broken on purpose")

    monkeypatch.setattr(schedules.RowReduction, "apply", broken)
    module = legalized((1, 128, 768), layer_norm)
    with pytest.raises(Exception, match="schedule rule RowReduction failed .*broken on purpose"):
        apply_cpu_schedules(module, CPU.target)
    monkeypatch.setenv("SPARSECC_DEBUG", "0")
    with caplog.at_level("WARNING"):
        scheduled = apply_cpu_schedules(module, CPU.target)  # logged, and the next rules get the function
    assert "schedule rule RowReduction failed" in caplog.text
    x = np.random.default_rng(0).standard_normal((1, 128, 768)).astype(np.float32)
    np.testing.assert_allclose(
        run(scheduled, x), numpy_layer_norm(x.astype(np.float64)), rtol=1e-4, atol=1e-4
    )


def conv_module():
    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 3, 16, 16), "float32"))
    w = relax.const(np.random.default_rng(4).standard_normal((8, 3, 4, 4)).astype(np.float32))
    with builder.function("main", [x]):
        with builder.dataflow():
            out = builder.emit_output(builder.emit(relax.op.nn.conv2d(x, w, strides=4)))
        builder.emit_func_output(out)
    return relax.get_pipeline("zero")(builder.get())


def test_catch_all_schedules_what_no_rule_takes_and_the_log_says_so():
    from sparsecc.backends.tvm.schedules import ScheduleLog

    log = ScheduleLog()
    module = apply_cpu_schedules(conv_module(), CPU.target, log)
    assert log.catch_all_only == ["conv2d"] and not log.unscheduled
    x = np.random.default_rng(5).standard_normal((1, 3, 16, 16)).astype(np.float32)
    got = run(module, x)
    want = torch_free_conv(x, np.random.default_rng(4).standard_normal((8, 3, 4, 4)).astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def torch_free_conv(x, w):
    """4x4 convolution with stride 4 as patches times the weight."""
    patches = x.reshape(1, 3, 4, 4, 4, 4).transpose(0, 2, 4, 1, 3, 5).reshape(16, 48)
    return (patches @ w.reshape(8, 48).T).T.reshape(1, 8, 4, 4)


def test_a_function_no_rule_takes_fails_the_build_in_debug_mode(monkeypatch):
    from sparsecc.backends.tvm import schedules

    monkeypatch.setattr(schedules, "RULES", ())
    monkeypatch.setattr(schedules.CatchAll, "apply", lambda self, func, target, tunable: None)
    with pytest.raises(Exception, match="no schedule rule took conv2d"):
        apply_cpu_schedules(conv_module(), CPU.target)
