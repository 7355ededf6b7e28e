"""Example inputs are checked against the model before anything is built."""

import numpy as np
import pytest

from sparsecc.compiler.frontends import inputs
from sparsecc.errors import ModelError
from tests.onnx_text import linear_model, model_from_text


def test_static_model_gets_made_up_inputs_and_given_ones_are_checked():
    model = linear_model(np.ones((4, 8), np.float32), batch="3")
    made = inputs.example_feeds(model, None)
    assert made["X"].shape == (3, 8) and made["X"].dtype == np.float32
    with pytest.raises(ModelError, match=r"fixes dimension 0 to 3"):
        inputs.example_feeds(model, {"X": np.zeros((5, 8), np.float32)})
    with pytest.raises(ModelError, match="dtype float64"):
        inputs.example_feeds(model, {"X": np.zeros((3, 8))})
    with pytest.raises(ModelError, match=r"missing \['X'\].*unknown \['Y'\]"):
        inputs.example_feeds(model, {"Y": np.zeros((3, 8), np.float32)})
    specs = inputs.input_specs(model, made)
    assert [(s.name, s.shape, s.dtype) for s in specs] == [("X", (3, 8), "float32")]
    assert inputs.output_specs(model) == [{"name": "Y", "shape": [3, 4], "dtype": "float32"}]


def test_dynamic_model_needs_example_inputs():
    model = model_from_text("""<ir_version: 10, opset_import: ["" : 23]>
        g (float[N, 8] X) => (float[N, 8] Y) { Y = Relu(X) }""")
    with pytest.raises(ModelError, match="dynamic shape; pass example_inputs"):
        inputs.example_feeds(model, None)
    feeds = inputs.example_feeds(model, {"X": np.zeros((5, 8), np.float32)})
    assert feeds["X"].shape == (5, 8)
    assert inputs.output_specs(model)[0]["shape"] == [-1, 8]
