"""fuse-heads: PatternAttention groups, exact against the masked-dense model in onnxruntime."""

import logging

import numpy as np
import onnx_ir as ir
import pytest

from sparsecc import ops
from sparsecc.backends.ort import session
from sparsecc.compiler import api
from sparsecc.compiler.pipeline import pipeline_for
from sparsecc.errors import SpecError
from sparsecc.models.video_dit import calibration_batch
from sparsecc.passes.attention_heads import apply_masks, attention_layers, output_projection
from sparsecc.passes.context import CompileContext
from sparsecc.passes.fuse_heads import FuseHeadsPass
from sparsecc.sparsity.attention_patterns import HeadPattern, pattern_mask
from sparsecc.sparsity.head_table import HeadTable, LayerHeads
from sparsecc.sparsity.spec import SparsitySpec
from tests.passes.video_dit_small import CONFIG, LAYOUT, batches, exported, planted


@pytest.fixture(scope="module")
def model():
    return exported()


def copy(model):
    return ir.serde.deserialize_model(ir.serde.serialize_model(model))


def planted_table() -> HeadTable:
    return HeadTable(LAYOUT, tuple(LayerHeads(tuple(layer)) for layer in planted()))


def run(model, x):
    return session.run(ir.serde.serialize_model(model), {"x": x})[0]


def test_fused_model_equals_the_masked_dense_model(model):
    table = planted_table()
    masked = copy(model)
    for layer, heads in zip(attention_layers(masked, LAYOUT), table.layers):
        apply_masks(masked, layer.node, list(heads.patterns), LAYOUT)
    fused = copy(model)
    assert FuseHeadsPass(table)(fused).modified
    ops.verify_model(fused)
    kinds = [n.op_type for n in fused.graph]
    assert "Attention" not in kinds
    groups = [len({p for p in layer.patterns if p.mode != "skip"}) for layer in table.layers]
    assert kinds.count("PatternAttention") == sum(groups)  # one per group of equal patterns
    x = calibration_batch(CONFIG, 1, seed=11)
    np.testing.assert_allclose(run(fused, x), run(masked, x), rtol=1e-4, atol=1e-4)


def test_all_full_table_and_no_table_change_nothing(model):
    full = HeadTable(LAYOUT, (LayerHeads((HeadPattern("full"),) * CONFIG.heads),) * CONFIG.depth)
    assert not FuseHeadsPass(full)(copy(model)).modified
    assert not FuseHeadsPass()(copy(model)).modified


def test_table_of_the_wrong_size_is_a_spec_error(model):
    table = planted_table()
    short = HeadTable(table.layout, table.layers[:1])
    with pytest.raises(SpecError, match="has 1 layers, the model 2"):
        FuseHeadsPass(short)(copy(model))


def test_spec_pipeline_searches_and_fuses(model):
    spec = SparsitySpec.parse({"attention": {"layout": CONFIG.layout, "heads": "search"}})
    assert pipeline_for(spec).startswith("canonicalize,fuse-attention,search-heads,fuse-heads,")
    result = api.sparsify_ir(copy(model), spec, calibration=batches(count=2), backend="onnxruntime")
    kinds = [n.op_type for n in result.model.graph]
    assert "PatternAttention" in kinds and "Attention" not in kinds
    x = calibration_batch(CONFIG, 1, seed=12)
    dense = run(model, x)
    np.testing.assert_allclose(run(result.model, x), dense, atol=0.05 * np.abs(dense).max())


def masked_dense(model, table: HeadTable):
    masked = copy(model)
    for layer, heads in zip(attention_layers(masked, LAYOUT), table.layers):
        apply_masks(masked, layer.node, list(heads.patterns), LAYOUT)
    return masked


def projection_weights(model, layer_index: int) -> list[ir.Value]:
    """W_q, W_k, W_v (as MatMul(X, W) reads them) and W_o of one attention layer."""
    layer = attention_layers(model, LAYOUT)[layer_index]
    found = []
    for x in layer.node.inputs[:3]:
        reshape = x.producer().inputs[0].producer()
        found.append(reshape.inputs[0].producer().inputs[1])
    found.append(output_projection(layer.node).inputs[1])
    return found


def test_heads_are_permuted_inside_the_weights_without_gathers(model):
    table = planted_table()
    fused, context = copy(model), CompileContext()
    before = [w.const_value.numpy().copy() for w in projection_weights(fused, 0)]
    assert FuseHeadsPass(table, context)(fused).modified
    assert [n.op_type for n in fused.graph].count("Gather") == 0
    x = calibration_batch(CONFIG, 1, seed=13)
    np.testing.assert_allclose(run(fused, x), run(masked_dense(model, table), x), rtol=1e-4, atol=1e-4)
    # the weights' heads now run in group order, skipped heads last
    rows = [row for row in context.attention if row.layer_index == 0]
    order = [h for row in rows for h in row.heads]
    assert sorted(order) == list(range(CONFIG.heads)) and order != sorted(order)
    assert [row.mode for row in rows][-1] == "skip" and all(r.reorder == "in the weights" for r in rows)
    d = CONFIG.head_dim
    by_name = {v.name: v for v in fused.graph.initializers.values()}
    wq, *_, wo = (by_name[w.name].const_value.numpy() for w in projection_weights(model, 0))
    for new, old in enumerate(order):
        np.testing.assert_array_equal(wq[:, new * d : (new + 1) * d], before[0][:, old * d : (old + 1) * d])
        np.testing.assert_array_equal(wo[new * d : (new + 1) * d], before[3][old * d : (old + 1) * d])


def test_report_rows_give_mode_heads_and_density(model):
    table, context = planted_table(), CompileContext()
    fused = copy(model)
    FuseHeadsPass(table, context)(fused)
    nodes = {n.name for n in fused.graph if n.op_type == "PatternAttention"}
    assert {row.node for row in context.attention if row.mode != "skip"} == nodes
    for index, layer in enumerate(table.layers):
        rows = [row for row in context.attention if row.layer_index == index]
        modes = [p.mode for p in layer.patterns]
        assert sorted(h for row in rows for h in row.heads) == list(range(CONFIG.heads))
        for row in rows:
            assert all(modes[h] == row.mode for h in row.heads)
            mask = pattern_mask(layer.patterns[row.heads[0]], LAYOUT)
            assert row.density == (0.0 if row.mode == "skip" else pytest.approx(mask.mean(), abs=1e-12))
            assert row.kernel is None  # a backend fills it in


def add_bias(model, value: ir.Value, bias: np.ndarray) -> None:
    """MatMul(X, W) -> MatMul(X, W) + b on the projection that makes `value` (Q, K or V)."""
    reshape = value.producer().inputs[0].producer()
    y = reshape.inputs[0]
    b = ir.Value(name=f"{y.name}.bias", shape=ir.Shape(bias.shape), type=y.type, const_value=ir.tensor(bias))
    model.graph.register_initializer(b)
    add = ir.Node("", "Add", [y, b], name=f"{y.name}.add_bias")
    add.outputs[0].shape, add.outputs[0].type = y.shape, y.type
    model.graph.insert_after(y.producer(), add)
    reshape.replace_input_with(0, add.outputs[0])


def test_biases_are_permuted_with_their_weights(model):
    table = planted_table()
    biased = copy(model)
    rng = np.random.default_rng(3)
    for x in attention_layers(biased, LAYOUT)[1].node.inputs[:3]:
        add_bias(biased, x, rng.standard_normal(CONFIG.dim).astype(np.float32))
    fused = copy(biased)
    assert FuseHeadsPass(table)(fused).modified
    assert [n.op_type for n in fused.graph].count("Gather") == 0
    x = calibration_batch(CONFIG, 1, seed=14)
    np.testing.assert_allclose(run(fused, x), run(masked_dense(biased, table), x), rtol=1e-4, atol=1e-4)


def test_weights_used_elsewhere_fall_back_to_gathers(model, caplog):
    table = planted_table()
    shared = copy(model)
    wq, _, _, wo = projection_weights(shared, 0)
    for w in (wq, wo):  # a second reader: permuting these weights would change its result
        reader = ir.Node("", "Identity", [w], name=f"{w.name}.reader")
        reader.outputs[0].name, reader.outputs[0].shape, reader.outputs[0].type = (
            f"{w.name}.copy",
            w.shape,
            w.type,
        )
        shared.graph.append(reader)
        shared.graph.outputs.append(reader.outputs[0])
    fused, context = copy(shared), CompileContext()
    with caplog.at_level(logging.INFO, logger="sparsecc.passes.fuse_heads"):
        assert FuseHeadsPass(table, context)(fused).modified
    assert any("gathered at run time" in m and "used elsewhere" in m for m in caplog.messages)
    assert any("reordered by a Gather" in m for m in caplog.messages)
    gathers = [n for n in fused.graph if n.op_type == "Gather"]
    assert gathers and all(n.name.startswith(attention_layers(shared, LAYOUT)[0].node.name) for n in gathers)
    assert {r.reorder for r in context.attention if r.layer_index == 0} == {"Q/K/V: Gather, output: Gather"}
    assert {r.reorder for r in context.attention if r.layer_index == 1} == {"in the weights"}
    x = calibration_batch(CONFIG, 1, seed=15)
    got, want = (
        session.run(ir.serde.serialize_model(m), {"x": x}) for m in (fused, masked_dense(shared, table))
    )
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # the export alone takes ~25 s; the tests above cover the same model class, smaller
def test_zoo_video_dit_runs_without_gathers():
    from sparsecc.compiler import frontends
    from sparsecc.models.video_dit import VideoDiTConfig, build_video_dit, planted_table
    from sparsecc.passes.fuse_attention import FuseAttentionPass
    from sparsecc.sparsity.attention_patterns import TokenLayout

    config = VideoDiTConfig()  # as `zoo:video_dit` builds it
    layout = TokenLayout(**config.layout)
    module, inputs = build_video_dit(config)
    model, _ = frontends.resolve_model(module, inputs)
    FuseAttentionPass()(model)
    layers = tuple(LayerHeads(tuple(map(HeadPattern.from_dict, layer))) for layer in planted_table(config))
    table = HeadTable(layout, layers)
    masked = copy(model)
    for layer, heads in zip(attention_layers(masked, layout), table.layers):
        apply_masks(masked, layer.node, list(heads.patterns), layout)
    fused = copy(model)
    assert FuseHeadsPass(table)(fused).modified
    assert [n.op_type for n in fused.graph].count("Gather") == 0
    x = calibration_batch(config, 1, seed=5)
    np.testing.assert_allclose(run(fused, x), run(masked, x), rtol=1e-4, atol=1e-4)
