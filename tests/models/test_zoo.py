"""End to end on every zoo model: export, sparsify with its default spec, check with onnxruntime."""

import numpy as np
import onnx_ir as ir
import pytest
import torch

from sparsecc import models
from sparsecc.backends.ort import session
from sparsecc.compiler import api, frontends


@pytest.mark.parametrize("name", models.names())
def test_zoo_model_end_to_end(name):
    zoo = models.get(name)
    with torch.no_grad():
        expected = zoo.module(*zoo.example_inputs).numpy()
    ir_model, feeds = frontends.resolve_model(f"zoo:{name}")
    dense = ir.serde.serialize_model(ir_model)
    got = session.run(dense, feeds)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())

    result = api.sparsify_ir(dense, zoo.default_spec, feeds)
    assert not result.warnings, result.warnings
    sparse_rows = [r for r in result.report if r.format != "dense"]
    assert sparse_rows, "the default spec should sparsify something"
    sparse = ir.serde.serialize_model(result.model)
    portable = ir.serde.serialize_model(api.sparsify_ir(dense, zoo.default_spec, feeds, portable=True).model)
    agreement = session.compare(sparse, portable, feeds, tolerance=1e-5)
    assert agreement.ok, agreement
    assert sparse.ByteSize() < dense.ByteSize()


def test_unknown_model_lists_known():
    from sparsecc.errors import ModelError

    with pytest.raises(ModelError, match="known models: mlp, bert, cnn, vit, resnet, mobilenet"):
        models.get("efficientnet")


def test_bert_base_config_builds():
    from sparsecc.models.bert import BertConfig, build_bert

    module, (ids,) = build_bert(BertConfig(layers=1, hidden=768, heads=12, ffn=3072, seq=128))
    assert ids.shape == (1, 128)
    assert module.encoder.layer[0].intermediate.dense.weight.shape == (3072, 768)
    assert BertConfig.base().layers == 12
