"""The model zoo: small models built in code with seeded weights, for the demo, tests and benchmarks.

Each entry gives a torch module, example inputs and a default spec written with the
module's own parameter names. On the CLI: `zoo:NAME`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from sparsecc.errors import ModelError


@dataclasses.dataclass
class ZooModel:
    name: str
    description: str
    module: object  # torch.nn.Module
    example_inputs: tuple
    default_spec: str


def _mlp() -> ZooModel:
    from sparsecc.models.mlp import build_mlp

    module, inputs = build_mlp()
    return ZooModel(
        "mlp",
        "3-layer MLP 256-1024-1024-256, batch 32",
        module,
        inputs,
        "layers.0.weight=block(16,1)@0.9; layers.1.weight=unstructured@0.95; layers.2.weight=2:4",
    )


def _bert() -> ZooModel:
    from sparsecc.models.bert import build_bert

    module, inputs = build_bert()
    return ZooModel(
        "bert",
        "BERT-style encoder: 2 layers, hidden 256, 4 heads, FFN 1024, seq 64",
        module,
        inputs,
        "*intermediate.dense.weight=block(16,1)@0.9; *output.dense.weight=block(16,1)@0.9;"
        " *attention.self*=2:4",
    )


def _cnn() -> ZooModel:
    from sparsecc.models.cnn import build_cnn

    module, inputs = build_cnn()
    return ZooModel(
        "cnn",
        "small CNN: 3 conv blocks + 2 linear layers, 32x32 RGB input",
        module,
        inputs,
        "fc1.weight=block(1,16)@0.9; fc2.weight=existing",
    )


def _resnet() -> ZooModel:
    from sparsecc.models.cnn import build_resnet

    module, inputs = build_resnet()
    return ZooModel(
        "resnet",
        "ResNet-style: 7x7 stem, 4 bottleneck blocks (64 -> 256 channels), 64x64 RGB input",
        module,
        inputs,
        "*stage*conv*=unstructured@0.9; *shortcut*=unstructured@0.9",
    )


def _mobilenet() -> ZooModel:
    from sparsecc.models.cnn import build_mobilenet

    module, inputs = build_mobilenet()
    return ZooModel(
        "mobilenet",
        "MobileNetV2-style: depthwise 3x3 + pointwise 1x1 blocks, ReLU6, 64x64 RGB input",
        module,
        inputs,
        "*block.0.weight=unstructured@0.8; *block.6.weight=unstructured@0.8; head.0.weight=unstructured@0.8",
    )


def _vit() -> ZooModel:
    from sparsecc.models.vit import build_vit

    module, inputs = build_vit()
    return ZooModel(
        "vit",
        "ViT-style: 4x4 patches of 32x32, 2 blocks, dim 192, 3 heads",
        module,
        inputs,
        "*mlp.fc*=block(16,1)@0.9; *attn.qkv*=2:4; *attn.proj*=unstructured@0.9",
    )


def _video_dit() -> ZooModel:
    from sparsecc.models.video_dit import build_video_dit

    module, inputs = build_video_dit()
    return ZooModel(
        "video_dit",
        "video-DiT-style: 3 blocks, 12 heads of 64, 4 frames x 64 tokens + 16 text; planted head patterns",
        module,
        inputs,
        "*mlp.fc*=block(16,1)@0.9",  # the heads: `sparsecc search-heads` and a spec's attention section
    )


_BUILDERS: dict[str, Callable[[], ZooModel]] = {
    "mlp": _mlp,
    "bert": _bert,
    "cnn": _cnn,
    "vit": _vit,
    "resnet": _resnet,
    "mobilenet": _mobilenet,
    "video_dit": _video_dit,
}


def names() -> list[str]:
    return list(_BUILDERS)


def get(name: str) -> ZooModel:
    """Build a zoo model (a fresh module each call)."""
    key = name.strip().lower()
    if key not in _BUILDERS:
        raise ModelError(f"unknown zoo model {name!r}; known models: {', '.join(_BUILDERS)}")
    return _BUILDERS[key]()
