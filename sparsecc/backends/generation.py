"""Token generation for decoders exported one step with their KV cache, whatever backend runs the step.

A decoder step takes `input_ids [B, q]`, an `attention_mask [B, past + q]` and each layer's cache
`[B, kv_heads, past, head_dim]`, and returns `logits [B, q, vocab]` and the cache grown by q
(`models/llama.py` exports one; optimum's exports look the same). `DecoderSignature` finds those
roles among a compiled model's inputs and outputs; `generate` runs the prompt as one prefill step,
then one step per new token, choosing tokens greedily or by sampling. The cache stays inside the
backend's `DecoderSteps` between steps (onnxruntime: its own OrtValues), never copied out to numpy.

Imports only numpy and the standard library (the runtime side of the layers).
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any, Protocol

import numpy as np

from sparsecc.backends.base import is_torch, results
from sparsecc.errors import InputError, ModelError


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    past: str  # the input that takes this cache tensor
    present: str  # the output that gives it back, grown by the step's tokens
    heads: int  # kv heads (dimension 1)
    head_dim: int  # dimension 3
    dtype: str


@dataclasses.dataclass(frozen=True)
class DecoderSignature:
    """Which inputs and outputs of a model play which role in a decoding step."""

    ids: str
    mask: str | None
    logits: str
    cache: tuple[CacheEntry, ...]

    @classmethod
    def of(cls, inputs, outputs) -> DecoderSignature:
        """From TensorSpecs (shapes with -1 where symbolic); ModelError when it is not such a decoder."""
        names = [spec.name for spec in inputs]
        past = [spec for spec in inputs if "past" in spec.name.lower()]
        present = {spec.name: spec for spec in outputs if "present" in spec.name.lower()}
        ids = next((n for n in names if n == "input_ids"), None) or next(
            (n for n in names if "ids" in n), None
        )
        if ids is None or not past or len(past) != len(present):
            raise ModelError(
                f"this model is not a decoder exported with its KV cache (inputs {names}, outputs "
                f"{[o.name for o in outputs]}): generation needs input_ids, past_key_values.* inputs and as many "
                "present.* outputs; export one step with its cache (sparsecc.models.llama.export_decoder, or "
                "optimum's exporter with --task text-generation-with-past)"
            )
        logits = next((o.name for o in outputs if o.name == "logits"), None) or next(
            o.name for o in outputs if o.name not in present
        )
        entries = []
        for index, spec in enumerate(past):
            name = _present_name(spec.name, present) or list(present)[index]
            shape = tuple(spec.shape)
            if len(shape) != 4 or shape[1] < 0 or shape[3] < 0:
                raise ModelError(
                    f"cache input '{spec.name}' has shape {list(shape)}; generation expects "
                    "[batch, kv_heads, past_sequence, head_dim] with kv_heads and head_dim fixed"
                )
            entries.append(CacheEntry(spec.name, name, shape[1], shape[3], spec.dtype))
        mask = next((n for n in names if n == "attention_mask"), None)
        return cls(ids, mask, logits, tuple(entries))


def _present_name(past: str, present: dict) -> str | None:
    """past_key_values.3.key -> present.3.key (optimum's and our names); None when no such output."""
    for pattern, replacement in ((r"past_key_values", "present"), (r"past", "present")):
        candidate = re.sub(pattern, replacement, past, count=1)
        if candidate in present:
            return candidate
    return None


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: greedy (argmax), or sampled from the softmax of logits / temperature
    restricted to the top_k tokens (0: all) and the smallest set of probability >= top_p."""

    greedy: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        if self.temperature <= 0:
            raise InputError(f"temperature must be > 0, got {self.temperature}; use greedy decoding for 0")
        if self.top_k < 0 or not 0 < self.top_p <= 1:
            raise InputError(
                f"top_k must be >= 0 and top_p in (0, 1], got top_k={self.top_k}, top_p={self.top_p}"
            )

    def choose(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Next token per row of `logits [B, vocab]`."""
        if self.greedy:
            return logits.argmax(axis=-1)
        scores = logits.astype(np.float64) / self.temperature
        if self.top_k:
            kth = np.sort(scores, axis=-1)[:, -min(self.top_k, scores.shape[-1])][:, None]
            scores = np.where(scores < kth, -np.inf, scores)
        probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        if self.top_p < 1:
            order = np.argsort(-probs, axis=-1)
            sorted_probs = np.take_along_axis(probs, order, axis=-1)
            keep_sorted = np.cumsum(sorted_probs, axis=-1) - sorted_probs < self.top_p
            keep = np.zeros_like(keep_sorted)
            np.put_along_axis(keep, order, keep_sorted, axis=-1)
            probs = np.where(keep, probs, 0.0)
            probs /= probs.sum(axis=-1, keepdims=True)
        return np.array([rng.choice(probs.shape[-1], p=row) for row in probs])


class DecoderSteps(Protocol):
    """A backend's way to run one step; `cache` is whatever it keeps between steps."""

    def empty_cache(self, batch: int) -> Any: ...

    def step(self, feeds: dict[str, np.ndarray], cache: Any) -> tuple[np.ndarray, Any]:
        """(logits of the step's last position [B, vocab], the grown cache)."""
        ...


@dataclasses.dataclass
class Generation:
    tokens: np.ndarray  # [B, prompt + new]
    prompt_tokens: int
    prefill_seconds: float
    decode_seconds: float  # all steps after the first
    logits: list[np.ndarray] | None = None  # per step [B, vocab], when recorded

    @property
    def new_tokens(self) -> int:
        return self.tokens.shape[1] - self.prompt_tokens

    @property
    def decode_tokens_per_second(self) -> float | None:
        steps = self.new_tokens - 1  # the first new token comes from the prefill
        return (
            steps * self.tokens.shape[0] / self.decode_seconds
            if steps > 0 and self.decode_seconds > 0
            else None
        )


def prompt_array(input_ids) -> tuple[np.ndarray, bool]:
    """The prompt as int64 [B, P], and whether torch came in."""
    torch_in = is_torch(input_ids)
    if torch_in:
        input_ids = input_ids.detach().cpu().numpy()
    try:
        ids = np.asarray(input_ids)
    except (ValueError, TypeError):
        raise InputError(
            "input_ids must be token ids: a list of ints or an int array [batch, tokens]"
        ) from None
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[1] == 0 or ids.dtype.kind not in "iu":
        raise InputError(
            f"input_ids must be a non-empty int array [batch, tokens] (or a list of ints), got {ids.dtype} {list(ids.shape)}"
        )
    return ids.astype(np.int64), torch_in


def generate(
    steps: DecoderSteps,
    signature: DecoderSignature,
    input_ids,
    max_new_tokens: int,
    sampling: Sampling = Sampling(),
    eos_token_id: int | None = None,
    vocab: int | None = None,
    record_logits: bool = False,
) -> Generation:
    """The prompt, then up to `max_new_tokens` tokens (rows that produced `eos_token_id` repeat it)."""
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    ids, _ = prompt_array(input_ids)
    if vocab is not None and (ids.min() < 0 or ids.max() >= vocab):
        raise InputError(
            f"input_ids hold {int(ids.max() if ids.max() >= vocab else ids.min())}, outside the vocabulary 0..{vocab - 1}"
        )
    batch, prompt = ids.shape
    rng = np.random.default_rng(sampling.seed)
    cache = steps.empty_cache(batch)
    tokens, logits_seen = [ids], []
    finished = np.zeros(batch, dtype=bool)
    current, total = ids, prompt
    started = time.perf_counter()
    prefill = 0.0
    for index in range(max_new_tokens):
        feeds = {signature.ids: current}
        if signature.mask is not None:
            feeds[signature.mask] = np.ones((batch, total), dtype=np.int64)
        logits, cache = steps.step(feeds, cache)
        if index == 0:
            prefill = time.perf_counter() - started
        if record_logits:
            logits_seen.append(np.array(logits))
        chosen = sampling.choose(logits, rng)
        if eos_token_id is not None:
            chosen = np.where(finished, eos_token_id, chosen)
            finished |= chosen == eos_token_id
        current = chosen.astype(np.int64)[:, None]
        tokens.append(current)
        total += 1
        if eos_token_id is not None and finished.all():
            break
    decode = time.perf_counter() - started - prefill
    return Generation(
        np.concatenate(tokens, axis=1), prompt, prefill, decode, logits_seen if record_logits else None
    )


class GeneratesTokens:
    """`generate` and `generation` for a compiled decoder; the backend's model class supplies its input
    and output specs and `_decoder_steps` (how it runs one step and keeps the cache)."""

    input_specs: list
    output_specs: list

    def _decoder_steps(self, signature: DecoderSignature) -> DecoderSteps:
        raise NotImplementedError

    def generate(
        self,
        input_ids,
        max_new_tokens: int = 32,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        eos_token_id: int | None = None,
    ):
        """Prompt + new token ids [B, P + new] (torch when torch came in) of a decoder exported with its
        KV cache: greedy by default, or sampled (`do_sample`, temperature, top_k, top_p, seed)."""
        run = self.generation(
            input_ids,
            max_new_tokens,
            Sampling(not do_sample, temperature, top_k, top_p, seed),
            eos_token_id,
        )
        return results([run.tokens], is_torch(input_ids))

    def generation(
        self,
        input_ids,
        max_new_tokens: int,
        sampling: Sampling | None = None,
        eos_token_id=None,
        record_logits=False,
    ) -> Generation:
        """`generate` with timings (and each step's logits when `record_logits`)."""
        signature = DecoderSignature.of(self.input_specs, self.output_specs)
        vocab = next((o.shape[-1] for o in self.output_specs if o.name == signature.logits), -1)
        return generate(
            self._decoder_steps(signature),
            signature,
            input_ids,
            max_new_tokens,
            sampling or Sampling(),
            eos_token_id,
            vocab=vocab if vocab > 0 else None,
            record_logits=record_logits,
        )
