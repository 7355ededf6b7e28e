"""Attention head patterns of video diffusion transformers (Sparse-vDiT), as numpy masks.

A video DiT attends over `frames x frame_tokens` latent tokens plus `text` prompt tokens, the
text first or last. Heads fall into recurring patterns (stable across prompts):

  full     every query sees every key
  diag     a latent query sees the latent keys of its own frame (and `window` frames either side)
  mdiag    a latent query sees the same spatial position (within `radius`) in every frame:
           bands at multiples of the frame length
  vstripe  every query sees a few global key columns (`stripes`, latent token indices)
  blocks   static key-block lists: query block r sees key blocks `cols[ptr[r]:ptr[r+1]]`
           (blocks of `block_size = (bq, bk)` tokens over the whole sequence)

Text rows and text columns are always kept. A skipped head (`skip`) is deleted outright; it
has no mask. `HeadPattern` is one head's (or one group's) choice; the op `PatternAttention`
(`ops/pattern_attention.py`) carries the same fields as attributes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparsecc.errors import SpecError

MODES = ("full", "diag", "mdiag", "vstripe", "blocks")  # what PatternAttention computes
HEAD_MODES = (*MODES, "skip")  # what a head-pattern table may say


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """Where tokens sit: `frames x frame_tokens` latent tokens, `text` tokens first or last."""

    frames: int
    frame_tokens: int
    text: int = 0
    text_first: bool = False

    def __post_init__(self):
        if self.frames < 1 or self.frame_tokens < 1 or self.text < 0:
            raise SpecError(
                f"attention layout: frames ({self.frames}) and frame_tokens ({self.frame_tokens}) must be "
                f">= 1 and text ({self.text}) >= 0"
            )

    @property
    def latent(self) -> int:
        return self.frames * self.frame_tokens

    @property
    def tokens(self) -> int:
        return self.latent + self.text

    @property
    def latent_start(self) -> int:
        return self.text if self.text_first else 0

    def is_text(self) -> np.ndarray:
        """[N] bool: which sequence positions hold text tokens."""
        flags = np.ones(self.tokens, dtype=bool)
        flags[self.latent_start : self.latent_start + self.latent] = False
        return flags

    def latent_index(self) -> np.ndarray:
        """[N] int: each position's latent token index (0 for text positions)."""
        index = np.arange(self.tokens) - self.latent_start
        return np.where(self.is_text(), 0, index)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class HeadPattern:
    """One head's pattern and its parameters (fields a mode does not use keep their defaults)."""

    mode: str = "full"
    window: int = 0  # diag: frames either side of the query's own
    radius: int = 0  # mdiag: spatial positions either side of the query's own
    stripes: tuple[int, ...] = ()  # vstripe: latent key indices every query sees
    block_size: tuple[int, int] = (64, 64)  # blocks: (query block, key block) in tokens
    block_ptr: tuple[int, ...] = ()  # blocks: CSR row pointers over query blocks
    block_cols: tuple[int, ...] = ()  # blocks: key blocks, ascending within a query block

    def __post_init__(self):
        if self.mode not in HEAD_MODES:
            raise SpecError(f"unknown head pattern {self.mode!r}; known: {', '.join(HEAD_MODES)}")
        object.__setattr__(self, "stripes", tuple(int(s) for s in self.stripes))
        object.__setattr__(self, "block_size", tuple(int(s) for s in self.block_size))
        object.__setattr__(self, "block_ptr", tuple(int(s) for s in self.block_ptr))
        object.__setattr__(self, "block_cols", tuple(int(s) for s in self.block_cols))

    def problem(self, layout: TokenLayout) -> str | None:
        """Why this pattern is malformed for `layout` (None when it is fine)."""
        if self.window < 0 or self.radius < 0:
            return f"window ({self.window}) and radius ({self.radius}) must be >= 0"
        if self.mode == "vstripe":
            if not self.stripes and layout.text == 0:
                return "vstripe needs at least one stripe column (or text tokens)"
            if any(not 0 <= s < layout.latent for s in self.stripes):
                return f"stripe columns must lie in [0, {layout.latent})"
        if self.mode == "blocks":
            return self._blocks_problem(layout)
        return None

    def _blocks_problem(self, layout: TokenLayout) -> str | None:
        bq, bk = self.block_size
        if bq < 1 or bk < 1:
            return f"block_size must be positive, got {list(self.block_size)}"
        rows, cols = -(-layout.tokens // bq), -(-layout.tokens // bk)
        ptr = np.asarray(self.block_ptr, dtype=np.int64)
        if ptr.shape != (rows + 1,) or ptr[0] != 0 or ptr[-1] != len(self.block_cols):
            return f"block_ptr must have {rows + 1} entries from 0 to len(block_cols)={len(self.block_cols)}"
        if np.any(np.diff(ptr) < 0):
            return "block_ptr must be non-decreasing"
        kb = np.asarray(self.block_cols, dtype=np.int64)
        if kb.size and (kb.min() < 0 or kb.max() >= cols):
            return f"block_cols must lie in [0, {cols})"
        for r in range(rows):
            row = kb[ptr[r] : ptr[r + 1]]
            if np.any(np.diff(row) <= 0):
                return f"block_cols of query block {r} must be strictly ascending"
            if row.size == 0 and layout.text == 0:
                return f"query block {r} keeps no key block"
        return None

    def to_dict(self) -> dict:
        """The fields this mode uses (what a head-pattern table shows)."""
        data: dict = {"mode": self.mode}
        if self.mode == "diag":
            data["window"] = self.window
        elif self.mode == "mdiag":
            data["radius"] = self.radius
        elif self.mode == "vstripe":
            data["stripes"] = list(self.stripes)
        elif self.mode == "blocks":
            data.update(
                block_size=list(self.block_size),
                block_ptr=list(self.block_ptr),
                block_cols=list(self.block_cols),
            )
        return data

    @classmethod
    def from_dict(cls, data) -> HeadPattern:
        if isinstance(data, str):
            return cls(data)
        if not isinstance(data, dict):
            raise SpecError(f"a head pattern must be a mode name or a mapping, got {data!r}")
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(repr, set(data) - valid))
        if unknown:
            raise SpecError(
                f"head pattern: unknown key {', '.join(unknown)}; valid keys: {', '.join(sorted(valid))}"
            )
        return cls(**data)


def pattern_mask(pattern: HeadPattern, layout: TokenLayout) -> np.ndarray:
    """[N, N] bool: which keys (columns) each query (row) sees; text rows and columns always."""
    n = layout.tokens
    text = layout.is_text()
    latent = layout.latent_index()
    frame, position = latent // layout.frame_tokens, latent % layout.frame_tokens
    if pattern.mode in ("full", "skip"):
        keep = np.ones((n, n), dtype=bool)
    elif pattern.mode == "diag":
        keep = np.abs(frame[:, None] - frame[None, :]) <= pattern.window
    elif pattern.mode == "mdiag":
        keep = np.abs(position[:, None] - position[None, :]) <= pattern.radius
    elif pattern.mode == "vstripe":
        columns = np.zeros(layout.latent, dtype=bool)
        columns[list(pattern.stripes)] = True
        keep = np.broadcast_to(columns[latent] & ~text, (n, n)).copy()
    else:
        keep = _block_mask(pattern, n)
    return keep | text[:, None] | text[None, :]


def _block_mask(pattern: HeadPattern, n: int) -> np.ndarray:
    bq, bk = pattern.block_size
    rows, cols = -(-n // bq), -(-n // bk)
    blocks = np.zeros((rows, cols), dtype=bool)
    for r in range(rows):
        blocks[r, list(pattern.block_cols[pattern.block_ptr[r] : pattern.block_ptr[r + 1]])] = True
    return blocks[np.arange(n) // bq][:, np.arange(n) // bk]


def density(pattern: HeadPattern, layout: TokenLayout) -> float:
    """The fraction of the score matrix a pattern keeps (0 for a skipped head): its FLOP ratio."""
    return 0.0 if pattern.mode == "skip" else float(pattern_mask(pattern, layout).mean())


def masked_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None, scale=None):
    """softmax(Q K^T * scale + log M) V over [..., N, d] arrays (float64 unless given float32;
    `mask` [..., N, N] broadcasts); rows with no kept key give 0."""
    return attention_probs(q, k, mask, scale) @ v.astype(q.dtype if q.dtype == np.float32 else np.float64)


def attention_probs(q: np.ndarray, k: np.ndarray, mask: np.ndarray | None, scale=None) -> np.ndarray:
    """softmax(Q K^T * scale + log M): [..., N, N]."""
    dtype = np.float32 if q.dtype == np.float32 else np.float64
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q.astype(dtype) @ np.swapaxes(k.astype(dtype), -1, -2)) * dtype(scale)
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    top = scores.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    weights = np.exp(scores - top)
    total = weights.sum(axis=-1, keepdims=True)
    return weights / np.where(total > 0, total, 1.0)


def blocks_from_mask(mask: np.ndarray, block_size: tuple[int, int]) -> HeadPattern:
    """The smallest `blocks` pattern that covers `mask` (a block is kept if it keeps any entry)."""
    bq, bk = block_size
    n = mask.shape[0]
    rows, cols = -(-n // bq), -(-n // bk)
    padded = np.zeros((rows * bq, cols * bk), dtype=bool)
    padded[:n, :n] = mask
    blocks = padded.reshape(rows, bq, cols, bk).any(axis=(1, 3))
    ptr = np.concatenate([[0], np.cumsum(blocks.sum(axis=1))])
    return HeadPattern(
        "blocks", block_size=(bq, bk), block_ptr=tuple(ptr), block_cols=tuple(np.nonzero(blocks)[1])
    )
