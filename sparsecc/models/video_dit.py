"""A video-DiT-style block stack whose attention heads have planted Sparse-vDiT patterns.

Tokens are `frames x frame_tokens` latent tokens plus `text` prompt tokens (first or last).
The input x [B, N, D] carries, besides random content, features that say where a token sits
(the first dims of D, `_Features`): a one-hot frame, a one-hot spatial position (a random
unit code of head_dim dims when a frame has more tokens than a head has dims), a flag on a
few "global" latent tokens, a constant 1, and a random content code. Each head's Q/K weights
read only those features, so its attention has a planted structure whatever the content:

  diag     Q, K = alpha * frame one-hot          -> a query attends to its own frame
  mdiag    Q, K = alpha * position one-hot (code) -> to its spatial position in every frame
  vstripe  Q = alpha * const, K = alpha * flag   -> every query to the global tokens
  full     Q, K = random maps of the content code -> sharp, content-dependent, unstructured
  skip     as full, but its output projection columns are ~0

Attention outputs, the MLP's and the residual stream's changes land in the other dims (the
output projections' rows for the feature dims are zero), so every block sees the features.
`planted_table` is the ground truth the head search should recover.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ALPHA = 10.0  # planted logit gap: alpha^2 / sqrt(64) = 12.5
BASE_MODES = (
    "diag",
    "diag",
    "diag",
    "diag",
    "mdiag",
    "mdiag",
    "mdiag",
    "vstripe",
    "vstripe",
    "full",
    "full",
    "skip",
)


@dataclasses.dataclass(frozen=True)
class VideoDiTConfig:
    frames: int = 4
    frame_tokens: int = 64
    text: int = 16
    text_first: bool = False
    heads: int = 12
    head_dim: int = 64
    depth: int = 3
    code: int = 64  # content-code dims
    global_tokens: int = 4  # latent tokens the vstripe heads attend to
    seed: int = 0

    @property
    def layout(self) -> dict:
        """The token layout, as a spec's `attention: {layout: ...}` gives it."""
        return {
            "frames": self.frames,
            "frame_tokens": self.frame_tokens,
            "text": self.text,
            "text_first": self.text_first,
        }

    @property
    def latent(self) -> int:
        return self.frames * self.frame_tokens

    @property
    def tokens(self) -> int:
        return self.latent + self.text

    @property
    def latent_positions(self) -> np.ndarray:
        """The sequence positions of the latent tokens, in latent order."""
        return np.arange(self.latent) + (self.text if self.text_first else 0)

    @property
    def dim(self) -> int:
        return self.heads * self.head_dim


@dataclasses.dataclass(frozen=True)
class _Features:
    """Where the planted features sit in D."""

    frame: slice
    position: slice
    flag: int
    const: int
    code: slice
    free: int  # first dim of the rest

    @classmethod
    def of(cls, cfg: VideoDiTConfig) -> _Features:
        f, p = cfg.frames, min(cfg.frame_tokens, cfg.head_dim)
        if f > cfg.head_dim or f + p + 2 + cfg.code >= cfg.dim:
            raise ValueError("video_dit: frames must fit a head, the features the model dim")
        return cls(
            slice(0, f),
            slice(f, f + p),
            f + p,
            f + p + 1,
            slice(f + p + 2, f + p + 2 + cfg.code),
            f + p + 2 + cfg.code,
        )


def position_codes(cfg: VideoDiTConfig) -> np.ndarray:
    """[frame_tokens, width]: one-hot positions, or (more positions than head dims) random +-1
    codes of unit length, whose dot products between positions are ~N(0, 1/head_dim)."""
    width = min(cfg.frame_tokens, cfg.head_dim)
    if width == cfg.frame_tokens:
        return np.eye(width, dtype=np.float32)
    signs = np.random.default_rng(cfg.seed + 4).choice([-1.0, 1.0], (cfg.frame_tokens, width))
    return (signs / np.sqrt(width)).astype(np.float32)


def global_tokens(cfg: VideoDiTConfig) -> tuple[int, ...]:
    rng = np.random.default_rng(cfg.seed + 1)
    return tuple(sorted(int(t) for t in rng.choice(cfg.latent, cfg.global_tokens, replace=False)))


def planted_modes(cfg: VideoDiTConfig) -> list[list[str]]:
    rng = np.random.default_rng(cfg.seed)
    base = list(BASE_MODES) * -(-cfg.heads // len(BASE_MODES))
    return [[str(m) for m in rng.permutation(base[: cfg.heads])] for _ in range(cfg.depth)]


def planted_table(cfg: VideoDiTConfig) -> list[list[dict]]:
    """The patterns planted in each block's heads (layer by layer), as a head-pattern table's
    entries (`sparsity/head_table.py`): diag with window 0, mdiag with radius 0."""
    stripes = list(global_tokens(cfg))
    make = {
        "diag": {"mode": "diag", "window": 0},
        "mdiag": {"mode": "mdiag", "radius": 0},
        "vstripe": {"mode": "vstripe", "stripes": stripes},
        "full": {"mode": "full"},
        "skip": {"mode": "skip"},
    }
    return [[dict(make[m]) for m in modes] for modes in planted_modes(cfg)]


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn = nn.Module()
        self.attn.q = nn.Linear(dim, dim, bias=False)
        self.attn.k = nn.Linear(dim, dim, bias=False)
        self.attn.v = nn.Linear(dim, dim, bias=False)
        self.attn.proj = nn.Linear(dim, dim)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, dim)
        self.mlp.fc2 = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape

        def split(t):
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.attn.q(x)), split(self.attn.k(x)), split(self.attn.v(x))
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.attn.proj(y)
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(x)))


class VideoDiT(nn.Module):
    def __init__(self, cfg: VideoDiTConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def _plant(block: Block, modes: list[str], cfg: VideoDiTConfig, rng: np.random.Generator) -> None:
    feats, d, dim = _Features.of(cfg), cfg.head_dim, cfg.dim
    wq, wk = np.zeros((dim, dim), np.float32), np.zeros((dim, dim), np.float32)
    for h, mode in enumerate(modes):
        rows = slice(h * d, (h + 1) * d)
        if mode in ("diag", "mdiag"):
            cols = feats.frame if mode == "diag" else feats.position
            count = cols.stop - cols.start
            wq[h * d : h * d + count, cols] = ALPHA * np.eye(count)
            wk[h * d : h * d + count, cols] = ALPHA * np.eye(count)
        elif mode == "vstripe":
            wq[h * d, feats.const] = ALPHA
            wk[h * d, feats.flag] = ALPHA
        else:  # full, skip: logits ~ N(0, 4^2) from the content codes
            wq[rows, feats.code] = rng.standard_normal((d, cfg.code)) * 2.0 / np.sqrt(cfg.code)
            wk[rows, feats.code] = rng.standard_normal((d, cfg.code)) * 2.0 / np.sqrt(cfg.code)
    wv = np.zeros((dim, dim), np.float32)
    # values read every feature (a frame's or a position's average carries signal) and the rest
    wv[:] = rng.standard_normal((dim, dim)) / np.sqrt(feats.free)
    proj = np.zeros((dim, dim), np.float32)
    proj[feats.free :] = rng.standard_normal((dim - feats.free, dim)) / np.sqrt(dim)
    for h, mode in enumerate(modes):
        if mode == "skip":
            proj[:, h * d : (h + 1) * d] *= 1e-3
    fc2 = np.zeros((dim, dim), np.float32)
    fc2[feats.free :] = rng.standard_normal((dim - feats.free, dim)) * 0.5 / np.sqrt(dim)
    with torch.no_grad():
        for linear, w in (
            (block.attn.q, wq),
            (block.attn.k, wk),
            (block.attn.v, wv),
            (block.attn.proj, proj),
        ):
            linear.weight.copy_(torch.from_numpy(w))
        block.attn.proj.bias.zero_()
        block.mlp.fc1.weight.copy_(
            torch.from_numpy(rng.standard_normal((dim, dim)).astype(np.float32) / np.sqrt(dim))
        )
        block.mlp.fc2.weight.copy_(torch.from_numpy(fc2))
        block.mlp.fc2.bias.zero_()


def build_video_dit(cfg: VideoDiTConfig | None = None, batch: int = 1) -> tuple[VideoDiT, tuple]:
    """The seeded model and one example input batch."""
    cfg = cfg or VideoDiTConfig()
    torch.manual_seed(cfg.seed)
    model = VideoDiT(cfg).eval()
    rng = np.random.default_rng(cfg.seed + 2)
    for block, modes in zip(model.blocks, planted_modes(cfg)):
        _plant(block, modes, cfg, rng)
    return model, (torch.from_numpy(calibration_batch(cfg, batch, seed=cfg.seed + 3)),)


def calibration_batch(cfg: VideoDiTConfig, batch: int = 1, seed: int = 0) -> np.ndarray:
    """x [batch, N, D]: the layout's features, random content codes, small noise elsewhere."""
    feats = _Features.of(cfg)
    rng = np.random.default_rng(seed)
    x = np.zeros((batch, cfg.tokens, cfg.dim), np.float32)
    latent = cfg.latent_positions
    index = np.arange(cfg.latent)
    x[:, latent, feats.frame.start + index // cfg.frame_tokens] = 1.0
    x[:, latent, feats.position] = position_codes(cfg)[index % cfg.frame_tokens]
    x[:, latent[list(global_tokens(cfg))], feats.flag] = 1.0
    x[:, :, feats.const] = 1.0
    x[:, :, feats.code] = rng.standard_normal((batch, cfg.tokens, cfg.code))
    x[:, :, feats.free :] = 0.1 * rng.standard_normal((batch, cfg.tokens, cfg.dim - feats.free))
    return x


def calibration_batches(cfg: VideoDiTConfig, count: int = 4, batch: int = 1, seed: int = 100) -> list[dict]:
    """`count` input batches {"x": ...} (different content, same layout) for the head search."""
    return [{"x": calibration_batch(cfg, batch, seed + i)} for i in range(count)]
