"""A pruned weight that is computed when read, so the pipeline never holds every pruned copy.

Between `prune` and `dense-to-sparse` each selected weight would otherwise exist twice (the
model's original, which the loaded file or proto keeps anyway, and its pruned copy): on a big
model a whole second set of weights. The prune pass instead stores the keep-mask as bits
(1/32 of the float32 bytes) beside the original, and zeroes the dropped entries each time a
pass or a writer reads the values: dense-to-sparse reads each once, then replaces it.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparsecc.passes.linear import release_mapped


def pruned_weight(stored: ir.TensorProtocol, keep: np.ndarray) -> ir.LazyTensor:
    """`stored` (any layout) with the entries where `keep` is False zeroed, computed on read.

    `keep` is the mask in `stored`'s layout (a transposed or reshaped view is fine)."""
    shape = tuple(int(d) for d in stored.shape)
    bits = np.packbits(keep, axis=None)  # packbits copies in C order of the view it is given
    size = keep.size
    release_mapped(stored)

    def values() -> ir.Tensor:
        mask = np.unpackbits(bits, count=size).view(bool).reshape(shape)
        out = np.zeros(shape, dtype=np.float32)
        np.copyto(out, stored.numpy(), where=mask)
        release_mapped(stored)
        return ir.Tensor(out)

    return ir.LazyTensor(values, dtype=ir.DataType.FLOAT, shape=ir.Shape(shape), name=stored.name)
