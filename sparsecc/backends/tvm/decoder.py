"""Decoder steps in the TVM VM, the KV cache kept as TVM tensors between steps.

The TVM backend builds a decoder's one-token step (`compiler/frontends/decode_step.py`): a static
token count (the kernels are specialised for it) and a symbolic cache length. A prompt of any
length runs through that step a token at a time; each call hands the previous call's `present.*`
tensors back as `past.*` inputs, so the cache never passes through numpy. Only the last
position's logits are copied out.
"""

from __future__ import annotations

import numpy as np

from sparsecc.backends.generation import DecoderSignature
from sparsecc.errors import InputError, ModelError


class TvmDecoderSteps:
    def __init__(self, model, signature: DecoderSignature):
        """`model`: a `runtime.CompiledModel` whose inputs and outputs `signature` names."""
        self.model, self.signature = model, signature
        specs = {spec.name: spec for spec in model.input_specs}
        self.batch, self.width = specs[signature.ids].shape  # tokens per call (1 for a decode step)
        roles = {signature.ids, signature.mask, *(e.past for e in signature.cache)}
        extra = [name for name in specs if name not in roles]
        if extra:
            raise ModelError(
                f"generation feeds input_ids, attention_mask and the cache; this decoder also takes {extra}"
            )
        outputs = [spec.name for spec in model.output_specs]
        self.logits_index = outputs.index(signature.logits)
        self.present_index = [outputs.index(e.present) for e in signature.cache]
        self.order = [spec.name for spec in model.input_specs]

    def empty_cache(self, batch: int) -> list:
        import tvm

        if self.batch not in (-1, batch):
            raise InputError(
                f"this decoder was compiled for a batch of {self.batch}; give {self.batch} prompt(s), not {batch}"
            )
        device = self.model.device
        return [
            tvm.runtime.tensor(np.zeros((batch, e.heads, 0, e.head_dim), np.dtype(e.dtype)), device)
            for e in self.signature.cache
        ]

    def step(self, feeds: dict[str, np.ndarray], cache: list) -> tuple[np.ndarray, list]:
        ids = feeds[self.signature.ids]
        mask = feeds.get(self.signature.mask) if self.signature.mask else None
        tokens = ids.shape[1]
        width = self.width if self.width > 0 else tokens
        if tokens % width:
            raise InputError(f"this decoder takes {width} tokens per step; got {tokens}")
        outputs = None
        for start in range(0, tokens, width):
            values = {self.signature.ids: ids[:, start : start + width]}
            if mask is not None:  # the mask up to this chunk's last token
                values[self.signature.mask] = mask[:, : mask.shape[1] - tokens + start + width]
            values.update({e.past: tensor for e, tensor in zip(self.signature.cache, cache)})
            outputs = self.model.call_tensors([values[name] for name in self.order])
            cache = [outputs[index] for index in self.present_index]
        logits = outputs[self.logits_index].numpy()
        return logits[:, -1, :], cache
