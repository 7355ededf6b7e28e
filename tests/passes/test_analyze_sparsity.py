import numpy as np

from sparsecc.passes.analyze_sparsity import AnalyzeSparsityPass
from sparsecc.passes.canonicalize import CanonicalizePass
from sparsecc.passes.context import CompileContext
from sparsecc.sparsity.masks import block_mask
from tests.onnx_text import apply, linear_model


def test_records_detected_pattern_and_never_modifies():
    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    w *= block_mask(w, (1, 16), 0.5)
    model = linear_model(w)
    apply(CanonicalizePass(), model)
    context = CompileContext()
    assert not apply(AnalyzeSparsityPass(context), model).modified
    row = context.weights["W"]
    assert row.shape == (64, 32)
    assert row.density == np.count_nonzero(w) / w.size
    assert row.detected == "block 1x16 @ 50% (fill 100%)"
    assert context.analyses["W"].best_block.block == (1, 16)


def test_model_without_linears_records_nothing():
    from tests.onnx_text import model_from_text

    model = model_from_text("""<ir_version: 10, opset_import: ["" : 23]>
        g (float[4] X) => (float[4] Y) { Y = Relu(X) }""")
    context = CompileContext()
    assert not apply(AnalyzeSparsityPass(context), model).modified
    assert context.weights == {}
