"""Weights as parameters of `main` (`params.py`): what is lifted, and that the numerics do not change."""

import numpy as np
import pytest

import sparsecc
from sparsecc.backends.tvm.build import build_relax, build_with_weights
from sparsecc.backends.tvm.params import lift_weights
from sparsecc.backends.tvm.target import resolve_target

tvm = pytest.importorskip("tvm")
TARGET = resolve_target("cpu")
RNG = np.random.default_rng(7)


def two_matmuls(w: np.ndarray, small: np.ndarray):
    """main(x) = (x @ w) @ w^T + small: `w` used twice, and a small constant."""
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, w.shape[0]), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            weight = relax.const(w)
            y = bb.emit(relax.op.matmul(x, weight))
            y = bb.emit(relax.op.matmul(y, relax.op.permute_dims(weight)))
            out = bb.emit_output(bb.emit(relax.op.add(y, relax.const(small))))
        bb.emit_func_output(out)
    return bb.get()


def test_big_constants_become_parameters_once_small_ones_stay():
    w = RNG.standard_normal((128, 64), dtype=np.float32)  # 32 KiB
    small = RNG.standard_normal((128,), dtype=np.float32)  # 512 B
    module, tensors = lift_weights(two_matmuls(w, small))
    assert [p.name for p in module["main"].params] == ["x", "weight0"]
    assert len(tensors) == 1 and np.array_equal(tensors[0].numpy(), w)
    assert lift_weights(two_matmuls(w, small), min_bytes=1 << 20)[1] == []


def test_lifted_build_computes_what_the_constant_build_does():
    from tvm import relax

    w = RNG.standard_normal((128, 64), dtype=np.float32)
    small = RNG.standard_normal((128,), dtype=np.float32)
    x = RNG.standard_normal((4, 128), dtype=np.float32)
    expected = (x @ w) @ w.T + small
    module = two_matmuls(w, small)
    executable, weights = build_with_weights(module, TARGET)
    # lifted after the pipeline folded the transpose: w and w^T are both parameters, computed once
    assert sorted(w_.shape for w_ in weights) == [(64, 128), (128, 64)]
    lifted = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(x), *weights).numpy()
    folded = relax.VirtualMachine(build_relax(module, TARGET), tvm.cpu())["main"](
        tvm.runtime.tensor(x)
    ).numpy()
    np.testing.assert_allclose(lifted, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_array_equal(lifted, folded)


def test_compiled_model_holds_its_weights_outside_the_library(tmp_path):
    """The exported library holds code, not the weights; the package keeps them as arrays and
    the loaded model, mapping them, gives the same outputs bit for bit."""
    cm = sparsecc.compile("zoo:mlp", "layers.0.weight=block(16,1)@0.9; layers.2.weight=2:4")
    x = next(iter(cm.example_inputs.values()))
    weight_bytes = sum(w.numpy().nbytes for w in cm._weights)
    assert weight_bytes > 100_000
    path = tmp_path / "mlp.sccpkg"
    cm.save(path)
    import zipfile

    with zipfile.ZipFile(path) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    assert sizes["weights.bin"] >= weight_bytes
    loaded = sparsecc.load(path)
    assert all(isinstance(w, np.ndarray) and w.base is not None for w in loaded._weights)  # file views
    np.testing.assert_array_equal(loaded(x), cm(x))
