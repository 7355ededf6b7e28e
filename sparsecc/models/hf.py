"""transformers models of several families, with random seeded weights, and how users export them.

Graphs nobody here wrote: `build(family, size)` gives a transformers model whose forward
takes positional tensors and returns its main output (the TorchScript exporter fills every
forward parameter positionally, which transformers 5 refuses for the stock classes);
subclassing keeps the module names (`encoder.layer.0...`). `export_onnx` calls
`torch.onnx.export` the way a user does (dynamo or TorchScript, at a chosen opset).
Needs `transformers` (a test and benchmark dependency, not a runtime one).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from sparsecc.errors import ModelError

TRANSFORMER_FAMILIES = ("bert", "distilbert", "roberta", "gpt2", "vit")
CNN_FAMILIES = ("resnet",)
FAMILIES = TRANSFORMER_FAMILIES + CNN_FAMILIES
# size -> (hidden, layers, heads, ffn, tokens): "tiny" for tests, "base" as the released base models
SIZES = {"tiny": (128, 2, 4, 512, 32), "small": (256, 2, 4, 1024, 64), "base": (768, 12, 12, 3072, 128)}


def _text_config(family: str, size: str):
    import transformers

    hidden, layers, heads, ffn, tokens = SIZES[size]
    common = {"vocab_size": 1000 if size != "base" else 30522}
    if family == "bert":
        return transformers.BertConfig(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=ffn,
            max_position_embeddings=max(512, tokens),
            **common,
        )
    if family == "roberta":
        return transformers.RobertaConfig(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=ffn,
            max_position_embeddings=max(514, tokens + 2),
            **common,
        )
    if family == "distilbert":
        return transformers.DistilBertConfig(
            dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=ffn, max_position_embeddings=512, **common
        )
    special = {"bos_token_id": 0, "eos_token_id": 0} if size != "base" else {}  # inside the small vocabulary
    return transformers.GPT2Config(
        n_embd=hidden, n_layer=layers, n_head=heads, n_inner=ffn, n_positions=1024, **special, **common
    )


def _classes():
    import transformers

    class Bert(transformers.BertModel):
        def forward(self, input_ids, attention_mask):
            return super().forward(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    class Roberta(transformers.RobertaModel):
        def forward(self, input_ids, attention_mask):
            return super().forward(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    class DistilBert(transformers.DistilBertModel):
        def forward(self, input_ids, attention_mask):
            return super().forward(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    class Gpt2(transformers.GPT2Model):
        def forward(self, input_ids, attention_mask):
            out = super().forward(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
            return out.last_hidden_state

    class Vit(transformers.ViTModel):
        def forward(self, pixel_values):
            return super().forward(pixel_values=pixel_values).last_hidden_state

    class ResNet(transformers.ResNetModel):
        def forward(self, pixel_values):
            return super().forward(pixel_values=pixel_values).pooler_output

    return {
        "bert": Bert,
        "roberta": Roberta,
        "distilbert": DistilBert,
        "gpt2": Gpt2,
        "vit": Vit,
        "resnet": ResNet,
    }


def build(family: str, size: str = "tiny", seed: int = 0):
    """(module in eval mode, example inputs as a dict of torch tensors) for one family and size."""
    import torch
    import transformers

    if family not in FAMILIES or size not in SIZES:
        raise ModelError(
            f"unknown transformers model {family!r}/{size!r}; families: {', '.join(FAMILIES)}; sizes: {', '.join(SIZES)}"
        )
    hidden, layers, heads, ffn, tokens = SIZES[size]
    torch.manual_seed(seed)
    if family == "vit":
        image, patch = (224, 16) if size == "base" else (32, 4)
        config = transformers.ViTConfig(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=ffn,
            image_size=image,
            patch_size=patch,
        )
        config._attn_implementation = "sdpa"
        module = _classes()["vit"](config, add_pooling_layer=False).eval()
        return module, {"pixel_values": torch.randn(1, 3, image, image)}
    if family == "resnet":
        return _resnet(size)
    config = _text_config(family, size)
    config._attn_implementation = "sdpa"
    cls = _classes()[family]
    module = cls(config, add_pooling_layer=False) if family in ("bert", "roberta") else cls(config)
    module = module.eval()
    ids = torch.randint(3, config.vocab_size, (1, tokens))
    return module, {"input_ids": ids, "attention_mask": torch.ones(1, tokens, dtype=torch.int64)}


# size -> (embedding width, stage widths, blocks per stage, image side); "base" is ResNet-50's default config
RESNET_SIZES = {
    "tiny": (16, [16, 32, 64, 128], [1, 1, 1, 1], 32),
    "small": (32, [64, 128, 256, 512], [1, 1, 2, 1], 64),
    "base": (64, [256, 512, 1024, 2048], [3, 4, 6, 3], 224),
}


def _resnet(size: str):
    """transformers' ResNet (bottleneck blocks), batch norms with non-trivial statistics, as users load one."""
    import torch
    import transformers

    embedding, widths, depths, image = RESNET_SIZES[size]
    config = transformers.ResNetConfig(embedding_size=embedding, hidden_sizes=widths, depths=depths)
    module = _classes()["resnet"](config).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for child in module.modules():  # fresh batch norms are identities: make folding them matter
            if isinstance(child, torch.nn.BatchNorm2d):
                child.running_mean.uniform_(-0.1, 0.1, generator=generator)
                child.running_var.uniform_(0.5, 1.5, generator=generator)
                child.weight.uniform_(0.5, 1.5, generator=generator)
                child.bias.uniform_(-0.1, 0.1, generator=generator)
    return module, {"pixel_values": torch.randn(1, 3, image, image, generator=generator)}


def export_onnx(
    module, inputs: dict, path, exporter: str = "dynamo", opset: int = 18
) -> dict[str, np.ndarray]:
    """`torch.onnx.export` as a user calls it; returns the inputs as numpy, keyed by input name."""
    import torch

    if exporter not in ("dynamo", "torchscript"):
        raise ModelError(f"unknown exporter {exporter!r}; use 'dynamo' or 'torchscript'")
    names = list(inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(inputs.values()),
            str(Path(path)),
            dynamo=exporter == "dynamo",
            opset_version=opset,
            input_names=names,
            output_names=["output"],
        )
    return {name: tensor.numpy() for name, tensor in inputs.items()}
