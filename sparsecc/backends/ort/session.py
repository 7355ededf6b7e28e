"""Run ONNX models with onnxruntime: the reference and the dense baseline."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort

_NUMPY_OF_ONNX = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(float16)": np.float16,
}


def make_session(model: onnx.ModelProto | bytes | str, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session; `threads` pins intra-op threads (benchmarks compare at equal threads)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run(model, inputs: dict[str, np.ndarray], threads: int | None = None) -> list[np.ndarray]:
    """Outputs of `model` on `inputs` (feeds only the inputs the graph declares)."""
    session = make_session(model, threads)
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in inputs.items() if k in names})


def random_inputs(model: onnx.ModelProto, seed: int = 0, int_high: int = 2) -> dict[str, np.ndarray]:
    """Seeded inputs for every graph input with a static shape (ids/masks get small ints)."""
    session = make_session(model)
    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in arg.shape]
        dtype = _NUMPY_OF_ONNX.get(arg.type, np.float32)
        if np.issubdtype(dtype, np.floating):
            feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype is np.bool_:
            feeds[arg.name] = np.ones(shape, dtype=bool)
        else:
            feeds[arg.name] = rng.integers(0, int_high, size=shape).astype(dtype)
    return feeds


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How closely two models' outputs agree: max |a-b| against the reference's magnitude."""

    max_abs_diff: float
    max_magnitude: float
    tolerance: float  # relative to max_magnitude

    @property
    def relative(self) -> float:
        return self.max_abs_diff / max(self.max_magnitude, 1e-30)

    @property
    def ok(self) -> bool:
        return self.relative <= self.tolerance


def compare(candidate, reference, inputs: dict[str, np.ndarray], tolerance: float = 1e-4) -> Agreement:
    """Run both models on the same inputs; max difference over all outputs."""
    got = run(candidate, inputs)
    want = run(reference, inputs)
    if len(got) != len(want):  # a model that lost an output does not agree
        return Agreement(float("inf"), 0.0, tolerance)
    diff = max((output_difference(g, w) for g, w in zip(got, want, strict=True)), default=0.0)
    magnitude = max((_finite_magnitude(w) for w in want), default=0.0)
    return Agreement(diff, magnitude, tolerance)


def output_difference(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want|, where NaN against NaN and equal infinities count as equal; inf when the
    shapes differ, one side alone is NaN, or non-numeric outputs differ."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return float("inf")
    if got.size == 0:
        return 0.0
    if got.dtype.kind not in "biuf" or want.dtype.kind not in "biuf":
        return 0.0 if np.array_equal(got, want) else float("inf")
    g, w = got.astype(np.float64), want.astype(np.float64)
    same = (g == w) | (np.isnan(g) & np.isnan(w))
    with np.errstate(invalid="ignore"):
        gap = np.where(same, 0.0, np.abs(g - w))
    return float("inf") if np.isnan(gap).any() else float(gap.max())


def _finite_magnitude(want: np.ndarray) -> float:
    want = np.asarray(want)
    if want.size == 0 or want.dtype.kind not in "biuf":
        return 0.0
    finite = np.abs(want[np.isfinite(want)].astype(np.float64))
    return float(finite.max()) if finite.size else 0.0
