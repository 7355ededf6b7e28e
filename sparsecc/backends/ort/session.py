"""Run ONNX models with onnxruntime: the reference and the dense baseline."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import onnx
import onnxruntime as ort

from sparsecc.errors import InputError

# what onnxruntime raises when it cannot load or run a model (its own classes derive from Exception)
ORT_ERRORS = (
    ort.capi.onnxruntime_pybind11_state.Fail,
    ort.capi.onnxruntime_pybind11_state.InvalidArgument,
    ort.capi.onnxruntime_pybind11_state.InvalidGraph,
    ort.capi.onnxruntime_pybind11_state.InvalidProtobuf,
    ort.capi.onnxruntime_pybind11_state.NotImplemented,
    ort.capi.onnxruntime_pybind11_state.RuntimeException,
    RuntimeError,
    TypeError,
    ValueError,
)


def make_session(
    model: onnx.ModelProto | bytes | str,
    threads: int | None = None,
    log_level: int = 3,
    optimize: bool = True,
) -> ort.InferenceSession:
    """A CPU session; `threads` pins intra-op threads (benchmarks compare at equal threads);
    `log_level` 3 logs errors, 4 only fatal ones (for failures the caller expects and reports).
    `optimize=False` runs the graph as written: sparse ops' reference bodies are not folded into
    dense weights at session start (measured on a 0.25 GiB 2:4 model: +0.45 GiB peak instead of
    +1.23), for one-off checks of big models."""
    options = ort.SessionOptions()
    options.log_severity_level = log_level
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        # no arena either: it kept the run's transients (1.5 GiB after one run of a 1 GiB 2:4
        # model's sparse file) for as long as the process lived, not the session
        options.enable_cpu_mem_arena = False
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run(
    model, inputs: dict[str, np.ndarray], threads: int | None = None, optimize: bool = True
) -> list[np.ndarray]:
    """Outputs of `model` (a proto, bytes or a path) on `inputs` (feeds only the inputs the graph declares)."""
    session = make_session(model, threads, optimize=optimize)
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in inputs.items() if k in names})


def random_inputs(model: onnx.ModelProto, seed: int = 0, int_high: int = 2) -> dict[str, np.ndarray]:
    """Seeded inputs for every graph input, from its declared type (dynamic dimensions get 1; ids and
    masks get small ints). An input random numbers cannot stand for (strings, sequences, maps) is an
    InputError naming it; the caller says how to give real inputs."""
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}  # listed as inputs by IR < 4 models
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dtype = _input_dtype(value)
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim]
        if dtype.kind == "f" or dtype.name in ("bfloat16",):
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[value.name] = np.ones(shape, dtype=bool)
        else:
            feeds[value.name] = rng.integers(0, int_high, size=shape).astype(dtype)
    return feeds


def _input_dtype(value: onnx.ValueInfoProto) -> np.dtype:
    """The numpy dtype of a tensor input whose values random numbers can stand for, else InputError."""
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise InputError(
            f"sparsecc cannot make up input '{value.name}' (a {kind or 'untyped value'}, not a tensor)"
        )
    elem = value.type.tensor_type.elem_type
    if elem == onnx.TensorProto.STRING:
        raise InputError(f"sparsecc cannot make up input '{value.name}' (a string tensor)")
    if elem == onnx.TensorProto.UNDEFINED:
        return np.dtype(np.float32)
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))
    if dtype.kind not in "biuf" and dtype.name != "bfloat16":
        raise InputError(f"sparsecc cannot make up input '{value.name}' (a {dtype.name} tensor)")
    return dtype


def try_run(model, inputs: dict[str, np.ndarray]) -> tuple[list[np.ndarray] | None, str]:
    """Outputs of `model` on `inputs`, or None and why onnxruntime could not load or run it (one line).
    A path costs less memory than a proto (onnxruntime reads the file; no serialized copy)."""
    try:
        session = make_session(model, log_level=4)
    except ORT_ERRORS as error:
        return None, f"onnxruntime cannot load it: {ort_reason(error)}"
    names = {i.name for i in session.get_inputs()}
    options = ort.RunOptions()
    options.log_severity_level = 4
    try:
        return session.run(None, {k: v for k, v in inputs.items() if k in names}, options), ""
    except ORT_ERRORS as error:
        return None, f"onnxruntime fails on these inputs: {ort_reason(error)}"


def ort_reason(error: Exception, limit: int = 300) -> str:
    """onnxruntime's message on one line, without its error code prefix and C++ source locations."""
    text = " ".join(str(error).split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"/onnxruntime_src/\S+ (onnxruntime::[^ (]*\([^)]*\)(::<lambda\(\)>)? )?", "", text)
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " …"
    return text or type(error).__name__


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
    return agreement(run(candidate, inputs), run(reference, inputs), tolerance)


def agreement(got: list[np.ndarray], want: list[np.ndarray], tolerance: float = 1e-4) -> Agreement:
    """How closely the outputs `got` match the reference outputs `want`."""
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
