"""Convs to the sparsity passes: batch norms folded, 1x1 Convs kept, weights seen as [O, C/g*kh*kw],
pruned, rewritten to the sparse Conv forms whose reference bodies onnxruntime runs."""

import numpy as np
import onnx_ir as ir
import pytest

from sparsecc import ops
from sparsecc.errors import VerificationError
from sparsecc.passes.canonicalize import CanonicalizePass
from sparsecc.passes.context import CompileContext
from sparsecc.passes.conv import find_convs, find_weighted
from sparsecc.passes.dense_to_sparse import DenseToSparsePass
from sparsecc.passes.prune import PrunePass
from sparsecc.sparsity.spec import SparsitySpec
from tests.onnx_text import apply, model_from_text, run

RNG = np.random.default_rng(3)
X = RNG.standard_normal((1, 8, 10, 10)).astype(np.float32)
W3 = RNG.standard_normal((16, 4, 3, 3)).astype(np.float32)  # groups=2
W1 = RNG.standard_normal((12, 16, 1, 1)).astype(np.float32)


NORM = {
    "scale": RNG.uniform(0.5, 1.5, 16).astype(np.float32),
    "shift": RNG.uniform(-0.1, 0.1, 16).astype(np.float32),
    "mean": RNG.uniform(-0.1, 0.1, 16).astype(np.float32),
    "var": RNG.uniform(0.5, 1.5, 16).astype(np.float32),
}


def conv_bn_model():
    """Conv (3x3, stride 2, groups 2) -> BatchNormalization -> Relu -> 1x1 Conv."""
    constants = {"W3": W3, "W1": W1, **NORM}
    return model_from_text(
        """<ir_version: 10, opset_import: ["" : 23]>
        g (float[1, 8, 10, 10] X) => (float[1, 12, 5, 5] Y) {
          c = Conv<strides=[2, 2], pads=[1, 1, 1, 1], group=2>(X, W3)
          n = BatchNormalization(c, scale, shift, mean, var)
          r = Relu(n)
          Y = Conv(r, W1)
        }""",
        constants,
    )


def test_batch_norm_folds_and_convs_stay_convs():
    model = conv_bn_model()
    want = run(model, {"X": X})[0]
    assert apply(CanonicalizePass(), model).modified
    assert [n.op_type for n in model.graph] == ["Conv", "Relu", "Conv"]
    first, second = find_convs(model.graph)
    assert first.shape == (16, 36) and second.shape == (12, 16)  # [O, C/g x kh x kw]
    assert first.bias is not None and first.attributes()["group"] == 2
    np.testing.assert_allclose(run(model, {"X": X})[0], want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def sparsify(model, spec: str, cost_model):
    context = CompileContext(spec=SparsitySpec.parse(spec), cost_model=cost_model)
    for step in (CanonicalizePass(), PrunePass(context), DenseToSparsePass(context)):
        apply(step, model)
    return context


class AlwaysPays:
    name = "test: every sparse format pays"

    def estimate(self, fmt, w, m):
        from sparsecc.passes.cost import Estimate

        storage = fmt.storage(w)
        return Estimate(fmt, storage, w.size * 4, 2.0, True, "pays", "test")


@pytest.mark.parametrize(
    "spec, op_type", [("unstructured@0.7", "CsrConv"), ("block(4,1)@0.5", "BsrConv"), ("2:4", "NmConv")]
)
def test_pruned_convs_become_sparse_conv_ops_that_onnxruntime_runs(spec, op_type):
    model = conv_bn_model()
    canonical = conv_bn_model()
    apply(CanonicalizePass(), canonical)
    context = sparsify(model, spec, AlwaysPays())
    assert [n.op_type for n in model.graph] == [op_type, "Relu", op_type]
    rows = {row.name: row for row in context.report}
    assert rows["W3"].shape == (16, 36) and rows["W3"].format != "dense"
    # the reference: the canonical model with the masked weights, in onnxruntime
    for match, node in zip(find_convs(canonical.graph), [n for n in model.graph if ops.is_conv_node(n)]):
        w = ops.weight_from_node(node).to_dense()
        assert np.count_nonzero(w) < w.size
        match.weight.const_value = ir.tensor(w.reshape(match.weight.const_value.shape))
    want = run(canonical, {"X": X})[0]
    np.testing.assert_allclose(run(model, {"X": X})[0], want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_the_verifier_checks_a_conv_forms_channels():
    model = conv_bn_model()
    sparsify(model, "unstructured@0.7", AlwaysPays())
    node = next(n for n in model.graph if ops.is_conv_node(n))
    ops.verify_node(node)
    node.attributes["kernel_shape"] = ir.AttrInt64s("kernel_shape", [3, 4])
    with pytest.raises(VerificationError, match="in must be 8/2 x 3 x 4"):
        ops.verify_node(node)


def test_find_weighted_lists_linears_and_convs_in_graph_order():
    model = model_from_text(
        """<ir_version: 10, opset_import: ["" : 23]>
        g (float[1, 8, 10, 10] X) => (float[1, 100, 12] Y) {
          c = Conv(X, W1x)
          s = Reshape(c, shape)
          Y = MatMul(s, Wt)
        }""",
        {
            "W1x": RNG.standard_normal((16, 8, 1, 1)).astype(np.float32),
            "shape": np.array([1, 100, 16], np.int64),
            "Wt": RNG.standard_normal((16, 12)).astype(np.float32),
        },
    )
    kinds = [type(m).__name__ for m in find_weighted(model.graph)]
    assert kinds == ["ConvMatch", "LinearMatch"]
