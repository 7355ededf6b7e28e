"""A decoder exported with its KV cache compiled natively (issue 14): the TVM backend builds the one-token
step with the cache length symbolic, and generates as transformers does, dense and 2:4 (decode kernels),
at every cache length from one build, from a package too."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import sparsecc  # noqa: E402
from sparsecc.backends.tvm.runtime import CompiledModel  # noqa: E402
from sparsecc.errors import InputError  # noqa: E402
from sparsecc.models import llama  # noqa: E402
from sparsecc.tools.cli import main  # noqa: E402
from tests.decoders import (  # noqa: E402
    NEW_TOKENS,
    PROMPT,
    onnxruntime_loop,
    torch_greedy,
)


@pytest.fixture(scope="module")
def dense(exported):
    return sparsecc.compile(str(exported), backend="tvm")


def test_the_decode_step_keeps_the_cache_length_symbolic(dense):
    assert isinstance(dense, CompiledModel)
    shapes = {spec.name: spec.shape for spec in dense.input_specs}
    assert shapes["input_ids"] == (1, 1)
    assert shapes["attention_mask"] == (1, -1)
    assert shapes["past_key_values.0.key"] == (1, 2, -1, 16)
    assert {row["kernel"] for row in dense.report} == {"dense_gemv_x86"}


def test_greedy_tokens_equal_torch_generate(decoder, dense):
    ids = dense.generate(PROMPT, max_new_tokens=NEW_TOKENS)
    np.testing.assert_array_equal(ids, torch_greedy(decoder, PROMPT, NEW_TOKENS))
    assert len(set(ids[0, PROMPT.shape[1] :])) > 3


def test_one_build_answers_every_cache_length(exported, dense):
    """Cache lengths 0..40 (prompt lengths 1..41) through one compiled step, against onnxruntime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for past in (0, 1, 2, 7, 16, 40):
        feeds = {
            "input_ids": rng.integers(3, 500, (1, 1)),
            "attention_mask": np.ones((1, past + 1), np.int64),
        }
        for spec in dense.input_specs[2:]:
            feeds[spec.name] = rng.standard_normal((1, 2, past, 16)).astype(np.float32)
        expected = session.run(None, feeds)
        for ours, theirs in zip(dense(**feeds), expected):
            assert ours.shape == theirs.shape
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    for length in (1, 3, 17):
        prompt = PROMPT[:, :1].repeat(length, axis=1) + np.arange(length)
        run = dense.generation(prompt, 4)
        assert run.tokens.shape == (1, length + 4)


def test_2_4_decoder_runs_decode_kernels_and_matches_onnxruntime_logits(exported):
    compiled = sparsecc.compile(str(exported), "*mlp*=2:4", backend="tvm")
    sparse = [row for row in compiled.report if row["format"] == "N:M 2:4"]
    # gate and up (in 64); down (in 176, not whole windows of the decode kernel) stays dense, priced 1.0x
    assert len(sparse) == 4 and all(row["kernel"] == "nm_2_4_gemv_x86" for row in sparse)
    portable = sparsecc.compile(str(exported), "*mlp*=2:4", backend="onnxruntime")
    run = compiled.generation(PROMPT, 24, record_logits=True)
    tokens, reference = onnxruntime_loop(portable.proto, PROMPT, 24)
    np.testing.assert_array_equal(run.tokens, tokens)
    for ours, theirs in zip(run.logits, reference):
        assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()


def test_cli_package_generates_the_same_and_refuses_a_batch(exported, dense, tmp_path, capsys):
    path = tmp_path / "decoder.sccpkg"
    assert main(["compile", str(exported), "--spec", "existing", "-o", str(path)]) == 0  # the decode step
    loaded = sparsecc.load(path)
    assert {spec.name: spec.shape for spec in loaded.input_specs}["attention_mask"] == (1, -1)
    np.testing.assert_array_equal(loaded.generate(PROMPT, 8), dense.generate(PROMPT, 8))
    with pytest.raises(InputError, match="compiled for a batch of 1"):
        loaded.generate(np.concatenate([PROMPT, PROMPT]), 2)
    assert main(["generate", str(path), "--prompt-ids", ",".join(map(str, PROMPT[0])), "-n", "8"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2].split() == [str(t) for t in dense.generate(PROMPT, 8)[0]]


def test_opset18_export_compiles_the_same(decoder, tmp_path):
    """Opset 18: rotary and norms decomposed, the causal mask computed from symbolic lengths."""
    path = llama.export_decoder(decoder, tmp_path / "tiny18.onnx", opset=18)
    compiled = sparsecc.compile(str(path), backend="tvm")
    np.testing.assert_array_equal(compiled.generate(PROMPT, 24), torch_greedy(decoder, PROMPT, 24))
