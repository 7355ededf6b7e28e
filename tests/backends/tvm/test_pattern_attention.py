"""PatternAttention through the TVM backend: the fused video-DiT and one-node models against
onnxruntime running the op's reference body."""

import logging

import numpy as np
import onnx_ir as ir
import pytest

tvm = pytest.importorskip("tvm")

import sparsecc  # noqa: E402
from sparsecc.backends.ort import session  # noqa: E402
from sparsecc.backends.tvm.importer import import_onnx  # noqa: E402
from sparsecc.models.video_dit import calibration_batch  # noqa: E402
from sparsecc.ops import pattern_attention  # noqa: E402
from sparsecc.passes.fuse_heads import FuseHeadsPass  # noqa: E402
from sparsecc.sparsity.attention_patterns import HeadPattern, TokenLayout  # noqa: E402
from sparsecc.sparsity.head_table import HeadTable, LayerHeads  # noqa: E402
from tests.backends.tvm.test_kernels_pattern_attention import random_blocks  # noqa: E402
from tests.passes.video_dit_small import CONFIG, LAYOUT, exported, planted  # noqa: E402


def one_node(pattern: HeadPattern, layout: TokenLayout, heads=2, d=16):
    """Q, K, V [1, heads, N, d] -> PatternAttention -> Y, with its reference body."""
    shape = ir.Shape([1, heads, layout.tokens, d])
    q, k, v = (ir.Value(name=n, type=ir.TensorType(ir.DataType.FLOAT), shape=shape) for n in "qkv")
    node = pattern_attention.make_node(q, k, v, pattern, layout, head_dim=d, scale=0.4, name="pa")
    node.outputs[0].name = "y"
    graph = ir.Graph([q, k, v], node.outputs, nodes=[node], opset_imports={"": 23}, name="one_node")
    model = ir.Model(graph, ir_version=10)
    pattern_attention.attach_function(model)
    return ir.serde.serialize_model(model)


def feeds(layout: TokenLayout, heads=2, d=16, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((1, heads, layout.tokens, d)).astype(np.float32) for n in "qkv"}


def check(got, want):
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-4 * np.abs(want).max())


def test_fused_video_dit_matches_onnxruntime(caplog):
    model = exported()
    table = HeadTable(LAYOUT, tuple(LayerHeads(tuple(layer)) for layer in planted()))
    assert FuseHeadsPass(table)(model).modified
    proto = ir.serde.serialize_model(model)
    x = calibration_batch(CONFIG, 1, seed=11)
    with caplog.at_level(logging.INFO, logger="sparsecc.backends.tvm.importer"):
        compiled = sparsecc.compile(proto, None, {"x": x})
    ran = {m for m in caplog.messages if m.startswith("PatternAttention")}
    for kernel in ("attention_cpu", *(f"pattern_attention_{m}_cpu" for m in ("diag", "mdiag", "vstripe"))):
        assert any(m.endswith(f"runs {kernel}") for m in ran), (kernel, ran)
    got = compiled(x)
    check(got[0] if isinstance(got, (list, tuple)) else got, session.run(proto, {"x": x})[0])


ONE_NODE = {  # text first, odd sizes (query tiles straddle frames and the text)
    "blocks": lambda layout: random_blocks(layout, (8, 5)),
    "mdiag": lambda layout: HeadPattern("mdiag", radius=1),
    "vstripe": lambda layout: HeadPattern("vstripe", stripes=(2, 3, 17)),
}


@pytest.mark.parametrize("mode", ONE_NODE, ids=list(ONE_NODE))
def test_one_node_matches_onnxruntime(mode):
    layout = TokenLayout(3, 9, 4, True)
    proto = one_node(ONE_NODE[mode](layout), layout)
    inputs = feeds(layout)
    compiled = sparsecc.compile(proto, None, inputs)
    got = compiled(*inputs.values())
    check(got[0] if isinstance(got, (list, tuple)) else got, session.run(proto, inputs)[0])


def test_without_a_cpu_target_the_pattern_is_a_dense_bias():
    from tvm import relax

    layout = TokenLayout(2, 6, 3, False)
    proto = one_node(HeadPattern("diag"), layout, d=8)
    inputs = feeds(layout, d=8)
    module = import_onnx(proto, {n: a.shape for n, a in inputs.items()}, {n: "float32" for n in inputs})
    assert not any("pattern_attention" in gv.name_hint for gv in module.functions)
    vm = relax.VirtualMachine(tvm.compile(module, target="llvm"), tvm.cpu())
    got = vm["main"](*[tvm.runtime.tensor(a) for a in inputs.values()]).numpy()
    check(got, session.run(proto, inputs)[0])
