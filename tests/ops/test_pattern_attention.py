"""PatternAttention: its reference body (run by onnxruntime) against numpy masked attention."""

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from sparsecc import ops
from sparsecc.backends.ort import session
from sparsecc.errors import VerificationError
from sparsecc.ops import pattern_attention as pa
from sparsecc.sparsity.attention_patterns import (
    HeadPattern,
    TokenLayout,
    blocks_from_mask,
    masked_attention,
    pattern_mask,
)

RNG = np.random.default_rng(3)


def single_node_model(pattern: HeadPattern, layout: TokenLayout, shape, scale=None):
    values = [ir.Value(name=n, shape=ir.Shape(shape), type=ir.TensorType(ir.DataType.FLOAT)) for n in "QKV"]
    node = pa.make_node(*values, pattern, layout, head_dim=shape[-1], scale=scale, name="attn")
    node.outputs[0].name = "Y"
    graph = ir.Graph(values, node.outputs, nodes=[node], opset_imports={"": 23}, name="g")
    model = ir.Model(graph, ir_version=10)
    pa.attach_function(model)
    ops.verify_model(model)
    return model


def check(pattern: HeadPattern, layout: TokenLayout, batch=2, heads=3, dim=8, scale=None):
    shape = (batch, heads, layout.tokens, dim)
    model = single_node_model(pattern, layout, shape, scale)
    proto = ir.serde.serialize_model(model)
    onnx.checker.check_model(proto, full_check=True)
    q, k, v = (RNG.standard_normal(shape).astype(np.float32) for _ in range(3))
    (got,) = session.run(proto, {"Q": q, "K": k, "V": v})
    want = masked_attention(q, k, v, pattern_mask(pattern, layout), scale)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


LAYOUTS = [
    TokenLayout(3, 5, 4, True),
    TokenLayout(3, 5, 4, False),
    TokenLayout(2, 7, 0),
    TokenLayout(4, 3, 1),
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
@pytest.mark.parametrize(
    "pattern",
    [
        HeadPattern("full"),
        HeadPattern("diag"),
        HeadPattern("diag", window=1),
        HeadPattern("mdiag"),
        HeadPattern("mdiag", radius=1),
        HeadPattern("vstripe", stripes=(0, 4)),
    ],
    ids=lambda p: f"{p.mode}-{p.window}-{p.radius}",
)
def test_modes_match_numpy(pattern, layout):
    check(pattern, layout)


@pytest.mark.parametrize("layout", LAYOUTS[:2], ids=str)
def test_blocks_match_numpy(layout):
    mask = pattern_mask(HeadPattern("mdiag"), layout) | (RNG.random((layout.tokens,) * 2) < 0.1)
    check(blocks_from_mask(mask, (4, 3)), layout)


def test_vstripe_without_stripes_keeps_text_only_and_custom_scale():
    check(HeadPattern("vstripe"), TokenLayout(2, 4, 3), scale=0.3)


def test_masks_keep_text_rows_and_columns():
    layout = TokenLayout(2, 4, 3, text_first=True)
    mask = pattern_mask(HeadPattern("vstripe", stripes=(1,)), layout)
    assert mask[:3].all() and mask[:, :3].all()
    assert mask[3:, 3:].sum(axis=1).tolist() == [1] * 8  # latent rows: the one stripe column


def test_verifier_rejects_bad_nodes():
    layout = TokenLayout(2, 4, 0)
    model = single_node_model(HeadPattern("diag"), layout, (1, 2, 8, 4))
    node = next(iter(model.graph))
    node.attributes["stripes"] = ir.AttrInt64s("stripes", [9])
    node.attributes["mode"] = ir.AttrString("mode", "vstripe")
    with pytest.raises(VerificationError, match="stripe columns must lie in"):
        ops.verify_model(model)
    node.attributes["mode"] = ir.AttrString("mode", "sideways")
    with pytest.raises(VerificationError, match="mode must be one of"):
        ops.verify_model(model)
    node.attributes["mode"] = ir.AttrString("mode", "diag")
    node.attributes["frames"] = ir.AttrInt64("frames", 3)
    with pytest.raises(VerificationError, match="has 8 tokens, the layout 12"):
        ops.verify_model(model)
    del node.attributes["frames"]
    with pytest.raises(VerificationError, match="attribute frames must be int"):
        ops.verify_model(model)
