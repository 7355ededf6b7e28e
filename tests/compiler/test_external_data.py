"""Models with external data: read as input, written as output past a size threshold, atomically."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import sparsecc
from sparsecc.backends.ort import session
from sparsecc.compiler.onnx_save import model_bytes, save_onnx
from sparsecc.tools import cli
from tests.onnx_text import linear_model

SPEC = "*=unstructured@0.9"


def _dense_model() -> ir.Model:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((256, 128)).astype(np.float32)
    return linear_model(w, rng.standard_normal(256).astype(np.float32), batch="4")


def _feeds() -> dict[str, np.ndarray]:
    return {"X": np.random.default_rng(1).standard_normal((4, 128)).astype(np.float32)}


def test_a_model_past_the_threshold_goes_to_external_data(tmp_path):
    model = _dense_model()
    path = tmp_path / "dense.onnx"
    data = save_onnx(model, path, external_data_threshold=1000)  # the weights: 128 KiB + 1 KiB
    assert data == tmp_path / "dense.onnx.data"
    assert data.stat().st_size >= 256 * 128 * 4 and path.stat().st_size < 4096
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dense.onnx", "dense.onnx.data"]
    proto = onnx.load(str(path), load_external_data=False)
    assert proto.graph.initializer[0].data_location == onnx.TensorProto.EXTERNAL
    want = session.run(ir.serde.serialize_model(model), _feeds())
    got = session.make_session(str(path)).run(None, _feeds())  # onnxruntime reads the .data beside it
    np.testing.assert_array_equal(got[0], want[0])


def test_under_the_threshold_one_file_written_weight_by_weight(tmp_path):
    """The big weights follow the rest as merged ModelProto fragments: the file parses back to the
    same model in onnx and onnxruntime, a few framing bytes longer than one serialized message."""
    proto = ir.serde.serialize_model(_dense_model())
    path = tmp_path / "m.onnx"
    assert save_onnx(proto, path) is None
    back = onnx.load(str(path))
    onnx.checker.check_model(back, full_check=True)
    assert list(back.graph.node) == list(proto.graph.node)
    assert list(back.graph.input) == list(proto.graph.input)
    want = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    got = {t.name: onnx.numpy_helper.to_array(t) for t in back.graph.initializer}
    assert got.keys() == want.keys()
    for name, array in want.items():
        np.testing.assert_array_equal(got[name], array)
    assert 0 <= path.stat().st_size - proto.ByteSize() <= 16 * len(want)
    np.testing.assert_array_equal(session.run(str(path), _feeds())[0], session.run(proto, _feeds())[0])
    assert model_bytes(proto) == (256 * 128 + 256) * 4  # W and B


def test_sparsify_reads_external_data_and_writes_a_model_that_runs(tmp_path):
    source = tmp_path / "dense.onnx"
    save_onnx(_dense_model(), source, external_data_threshold=0)
    out = tmp_path / "sparse.onnx"
    assert cli.main(["sparsify", str(source), "--spec", SPEC, "-o", str(out)]) == 0
    # the reference: the pruned dense model, from the same file; 1e-5 relative is sparsify's own check
    reference = sparsecc.sparsify(str(source), SPEC, portable=True)
    want = session.run(reference, _feeds())[0]
    got = session.make_session(str(out)).run(None, _feeds())[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))
    assert np.count_nonzero(onnx.numpy_helper.to_array(reference.graph.initializer[0]) == 0) >= int(
        0.9 * 256 * 128
    )

    # the same sparsified proto written with external data (threshold forced) runs the same
    sparse = sparsecc.sparsify(str(source), SPEC)
    data = save_onnx(sparse, tmp_path / "external.onnx", external_data_threshold=0)
    assert data is not None and data.stat().st_size > 0
    external = session.make_session(str(tmp_path / "external.onnx")).run(None, _feeds())[0]
    np.testing.assert_array_equal(external, session.run(sparse, _feeds())[0])
    assert sparse.graph.initializer[0].data_location != onnx.TensorProto.EXTERNAL  # left unchanged


def test_a_failed_write_leaves_the_old_files_and_no_temporaries(tmp_path):
    old = tmp_path / "m.onnx"
    old.write_bytes(b"old model")
    model = _dense_model()

    def fail():
        raise OSError(28, "No space left on device")

    weight = model.graph.initializers["W"]
    weight.const_value = ir.LazyTensor(fail, dtype=ir.DataType.FLOAT, shape=ir.Shape([128, 256]))
    with pytest.raises(sparsecc.SparseccError, match="cannot write"):
        save_onnx(model, old, external_data_threshold=0)
    assert old.read_bytes() == b"old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(sparsecc.SparseccError, match="does not exist"):
        save_onnx(_dense_model(), tmp_path / "nope" / "m.onnx", external_data_threshold=0)


def test_shape_checks_run_without_the_weights_and_still_see_every_shape():
    from sparsecc.compiler.frontends.weightless import without_weights

    proto = ir.serde.serialize_model(_dense_model())
    light = without_weights(proto)
    assert [t.name for t in light.graph.initializer] == ["B"]  # 1 KiB: kept; W (128 KiB) is an input
    assert [i.name for i in light.graph.input] == ["X", "W"]
    assert light.ByteSize() < 2048 < proto.ByteSize() // 64
    full = onnx.shape_inference.infer_shapes(proto, strict_mode=True).graph.value_info
    assert onnx.shape_inference.infer_shapes(light, strict_mode=True).graph.value_info == full
    proto.graph.initializer[0].dims[:] = [100, 256]  # a MatMul that cannot multiply [4, 128]
    proto.graph.initializer[0].raw_data = np.zeros((100, 256), np.float32).tobytes()
    with pytest.raises(onnx.shape_inference.InferenceError):
        onnx.shape_inference.infer_shapes(without_weights(proto), check_type=True, strict_mode=True)
