"""compile() end to end: transformers BertModel from torch and from ONNX, zoo models, CLI."""

import subprocess
import sys

import numpy as np
import onnx_ir as ir
import pytest
import torch

import sparsecc
from sparsecc.backends.ort import session
from sparsecc.compiler import frontends
from sparsecc.errors import InputError
from tests.hf_bert import make_hf_bert, prune_hf_bert

pytest.importorskip("tvm")


@pytest.fixture(scope="module")
def pruned_bert():
    model, inputs = make_hf_bert()
    prune_hf_bert(model)
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state.numpy()
    return model, inputs, expected


def check_bert(cm, inputs, expected):
    out = cm(**{k: v.numpy() for k, v in inputs.items()})
    hidden = out[0] if isinstance(out, tuple) else out
    assert np.abs(hidden - expected).max() <= 1e-4 * np.abs(expected).max()
    rows = {row["name"]: row for row in cm.report}
    pruned = [n for n in rows if ".attention." in n or "intermediate" in n or ".output.dense" in n]
    assert len(pruned) == 12
    for name in pruned:
        row = rows[name]
        if ".attention." in name:  # 2:4 breaks even with the dense GEMM on x86: it stays dense, and says so
            assert row["runs"] == "dense" and "estimated at" in row["reason"], row
        else:
            assert row["format"] != "dense" and row["kernel"].startswith("bsr_"), row


def test_bert_from_torch_module(pruned_bert):
    model, inputs, expected = pruned_bert
    check_bert(sparsecc.compile(model, "existing", example_inputs=inputs), inputs, expected)


def test_bert_from_onnx_file(pruned_bert, tmp_path):
    model, inputs, expected = pruned_bert
    ir_model, feeds = frontends.resolve_model(model, inputs)
    ir.save(ir_model, tmp_path / "bert.onnx")
    cm = sparsecc.compile(str(tmp_path / "bert.onnx"), "existing", example_inputs=feeds)
    check_bert(cm, inputs, expected)
    torch_out = cm(**inputs)  # torch in -> torch out, the same numbers as numpy in
    assert isinstance(torch_out[0], torch.Tensor)
    hidden = torch_out[0].numpy()
    assert np.abs(hidden - expected).max() <= 1e-4 * np.abs(expected).max()

    # token ids index the embedding table, which TVM's Gather does not bounds-check
    assert cm.input_specs[0].name == "input_ids"
    vocab = cm.input_specs[0].index_limit
    assert vocab == model.config.vocab_size
    feeds = {k: v.numpy().copy() for k, v in inputs.items()}
    feeds["input_ids"][0, 3] = vocab
    with pytest.raises(
        InputError, match=rf"input 'input_ids' holds {vocab}, but it indexes a table of {vocab} rows"
    ):
        cm(**feeds)
    cm.save(tmp_path / "bert.sccpkg")  # the limit travels in the manifest
    assert sparsecc.load(tmp_path / "bert.sccpkg").input_specs[0].index_limit == vocab


def test_wrong_input_shape_and_dtype():
    cm = sparsecc.compile("zoo:mlp", "layers.0.weight=block(16,1)@0.9")
    x = cm.example_inputs["x"] if "x" in cm.example_inputs else next(iter(cm.example_inputs.values()))
    with pytest.raises(InputError, match=r"has shape \(3, 256\) but the model was compiled for \(32, 256\)"):
        cm(x[:3])
    with pytest.raises(InputError, match="dtype float64"):
        cm(x.astype(np.float64))
    with pytest.raises(InputError, match="takes 1 inputs"):
        cm(x, x)
    assert 0 < cm.benchmark(x, number=2, repeat=2) < 1000  # milliseconds of one call, TVM's timer


def test_cli_compile_run(tmp_path):
    pkg = tmp_path / "mlp.sccpkg"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsecc.tools.cli",
            "compile",
            "zoo:mlp",
            "--spec",
            "layers.1.weight=unstructured@0.95",
            "-o",
            str(pkg),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "csr_tiled_x86" in proc.stdout
    x = np.random.default_rng(0).standard_normal((32, 256)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    name = sparsecc.load(pkg).input_specs[0].name
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsecc.tools.cli",
            "run",
            str(pkg),
            "--input",
            f"{name}={tmp_path / 'x.npy'}",
            "-o",
            str(tmp_path / "y.npz"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "y.npz")[sparsecc.load(pkg).output_specs[0].name]
    # onnxruntime on the pruned dense model (standard ONNX, the same spec): 1e-4 of the largest output
    pruned = sparsecc.sparsify("zoo:mlp", "layers.1.weight=unstructured@0.95", portable=True)
    (want,) = session.run(pruned, {name: x})
    assert got.shape == want.shape == (32, 256)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsecc.tools.cli",
            "run",
            str(pkg),
            "--input",
            f"{name}={tmp_path / 'nope.npy'}",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "nope.npy" in bad.stderr
