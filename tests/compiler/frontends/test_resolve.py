import numpy as np
import onnx
import onnx_ir as ir
import pytest
import torch

from sparsecc.compiler import frontends
from sparsecc.compiler.frontends import OPSET
from sparsecc.errors import ModelError
from sparsecc.ops.metadata import LAYOUT as LAYOUT_KEY
from sparsecc.ops.metadata import WEIGHT_NAME as PARAM_KEY
from tests.hf_bert import make_hf_bert
from tests.onnx_text import linear_model


@pytest.fixture(scope="module")
def hf_bert_ir():
    model, inputs = make_hf_bert()
    ir_model, feeds = frontends.resolve_model(model, inputs)
    return model, ir_model, feeds


def test_hf_bert_linear_weights_map_back_to_torch_names(hf_bert_ir):
    model, ir_model, feeds = hf_bert_ir
    assert set(feeds) == {"input_ids", "attention_mask"}
    tagged = {
        v.metadata_props[PARAM_KEY]: v
        for v in ir_model.graph.initializers.values()
        if PARAM_KEY in v.metadata_props
    }
    linears = {
        f"{name}.weight": module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    assert set(linears) <= set(tagged)
    for name, module in linears.items():
        value = tagged[name]
        stored = value.const_value.numpy()
        w = module.weight.detach().numpy()
        layout = value.metadata_props[LAYOUT_KEY]
        np.testing.assert_array_equal(stored, w.T if layout == "W^T" else w)
    # the exporter's own names are not the torch names for most of them
    assert any(v.name.startswith("val_") for v in tagged.values())
    assert ir_model.opset_imports[""] == OPSET


def test_tags_survive_save_and_load(hf_bert_ir, tmp_path):
    _, ir_model, _ = hf_bert_ir
    ir.save(ir_model, tmp_path / "m.onnx")
    loaded = frontends.load_model(tmp_path / "m.onnx")
    names = {v.metadata_props.get(PARAM_KEY) for v in loaded.graph.initializers.values()}
    assert "encoder.layer.1.intermediate.dense.weight" in names


def test_onnx_inputs_proto_path_and_ir(tmp_path):
    model = linear_model(np.ones((4, 8), np.float32))
    proto = ir.serde.serialize_model(model)
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    for source in (proto, path, str(path), model):
        loaded, inputs = frontends.resolve_model(source)
        assert inputs is None
        assert [n.op_type for n in loaded.graph] == ["MatMul"]
    assert frontends.load_model(model) is not model  # the caller's IR is never mutated


def test_old_opset_is_converted_and_still_runs(tmp_path):
    from sparsecc.backends.ort import session

    proto = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 13]>
        g (float[2, 4] X) => (float[2, 4] Y) { Y = Relu(X) }""")
    converted = frontends.load_model(proto)
    assert converted.opset_imports[""] == OPSET
    x = np.array([[-1, 2, -3, 4]] * 2, np.float32)
    np.testing.assert_array_equal(
        session.run(ir.serde.serialize_model(converted), {"X": x})[0], np.maximum(x, 0)
    )


def test_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        frontends.load_model(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(ModelError, match="junk.onnx"):
        frontends.load_model(junk)
    with pytest.raises(ModelError, match="cannot read a model from int"):
        frontends.load_model(42)
    with pytest.raises(ModelError, match="needs example inputs"):
        frontends.load_model(torch.nn.Linear(4, 4))
    with pytest.raises(ModelError, match="could not export"):
        frontends.load_model(torch.nn.Linear(4, 4), (torch.randn(2, 5),))
    with pytest.raises(ModelError, match="unknown zoo model 'nope'; known models: mlp"):
        frontends.load_model("zoo:nope")


def test_truncated_file(tmp_path):
    model = linear_model(np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32))
    data = ir.serde.serialize_model(model).SerializeToString()
    path = tmp_path / "t.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="t.onnx"):
        frontends.load_model(path)
