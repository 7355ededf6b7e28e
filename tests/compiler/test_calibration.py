"""Calibration data reaches the passes checked and streamed, from an .npz file or from Python."""

import gc
import weakref
import zipfile

import numpy as np
import onnx_ir as ir
import pytest
import torch

import sparsecc
from sparsecc.compiler import api
from sparsecc.compiler.calibration import load_calibration
from sparsecc.errors import InputError
from sparsecc.passes.context import Calibration
from sparsecc.sparsity.methods import prune_weight
from sparsecc.sparsity.patterns import parse_pattern
from tests.onnx_text import model_from_text, run

NAMES = ["input_ids", "attention_mask"]


def batch(seed):
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(0, 100, (1, 8)), "attention_mask": np.ones((1, 8), np.int64)}


def test_npz_batches_on_axis_zero(tmp_path):
    path = tmp_path / "calib.npz"
    batches = [batch(i) for i in range(3)]
    np.savez(path, **{n: np.stack([b[n] for b in batches]) for n in NAMES})
    calibration = load_calibration(str(path), NAMES)
    assert calibration.count == 3
    read = list(calibration)
    np.testing.assert_array_equal(read[2]["input_ids"], batches[2]["input_ids"])
    assert len(list(calibration)) == 3  # every pass reads it again


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_is_read_one_batch_at_a_time(tmp_path, monkeypatch, compressed):
    """Headers through numpy.lib.format, then one batch's bytes per read; np.load is never used."""
    path = tmp_path / "calib.npz"
    x = np.random.default_rng(0).standard_normal((6, 4, 32)).astype(np.float32)
    (np.savez_compressed if compressed else np.savez)(path, X=x)
    sizes = []
    original = zipfile.ZipExtFile.read

    def read(self, n=-1):
        sizes.append(n)
        return original(self, n)

    monkeypatch.setattr(zipfile.ZipExtFile, "read", read)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load reads whole arrays"))
    got = list(load_calibration(str(path), ["X"]))
    np.testing.assert_array_equal(np.stack([b["X"] for b in got]), x)
    assert -1 not in sizes and max(sizes) == x[0].nbytes


def test_iterables_of_dicts_tuples_torch_tensors_and_dataloaders():
    dicts = list(load_calibration([batch(0), batch(1)], NAMES))
    tuples = list(
        load_calibration(
            [(torch.tensor(b["input_ids"]), b["attention_mask"]) for b in (batch(0), batch(1))], NAMES
        )
    )
    for a, b in zip(dicts, tuples):
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
    x = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=2)
    calibration = load_calibration(loader, ["X"])
    assert [b["X"].shape for b in calibration] == [(2, 4)] * 3 and len(list(calibration)) == 3
    assert load_calibration(None, NAMES) is None
    given = Calibration(lambda: iter([]))
    assert load_calibration(given, NAMES) is given


class Tracked(np.ndarray):
    """An array that counts how many of its kind are alive."""

    alive = 0
    most = 0


def tracked(array):
    out = array.view(Tracked)
    Tracked.alive += 1
    Tracked.most = max(Tracked.most, Tracked.alive)
    weakref.finalize(out, lambda: setattr(Tracked, "alive", Tracked.alive - 1))
    return out


MLP_TEXT = """<ir_version: 10, opset_import: ["" : 23]>
g (float[N, 32] X) => (float[N, 8] Y) {
    H = Gemm<transB=1>(X, W1, B1)
    R = Relu(H)
    Y = MatMul(R, W2T)
}"""


def mlp():
    rng = np.random.default_rng(1)
    w1, b1 = rng.standard_normal((64, 32)).astype(np.float32), rng.standard_normal(64).astype(np.float32)
    w2 = rng.standard_normal((8, 64)).astype(np.float32)
    model = model_from_text(MLP_TEXT, {"W1": w1, "B1": b1, "W2T": np.ascontiguousarray(w2.T)})
    return ir.serde.serialize_model(model), (w1, b1, w2)


def test_a_generator_streams_through_a_staged_prune():
    """Two layers, so two passes over the data; a one-shot generator is read once (kept on disk
    for the second pass) and never holds more than a couple of batches alive."""
    proto, _ = mlp()
    rng = np.random.default_rng(2)
    Tracked.alive = Tracked.most = 0
    produced = 0

    def batches():
        nonlocal produced
        for _ in range(12):
            produced += 1
            gc.collect()
            yield (tracked(rng.standard_normal((16, 32)).astype(np.float32)),)

    result = api.sparsify_ir(proto, "*=2:4/sparsegpt", calibration=batches(), portable=True)
    assert produced == 12 and Tracked.most <= 2
    assert [row.method for row in result.report] == ["sparsegpt", "sparsegpt"]


def test_a_reiterable_source_is_read_once_per_stage():
    proto, _ = mlp()
    x = np.random.default_rng(3).standard_normal((4, 16, 32)).astype(np.float32)

    class Source:
        passes = 0

        def __iter__(self):
            Source.passes += 1
            return iter([(b,) for b in x])

    api.sparsify_ir(proto, "*=2:4/sparsegpt", calibration=Source(), portable=True)
    assert Source.passes == 2  # layer 2 is measured after layer 1 is pruned


def test_sparsify_with_sparsegpt_matches_numpy(tmp_path):
    """End to end through the API with an .npz: each layer pruned on the inputs it sees with the
    layers before it pruned, sparse ops run by onnxruntime against numpy on the pruned weights."""
    proto, (w1, b1, w2) = mlp()
    x = np.random.default_rng(4).standard_normal((5, 16, 32)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", X=x)
    out = sparsecc.sparsify(proto, "*=2:4/sparsegpt", calibration=str(tmp_path / "calib.npz"))
    assert any(node.domain == "sparsecc" for node in out.graph.node)
    rows = x.reshape(-1, 32).astype(np.float64)
    pattern = parse_pattern("2:4/sparsegpt")
    p1 = prune_weight(pattern, w1, rows.T @ rows)
    hidden = np.maximum(rows @ p1.T.astype(np.float64) + b1, 0)
    p2 = prune_weight(pattern, w2, hidden.T @ hidden)
    test = np.random.default_rng(5).standard_normal((3, 32)).astype(np.float32)
    want = np.maximum(test @ p1.T + b1, 0) @ p2.T
    got = run(ir.serde.deserialize_model(out), {"X": test})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ([{"input_ids": np.zeros((1, 8))}], "holds ['input_ids'], the model's inputs are"),
        ([(np.zeros((1, 8)),)], "has 1 arrays, the model takes"),
        ([], "holds no batches"),
        (42, "must be an .npz path or an iterable"),
        ("missing.npz", "cannot read calibration data"),
    ],
)
def test_bad_calibration_is_one_clear_error(source, needle):
    with pytest.raises(InputError) as info:
        list(load_calibration(source, NAMES))
    assert needle in str(info.value) and "\n" not in str(info.value)


def _graph_input():
    proto, _ = mlp()
    return [ir.serde.deserialize_model(proto).graph.inputs[0]]


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"X": np.zeros((2, 4, 32), np.float64)}, "input 'X' is float64, the model takes float32"),
        ({"X": np.zeros((2, 4, 31), np.float32)}, "input 'X' has shape [4, 31], the model takes [?, 32]"),
        ({"X": np.zeros((2, 32), np.float32)}, "input 'X' has shape [32]"),
        ({"Z": np.zeros((2, 4, 32), np.float32)}, "holds ['Z'], the model's inputs are ['X']"),
        ({"X": np.zeros((0, 4, 32), np.float32)}, "holds no batches"),
        (b"", "not an .npz archive"),
        (b"this is not a zip", "not an .npz archive"),
    ],
)
def test_bad_npz_is_one_clear_error_when_opened(tmp_path, arrays, needle):
    path = tmp_path / "calib.npz"
    if isinstance(arrays, bytes):
        path.write_bytes(arrays)
    else:
        np.savez(path, **arrays)
    with pytest.raises(InputError) as info:
        load_calibration(str(path), _graph_input())
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_bad_batches_from_python_name_the_batch():
    calibration = load_calibration(
        [(np.zeros((4, 32), np.float32),), (np.zeros((4, 32), np.float64),)], _graph_input()
    )
    with pytest.raises(
        InputError, match="calibration batch 1: input 'X' is float64, the model takes float32"
    ):
        list(calibration)


def test_the_passes_see_it_in_the_context():
    x = np.random.default_rng(0).standard_normal((4, 32, 256)).astype(np.float32)
    result = api.sparsify_ir("zoo:mlp", "existing", calibration=[(b,) for b in x])
    assert isinstance(result.context.calibration, Calibration) and len(list(result.context.calibration)) == 4
