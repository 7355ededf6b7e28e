"""Layer input statistics: stages in dependency order, Gram matrices from onnxruntime, im2col for Convs."""

import numpy as np
import onnx_ir as ir

from sparsecc.passes.conv import find_weighted
from sparsecc.passes.layer_inputs import im2col, input_grams, stages
from tests.onnx_text import model_from_text, run

RNG = np.random.default_rng(0)

BRANCHES = """<ir_version: 10, opset_import: ["" : 23]>
g (float[N, 8] X) => (float[N, 8] Y) {
    a = MatMul(X, A)
    b = MatMul(X, B)
    s = Add(a, b)
    r = Relu(s)
    c = MatMul(r, C)
    d = MatMul(X, D)
    Y = Add(c, d)
}"""


def weights(*names):
    return {n: RNG.standard_normal((8, 8)).astype(np.float32) for n in names}


def test_stages_follow_dependencies_not_graph_order():
    model = model_from_text(BRANCHES, weights("A", "B", "C", "D"))
    layers = find_weighted(model.graph)
    names = [m.name for m in layers]
    assert [[names[i] for i in stage] for stage in stages(model.graph, layers)] == [["A", "B", "D"], ["C"]]


def test_grams_of_graph_inputs_and_intermediate_values():
    inits = weights("A", "B", "C", "D")
    model = model_from_text(BRANCHES, inits)
    layers = find_weighted(model.graph)
    batches = [{"X": RNG.standard_normal((4, 8)).astype(np.float32)} for _ in range(3)]
    grams = input_grams(model, layers, batches)
    x = np.concatenate([b["X"] for b in batches]).astype(np.float64)
    r = np.maximum(x @ inits["A"] + x @ inits["B"], 0)
    for name, gram in zip([m.name for m in layers], grams):
        rows = r if name == "C" else x
        np.testing.assert_allclose(gram, rows.T @ rows, rtol=1e-5, atol=1e-5)
    assert [v.name for v in model.graph.outputs] == ["Y"]  # the model is left as it was


CONV = """<ir_version: 10, opset_import: ["" : 23]>
g (float[2, 3, 9, 8] X) => (float[2, 5, 4, 4] Y) {
    Y = Conv<strides=[2, 2], pads=[1, 2, 1, 0], dilations=[1, 2]>(X, W)
}"""


def test_im2col_rows_times_flat_w_are_the_conv():
    w = RNG.standard_normal((5, 3, 3, 2)).astype(np.float32)
    model = model_from_text(CONV, {"W": w})
    x = RNG.standard_normal((2, 3, 9, 8)).astype(np.float32)
    (match,) = find_weighted(model.graph)
    rows = im2col(x, match.attributes())
    y = run(model, {"X": x})[0]  # [N, O, OH, OW]
    np.testing.assert_allclose(
        rows @ match.w().T, y.transpose(0, 2, 3, 1).reshape(-1, 5), rtol=1e-5, atol=1e-5
    )
    (gram,) = input_grams(model, [match], [{"X": x}])
    np.testing.assert_allclose(gram, rows.astype(np.float64).T @ rows, rtol=1e-6)
    assert isinstance(model, ir.Model)
