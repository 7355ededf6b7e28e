"""A BERT-style encoder in plain torch, with Hugging Face parameter names.

The names (`encoder.layer.0.attention.self.query.weight`, `...intermediate.dense...`)
match transformers' BertModel, so one spec selects the same layers in both. The size
is a config: the zoo's default is small; `BertConfig.base()` is BERT-base for benchmarks.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass(frozen=True)
class BertConfig:
    layers: int = 2
    hidden: int = 256
    heads: int = 4
    ffn: int = 1024
    seq: int = 64
    vocab: int = 1024
    batch: int = 1

    @classmethod
    def base(cls) -> BertConfig:
        """BERT-base sized: 12 layers, hidden 768, FFN 3072, 12 heads, seq 128."""
        return cls(layers=12, hidden=768, heads=12, ffn=3072, seq=128, vocab=1024)


class _Dense(nn.Module):
    def __init__(self, a, b):
        super().__init__()
        self.dense = nn.Linear(a, b)


class SelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.heads = config.heads
        self.query = nn.Linear(config.hidden, config.hidden)
        self.key = nn.Linear(config.hidden, config.hidden)
        self.value = nn.Linear(config.hidden, config.hidden)

    def forward(self, x):
        b, s, h = x.shape

        def split(t):
            return t.view(b, s, self.heads, h // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return out.transpose(1, 2).reshape(b, s, h)


class Attention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = SelfAttention(config)
        self.output = _Dense(config.hidden, config.hidden)
        self.output.LayerNorm = nn.LayerNorm(config.hidden)

    def forward(self, x):
        return self.output.LayerNorm(x + self.output.dense(self.self(x)))


class Layer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = _Dense(config.hidden, config.ffn)
        self.output = _Dense(config.ffn, config.hidden)
        self.output.LayerNorm = nn.LayerNorm(config.hidden)

    def forward(self, x):
        x = self.attention(x)
        return self.output.LayerNorm(x + self.output.dense(F.gelu(self.intermediate.dense(x))))


class Embeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab, config.hidden)
        self.position_embeddings = nn.Embedding(config.seq, config.hidden)
        self.LayerNorm = nn.LayerNorm(config.hidden)

    def forward(self, input_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(positions))


class Encoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.layers))

    def forward(self, x):
        for layer in self.layer:
            x = layer(x)
        return x


class Bert(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)

    def forward(self, input_ids):
        return self.encoder(self.embeddings(input_ids))


def build_bert(config: BertConfig | None = None, seed: int = 0) -> tuple[Bert, tuple]:
    config = config or BertConfig()
    torch.manual_seed(seed)
    module = Bert(config).eval()
    input_ids = torch.randint(0, config.vocab, (config.batch, config.seq))
    return module, (input_ids,)
