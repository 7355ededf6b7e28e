"""A transformers BertModel (small config, no hub access) and a deterministic pruning of it."""

from __future__ import annotations

import numpy as np
import torch
import transformers

from sparsecc.sparsity.masks import block_mask, nm_mask


def make_hf_bert(seed: int = 0) -> tuple[transformers.BertModel, dict]:
    config = transformers.BertConfig(
        vocab_size=512,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=64,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = transformers.BertModel(config).eval()
    inputs = {
        "input_ids": torch.randint(0, 512, (1, 32)),
        "attention_mask": torch.ones(1, 32, dtype=torch.int64),
    }
    return model, inputs


def _apply_mask(linear: torch.nn.Linear, mask: np.ndarray) -> None:
    with torch.no_grad():
        linear.weight.mul_(torch.from_numpy(mask.astype(np.float32)))


def prune_hf_bert(model: transformers.BertModel) -> None:
    """FFN weights to 1x16 blocks at 90% (block L2 norm); attention projections to 2:4 (magnitude)."""
    for layer in model.encoder.layer:
        for ffn in (layer.intermediate.dense, layer.output.dense):
            _apply_mask(ffn, block_mask(ffn.weight.detach().numpy(), (1, 16), 0.9))
        attention = layer.attention
        for proj in (attention.self.query, attention.self.key, attention.self.value, attention.output.dense):
            _apply_mask(proj, nm_mask(proj.weight.detach().numpy(), 2, 4))


class ExportableBert(transformers.BertModel):
    """BertModel with a positional forward, as the TorchScript exporter needs it.

    That exporter fills every forward parameter positionally (use_cache included), which
    transformers 5 refuses ("got multiple values for argument 'use_cache'"); users wrap the
    model the same way. A subclass keeps the module names (encoder.layer.0...) unchanged.
    """

    def forward(self, input_ids, attention_mask):
        return super().forward(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_hf_bert(path, exporter: str, opset: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Export the small BertModel to `path` with `torch.onnx.export` as a user would; its feeds."""
    import warnings

    model, inputs = make_hf_bert(seed)
    exportable = ExportableBert(model.config).eval()
    exportable.load_state_dict(model.state_dict())
    args = (inputs["input_ids"], inputs["attention_mask"])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            exportable,
            args,
            str(path),
            dynamo=exporter == "dynamo",
            opset_version=opset,
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
        )
    return {k: v.numpy() for k, v in inputs.items()}
