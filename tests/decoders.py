"""Shared by the decoder tests: a tiny random Llama and its export (fixtures), transformers' greedy generate,
and a greedy loop in a plain onnxruntime session (the references)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

PROMPT = np.array([[1, 45, 301, 77, 9, 210]], dtype=np.int64)
NEW_TOKENS = 64


@pytest.fixture(scope="module")
def decoder():
    """A random tiny Llama (GQA, RoPE, RMSNorm), seeded."""
    from sparsecc.models import llama

    return llama.build("tiny", seed=0)


@pytest.fixture(scope="module")
def exported(decoder, tmp_path_factory):
    """Opset 23: GQA, RoPE and RMSNorm as `Attention`, `RotaryEmbedding` and `RMSNormalization` nodes."""
    from sparsecc.models import llama

    return llama.export_decoder(decoder, tmp_path_factory.mktemp("llama") / "tiny23.onnx", opset=23)


def torch_greedy(decoder, prompt, new_tokens, eos: bool = False):
    """transformers' greedy generate; without `eos` it runs all `new_tokens` past the end-of-text id."""
    import torch

    config = decoder.generation_config
    saved, config.eos_token_id = config.eos_token_id, (config.eos_token_id if eos else None)
    try:
        with torch.no_grad():
            return decoder.generate(
                torch.from_numpy(prompt), max_new_tokens=new_tokens, do_sample=False
            ).numpy()
    finally:
        config.eos_token_id = saved


def onnxruntime_loop(proto, prompt, new_tokens):
    """Greedy decoding written out with a plain session and numpy caches: the reference loop."""
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    past = [i for i in session.get_inputs() if i.name.startswith("past")]
    cache = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32) for i in past}
    tokens, current, logits_seen = list(prompt[0]), prompt, []
    for _ in range(new_tokens):
        feeds = {"input_ids": current, "attention_mask": np.ones((1, len(tokens)), np.int64), **cache}
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
        logits = outputs["logits"][:, -1]
        logits_seen.append(logits)
        cache = {name: outputs[name.replace("past_key_values", "present")] for name in cache}
        tokens.append(int(logits.argmax()))
        current = np.array([[tokens[-1]]], np.int64)
    return np.array([tokens]), logits_seen
