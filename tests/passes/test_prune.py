import numpy as np
import pytest

from sparsecc.errors import SpecError
from sparsecc.passes.canonicalize import CanonicalizePass
from sparsecc.passes.context import CompileContext
from sparsecc.passes.linear import find_linears
from sparsecc.passes.prune import PrunePass
from sparsecc.sparsity.detect import conforms_nm
from sparsecc.sparsity.spec import SparsitySpec
from tests.onnx_text import apply, linear_model

W = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)


def pruned(spec: str, w=W):
    model = linear_model(w)
    apply(CanonicalizePass(), model)
    context = CompileContext(spec=SparsitySpec.parse(spec))
    result = apply(PrunePass(context), model)
    return result.modified, find_linears(model.graph)[0].w(), context


def test_unstructured_hits_the_exact_sparsity():
    modified, w, context = pruned("unstructured@0.9")
    assert modified
    assert np.count_nonzero(w) == W.size - round(0.9 * W.size)
    assert context.weights["W"].pattern == "unstructured@0.9"


def test_block_prunes_whole_blocks():
    modified, w, _ = pruned("W=block(1,16)@0.75")
    assert modified
    present = np.any(w.reshape(32, 1, 4, 16) != 0, axis=(1, 3))
    assert present.sum() == 32 * 4 // 4


def test_two_four_conforms():
    modified, w, _ = pruned("*=2:4")
    assert modified and conforms_nm(w, 2, 4) and np.count_nonzero(w) == W.size // 2


def test_not_modified_when_already_conforming_or_not_selected():
    w24 = pruned("2:4")[1]
    assert pruned("2:4", w24)[0] is False
    assert pruned("other*=2:4")[0] is False
    assert pruned("existing")[0] is False
    assert pruned("dense")[0] is False


def test_block_that_does_not_divide_is_a_spec_error():
    with pytest.raises(SpecError, match="does not divide"):
        pruned("block(3,16)@0.5")
