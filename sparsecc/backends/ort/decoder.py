"""Decoder steps in an onnxruntime session, the KV cache kept as onnxruntime's own values.

Each step binds the previous step's `present.*` OrtValues as the next step's `past.*` inputs
(IO binding), so the cache never passes through numpy between steps; only the last position's
logits are copied out.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from sparsecc.backends.generation import DecoderSignature


class OrtDecoderSteps:
    def __init__(self, session: ort.InferenceSession, signature: DecoderSignature):
        self.session, self.signature = session, signature

    def empty_cache(self, batch: int) -> list[ort.OrtValue]:
        return [
            ort.OrtValue.ortvalue_from_numpy(
                np.zeros((batch, e.heads, 0, e.head_dim), dtype=np.dtype(e.dtype))
            )
            for e in self.signature.cache
        ]

    def step(
        self, feeds: dict[str, np.ndarray], cache: list[ort.OrtValue]
    ) -> tuple[np.ndarray, list[ort.OrtValue]]:
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for entry, value in zip(self.signature.cache, cache):
            binding.bind_ortvalue_input(entry.past, value)
        binding.bind_output(self.signature.logits, "cpu")
        for entry in self.signature.cache:
            binding.bind_output(entry.present, "cpu")
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        logits = outputs[0].numpy()[:, -1, :]
        return logits, list(outputs[1:])
