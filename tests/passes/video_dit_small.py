"""A small video-DiT (tests/passes): exported once per test module, with fused Attention nodes."""

from sparsecc.compiler import frontends
from sparsecc.models.video_dit import VideoDiTConfig, build_video_dit, calibration_batches
from sparsecc.passes.fuse_attention import FuseAttentionPass
from sparsecc.sparsity.attention_patterns import HeadPattern, TokenLayout

CONFIG = VideoDiTConfig(
    frames=4, frame_tokens=16, text=5, heads=12, head_dim=32, depth=2, code=32, global_tokens=3
)


LAYOUT = TokenLayout(**CONFIG.layout)


def planted(config: VideoDiTConfig = CONFIG) -> list[list[HeadPattern]]:
    """The planted table as patterns."""
    from sparsecc.models.video_dit import planted_table

    return [[HeadPattern.from_dict(entry) for entry in layer] for layer in planted_table(config)]


def exported(config: VideoDiTConfig = CONFIG):
    module, inputs = build_video_dit(config)
    model, _ = frontends.resolve_model(module, inputs)
    FuseAttentionPass()(model)
    return model


def batches(config: VideoDiTConfig = CONFIG, count: int = 3):
    return calibration_batches(config, count)
