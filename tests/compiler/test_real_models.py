"""transformers models of several families, exported by both torch exporters, compiled from the file.

Each is pruned in torch (80% unstructured on every linear), exported as a user would and
compiled with `compile(path, "existing")`; outputs must match onnxruntime on the same file,
attention must run as the fused kernel, and every function of the build must be scheduled by a rule (the tests run with
SPARSECC_DEBUG=1, so an unscheduled function or a crashing rule fails the compile).
"""

import numpy as np
import pytest
import torch

import sparsecc
from sparsecc.backends.ort import session
from sparsecc.models import hf
from sparsecc.sparsity.spec import SparsitySpec

pytest.importorskip("tvm")
EXPORTS = [("dynamo", 18), ("torchscript", 14)]


def prune_linears(module, spec: str) -> None:
    rules = SparsitySpec.parse(spec)
    with torch.no_grad():
        for name, child in module.named_modules():
            transposed = type(child).__name__ == "Conv1D"  # GPT-2 keeps W^T
            if not (isinstance(child, torch.nn.Linear) or transposed):
                continue
            rule = rules.rule_for(f"{name}.weight")
            w = child.weight.detach().numpy()
            mask = rule.pattern.keep_mask(np.ascontiguousarray(w.T if transposed else w))
            child.weight.mul_(torch.from_numpy((mask.T if transposed else mask).astype(np.float32)))


@pytest.mark.parametrize("exporter, opset", EXPORTS, ids=[f"{e}{o}" for e, o in EXPORTS])
@pytest.mark.parametrize("family", hf.TRANSFORMER_FAMILIES)
def test_compiles_matches_onnxruntime_and_schedules_everything(family, exporter, opset, tmp_path):
    module, inputs = hf.build(family, "tiny")
    prune_linears(module, "unstructured@0.8")
    path = tmp_path / "model.onnx"
    feeds = hf.export_onnx(module, inputs, path, exporter, opset)
    compiled = sparsecc.compile(str(path), "existing", example_inputs=feeds)
    want = session.run(str(path), feeds)[0]
    got = compiled(**feeds)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    pruned = [row for row in compiled.report if "patch_embeddings" not in row["name"]]
    assert pruned and all(row["runs"] == "CSR" for row in pruned), compiled.report
    if family == "vit":  # its patch-embedding Conv (not pruned here) is a linear over patches too
        (patches,) = [row for row in compiled.report if "patch_embeddings" in row["name"]]
        assert patches["runs"] == "dense" and patches["kernel"].startswith("dense_")
    # attention, fused by the pipeline, runs as the one flash-style kernel
    groups = {entry.group for entry in compiled.profile(**feeds, runs=1)}
    assert "attention_cpu" in groups and not any("softmax" in group for group in groups), groups
    log = compiled.schedule_log
    assert not log.unscheduled
    assert not log.catch_all_only, log.catch_all_only


@pytest.mark.parametrize("exporter, opset", [("torchscript", 17), ("dynamo", 23)])
def test_attention_is_fused_at_other_opsets(exporter, opset, tmp_path):
    """TorchScript at opset 17 (decomposed attention, LayerNormalization) and dynamo at 23 (which
    writes Attention itself, with a boolean mask): one fused kernel either way."""
    module, inputs = hf.build("bert", "tiny")
    inputs["attention_mask"][0, -5:] = 0  # padding: the mask matters
    path = tmp_path / "model.onnx"
    feeds = hf.export_onnx(module, inputs, path, exporter, opset)
    compiled = sparsecc.compile(str(path), "dense", example_inputs=feeds)
    want = session.run(str(path), feeds)[0]
    assert np.abs(compiled(**feeds) - want).max() <= 1e-4 * np.abs(want).max()
    groups = [entry.group for entry in compiled.profile(**feeds, runs=1)]
    assert groups.count("attention_cpu") == 1 and not any("softmax" in group for group in groups), groups
