"""Llama-family decoders (transformers, random seeded weights) exported with their KV cache.

A decoder is exported one *step*: `input_ids [B, q]`, `attention_mask [B, past + q]` and each
layer's cache `past_key_values.{i}.key/value [B, kv_heads, past, head_dim]` in; `logits
[B, q, vocab]` and `present.{i}.key/value [B, kv_heads, past + q, head_dim]` out (the names
optimum uses). The token and cache lengths stay symbolic, so one file serves the prefill
(past = 0) and every decode step. Grouped-query attention, RoPE and RMSNorm are the Llama
family's; at opset 23 the dynamo exporter writes them as `Attention`, `RotaryEmbedding` and
`RMSNormalization` nodes, at lower opsets as their decompositions.
Needs `transformers` and torch (test and benchmark dependencies, not runtime ones).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

from sparsecc.errors import ModelError


@dataclasses.dataclass(frozen=True)
class LlamaShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    max_positions: int = 2048

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def parameters(self) -> int:
        """Weights of the decoder: embeddings, attention (GQA), MLP, norms, untied head."""
        kv = self.kv_heads * self.head_dim
        per_layer = self.hidden * (2 * self.hidden + 2 * kv) + 3 * self.hidden * self.ffn + 2 * self.hidden
        return self.layers * per_layer + 2 * self.vocab * self.hidden + self.hidden


# "tiny" for tests; "1.1b" is TinyLlama-1.1B's shape (hidden 2048, 22 layers, FFN 5632, 32 heads, 4 KV heads)
SHAPES = {
    "tiny": LlamaShape(hidden=64, layers=2, heads=4, kv_heads=2, ffn=176, vocab=512, max_positions=512),
    "small": LlamaShape(hidden=256, layers=4, heads=8, kv_heads=2, ffn=704, vocab=2048),
    "1.1b": LlamaShape(hidden=2048, layers=22, heads=32, kv_heads=4, ffn=5632, vocab=32000),
}


def config(shape: LlamaShape):
    import transformers

    cfg = transformers.LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.max_positions,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    cfg._attn_implementation = "sdpa"
    return cfg


def build(size: str = "tiny", seed: int = 0):
    """A `LlamaForCausalLM` in eval mode with seeded random weights (std 0.02 as transformers initialises)."""
    import torch
    import transformers

    if size not in SHAPES:
        raise ModelError(f"unknown Llama size {size!r}; sizes: {', '.join(SHAPES)}")
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(config(SHAPES[size])).eval()


def cache_names(layers: int) -> tuple[list[str], list[str]]:
    """(past input names, present output names), key then value per layer."""
    past = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    present = [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    return past, present


def _step_module(model):
    """One decoding step as a module of positional tensors: the cache as flat inputs and outputs."""
    import torch
    from transformers.cache_utils import DynamicCache

    cfg = model.config

    class DecoderStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, *past):
            cache = DynamicCache(config=cfg)
            for layer in range(cfg.num_hidden_layers):
                cache.update(past[2 * layer], past[2 * layer + 1], layer)
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, use_cache=True
            )
            flat = [out.logits]
            for layer in out.past_key_values.layers:
                flat += [layer.keys, layer.values]
            return tuple(flat)

    return DecoderStep().eval()


def export_decoder(model, path, opset: int = 23) -> Path:
    """Export `model` (a transformers causal LM) one step with its cache, lengths symbolic (dynamo)."""
    import torch

    cfg = model.config
    heads = cfg.num_attention_heads
    kv_heads, head_dim = cfg.num_key_value_heads, cfg.hidden_size // heads
    past_len, new = 3, 2  # example lengths; the exported dimensions stay symbolic
    past = tuple(torch.randn(1, kv_heads, past_len, head_dim) for _ in range(2 * cfg.num_hidden_layers))
    ids = torch.randint(3, cfg.vocab_size, (1, new))
    mask = torch.ones(1, past_len + new, dtype=torch.int64)
    seq = torch.export.Dim("sequence", min=1, max=cfg.max_position_embeddings)
    past_seq = torch.export.Dim("past_sequence", min=1, max=cfg.max_position_embeddings)
    total = torch.export.Dim("total_sequence", min=2, max=2 * cfg.max_position_embeddings)
    past_names, present_names = cache_names(cfg.num_hidden_layers)
    path = Path(path)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _step_module(model),
            (ids, mask, *past),
            str(path),
            dynamo=True,
            opset_version=opset,
            dynamic_shapes={
                "input_ids": {1: seq},
                "attention_mask": {1: total},
                "past": tuple({2: past_seq} for _ in past),
            },
            input_names=["input_ids", "attention_mask", *past_names],
            output_names=["logits", *present_names],
            verbose=False,
        )
    return path
