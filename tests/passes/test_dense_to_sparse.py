import numpy as np
import pytest

from sparsecc import ops
from sparsecc.backends.ort.backend import OrtCostModel
from sparsecc.backends.tvm.cost import TvmCostModel
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.passes.canonicalize import CanonicalizePass
from sparsecc.passes.cleanup import CleanupPass
from sparsecc.passes.context import CompileContext
from sparsecc.passes.dense_to_sparse import DenseToSparsePass
from sparsecc.passes.prune import PrunePass
from sparsecc.sparsity.masks import block_mask, nm_mask, unstructured_mask
from sparsecc.sparsity.spec import SparsitySpec
from tests.onnx_text import apply, linear_model, run

RNG = np.random.default_rng(3)
W = RNG.standard_normal((64, 128)).astype(np.float32)
B = RNG.standard_normal(64).astype(np.float32)
X = RNG.standard_normal((2, 5, 128)).astype(np.float32)


def convert(w, spec, bias=B, prune=False, by_bytes=False):
    """`by_bytes`: the onnxruntime backend's cost model (a format pays when the file shrinks)."""
    model = linear_model(w, bias, batch="2, 5")
    apply(CanonicalizePass(), model)
    target = resolve_target("x86_64")  # a fixed CPU: the same decisions on every host
    cost_model = OrtCostModel() if by_bytes else TvmCostModel(target)
    context = CompileContext(spec=SparsitySpec.parse(spec), target=target, cost_model=cost_model)
    if prune:
        apply(PrunePass(context), model)
    want = run(model, {"X": X})[0]
    result = apply(DenseToSparsePass(context), model)
    apply(CleanupPass(), model)
    return result.modified, model, context.weights["W"], want


@pytest.mark.parametrize(
    ("w", "spec", "op_type", "label"),
    [
        (W * block_mask(W, (1, 16), 0.9), "block(1,16)@0.9", "BsrMatMul", "BSR 1x16"),
        (W * block_mask(W, (16, 1), 0.9), "existing", "BsrMatMul", "BSR 16x1"),
        (W * nm_mask(W, 2, 4), "2:4", "NmMatMul", "N:M 2:4"),  # priced by bytes: 2:4 breaks even on x86
        (W * nm_mask(W, 2, 4), "existing", "NmMatMul", "N:M 2:4"),
        (W * unstructured_mask(W, 0.95), "unstructured@0.95", "CsrMatMul", "CSR"),
        (W * unstructured_mask(W, 0.95), "existing", "CsrMatMul", "CSR"),
    ],
)
def test_rewrites_to_the_sparse_op_with_same_outputs(w, spec, op_type, label):
    by_bytes = op_type == "NmMatMul"
    modified, model, row, want = convert(w, spec, by_bytes=by_bytes)
    assert modified
    assert [(n.domain, n.op_type) for n in model.graph] == [(ops.DOMAIN, op_type)]
    assert row.format == label and (by_bytes or row.est_speedup > 1)
    assert model.graph.outputs[0].name == "Y"
    assert (ops.DOMAIN, op_type, "") in model.functions
    np.testing.assert_allclose(run(model, {"X": X})[0], want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize(
    ("w", "spec", "reason"),
    [
        (W * nm_mask(W, 2, 4), "2:4", "N:M 2:4 at density 0.50 is estimated at 1.00x dense"),
        (W, "existing", "the weight has no zeros"),
        (W * unstructured_mask(W, 0.3), "existing", "no sparse format pays"),
        (W, "dense", "keeps this weight dense"),
        (W, "other=2:4", "no spec rule matches"),
        (W, "2:4", "does not conform to 2:4"),
        (W * unstructured_mask(W, 0.5), "unstructured@0.5", "CSR at density 0.50"),
    ],
)
def test_stays_dense_with_a_reason(w, spec, reason):
    modified, model, row, _ = convert(w, spec)
    assert not modified
    assert row.format == "dense" and reason in row.reason
    assert [n.op_type for n in model.graph] == ["MatMul", "Add"]


def test_prune_then_convert_without_bias():
    modified, model, row, want = convert(W, "block(4,4)@0.9", bias=None, prune=True)
    assert modified and row.format == "BSR 4x4"
    assert len(model.graph[0].inputs) == 4  # no bias input
    np.testing.assert_allclose(run(model, {"X": X})[0], want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_existing_picks_the_fastest_paying_format():
    """'existing' prices every format the structure allows and keeps the fastest."""
    _, _, row, _ = convert(W * block_mask(W, (16, 1), 0.9), "existing")
    assert row.format == "BSR 16x1"  # 16x1 blocks beat the 8x1, 4x1 and CSR views of the same zeros
    assert "bsr_16x1_x86" in row.reason  # 4x1 runs as fast; 16x1 stores fewer indices


def test_needs_a_cost_model():
    model = linear_model(W, B, batch="2, 5")
    apply(CanonicalizePass(), model)
    with pytest.raises(Exception, match="needs the backend's cost model"):
        DenseToSparsePass(CompileContext(spec=SparsitySpec.parse("existing")))(model)
