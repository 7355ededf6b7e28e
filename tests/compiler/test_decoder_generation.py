"""Decoders exported with their KV cache generate as torch does (issue 14): a random Llama (GQA,
RoPE, RMSNorm) exported by the dynamo exporter at opsets 23 and 18, compiled for onnxruntime with
its symbolic lengths kept, dense and 2:4."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import sparsecc  # noqa: E402
from sparsecc.backends.ort.backend import OrtCompiledModel  # noqa: E402
from sparsecc.errors import SparseccError  # noqa: E402
from sparsecc.models import llama  # noqa: E402
from sparsecc.tools.cli import main  # noqa: E402
from tests.decoders import (  # noqa: E402
    NEW_TOKENS,
    PROMPT,
    onnxruntime_loop,
    torch_greedy,
)


def test_dense_greedy_tokens_equal_torch_generate(decoder, exported):
    compiled = sparsecc.compile(str(exported), backend="onnxruntime")
    assert isinstance(compiled, OrtCompiledModel)
    ids = compiled.generate(PROMPT, max_new_tokens=NEW_TOKENS)
    expected = torch_greedy(decoder, PROMPT, NEW_TOKENS)
    assert ids.shape == (1, PROMPT.shape[1] + NEW_TOKENS)
    np.testing.assert_array_equal(ids, expected)
    assert len(set(ids[0, PROMPT.shape[1] :])) > 3  # not one token over and over
    # with the end-of-text id both stop at the same place
    stopped = compiled.generate(PROMPT, max_new_tokens=NEW_TOKENS, eos_token_id=decoder.config.eos_token_id)
    np.testing.assert_array_equal(stopped, torch_greedy(decoder, PROMPT, NEW_TOKENS, eos=True))


def test_opset18_export_with_decomposed_norms_and_rotary_generates_the_same(decoder, tmp_path):
    path = llama.export_decoder(decoder, tmp_path / "tiny18.onnx", opset=18)
    compiled = sparsecc.compile(str(path), backend="onnxruntime")
    np.testing.assert_array_equal(compiled.generate(PROMPT, 24), torch_greedy(decoder, PROMPT, 24))


def test_sparse_decoder_logits_match_a_plainonnxruntime_loop(exported, tmp_path):
    compiled = sparsecc.compile(str(exported), "*=2:4", backend="onnxruntime")
    assert all(row["format"] == "N:M 2:4" for row in compiled.report)
    run = compiled.generation(PROMPT, NEW_TOKENS, record_logits=True)
    tokens, reference = onnxruntime_loop(compiled.proto, PROMPT, NEW_TOKENS)
    np.testing.assert_array_equal(run.tokens, tokens)
    for ours, theirs in zip(run.logits, reference):
        assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()
    assert run.decode_tokens_per_second > 0


def test_sampling_is_seeded_and_respects_top_k(exported):
    compiled = sparsecc.compile(str(exported), backend="onnxruntime")
    first = compiled.generate(PROMPT, 12, do_sample=True, top_k=5, temperature=0.7, seed=4)
    again = compiled.generate(PROMPT, 12, do_sample=True, top_k=5, temperature=0.7, seed=4)
    other = compiled.generate(PROMPT, 12, do_sample=True, top_k=5, temperature=0.7, seed=5)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    # top_k=1 is greedy
    np.testing.assert_array_equal(
        compiled.generate(PROMPT, 8, do_sample=True, top_k=1, seed=0), compiled.generate(PROMPT, 8)
    )


def test_one_compiled_decoder_takes_any_prompt_length(decoder, exported):
    compiled = sparsecc.compile(str(exported), backend="onnxruntime")
    for length in (1, 3, 17):
        prompt = PROMPT[:, :1].repeat(length, axis=1) + np.arange(length)
        np.testing.assert_array_equal(compiled.generate(prompt, 4), torch_greedy(decoder, prompt, 4))


def test_generate_refuses_models_that_are_not_decoders_with_a_cache(tmp_path):
    from sparsecc.models import mlp

    module, inputs = mlp.build_mlp()
    compiled = sparsecc.compile(module, example_inputs=inputs, backend="onnxruntime")
    with pytest.raises(SparseccError, match="not a decoder exported with its KV cache"):
        compiled.generate([1, 2, 3], 4)


def test_cli_generate_prints_the_same_tokens(exported, capsys):
    assert main(["generate", str(exported), "--prompt-ids", ",".join(map(str, PROMPT[0])), "-n", "8"]) == 0
    printed = capsys.readouterr().out.splitlines()
    expected = sparsecc.compile(str(exported), backend="onnxruntime").generate(PROMPT, 8)
    assert printed[-2].split() == [str(t) for t in expected[0]]
    assert "tokens/s" in printed[-1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--prompt-ids", "1,x"], "comma-separated integers"),
        (["--prompt-ids", "1,4000"], "outside the vocabulary"),
        (["--prompt-ids", "1", "-n", "0"], "max_new_tokens must be >= 1"),
        (["--prompt-ids", "1", "--sample", "--temperature", "0"], "temperature must be > 0"),
    ],
)
def test_cli_generate_mistakes_are_one_line(exported, capsys, argv, message):
    assert main(["generate", str(exported), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
