"""What a backend is given and what it returns.

The compiler driver (`compiler/api.py`) brings a model into the IR, runs the pass
pipeline with a `CompileContext` holding the backend's target and cost model, then calls
`backend.build(model, context, request)`. The backend returns a compiled model: callable
on numpy arrays (or torch tensors), with a `report` (per weight: what runs and why) and
`save(path)`. Backends register by name in `backends/__init__.py`.

Imports only numpy and the standard library at module level: `sparsecc.load` goes through
here where neither torch nor onnx is installed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sparsecc.errors import InputError

if TYPE_CHECKING:
    import onnx_ir as ir

    from sparsecc.passes.context import CompileContext, Target
    from sparsecc.passes.cost import CostModel


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, shape (-1 where a backend that keeps dynamic shapes left one), numpy dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    # For an integer input used as Gather indices: the indexed table's length n (valid: -n..n-1).
    # A backend whose Gather does not check bounds refuses ids outside it instead of reading stray memory.
    index_limit: int | None = None

    def accepts_shape(self, shape) -> bool:
        """Whether an array of `shape` fits: same rank, equal in every dimension but the dynamic (-1) ones."""
        return len(shape) == len(self.shape) and all(d in (-1, s) for d, s in zip(self.shape, shape))

    @property
    def shape_text(self) -> str:
        """(1, 128), or (1, any) where a dimension is dynamic."""
        return (
            "("
            + ", ".join("any" if d == -1 else str(d) for d in self.shape)
            + ("," if len(self.shape) == 1 else "")
            + ")"
        )

    def as_dict(self) -> dict:
        data = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.index_limit is not None:
            data["index_limit"] = self.index_limit
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TensorSpec:
        return cls(data["name"], tuple(int(d) for d in data["shape"]), data["dtype"], data.get("index_limit"))

    def check_indices(self, value: np.ndarray) -> None:
        if self.index_limit is None or value.size == 0:
            return
        low, high, n = int(value.min()), int(value.max()), self.index_limit
        if low < -n or high >= n:
            bad = high if high >= n else low
            raise InputError(
                f"input '{self.name}' holds {bad}, but it indexes a table of {n} rows (valid: {-n}..{n - 1}); "
                "check for ids outside the vocabulary"
            )


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    """The compile's inputs and options, as the driver resolved them."""

    inputs: list[
        TensorSpec
    ]  # the shapes the model is built for (-1: dynamic, backends with `dynamic_shapes` only)
    outputs: list[dict]  # name, shape (-1: not static), dtype of each graph output
    example_inputs: (
        dict[str, np.ndarray] | None
    )  # given, or synthesised for static shapes (None: dynamic, none given)
    tune: int = 0  # autotuning trials per kernel (0: default schedules)
    records_path: Path | None = None  # tuning records directory (None: the default cache)
    measure: bool = False  # time each sparse kernel against dense (the report's measured speedup)
    rpc: str | None = None  # HOST:PORT:KEY of a TVM RPC tracker to measure on
    dtype: str = "float32"  # weight precision: "float32", "bfloat16" or "float16" (`ops/precision.py`)
    # the caller gives the IR's weights up: a backend may drop them once its kernels hold their own
    # copies (`compile` does; one copy of the weights at a time, issue 14)
    release_weights: bool = False


class CompiledModel(Protocol):
    """What every backend returns."""

    input_specs: list[TensorSpec]
    output_specs: list[TensorSpec]
    report: list[dict]  # per weight: WeightReport.as_dict() completed by the backend
    example_inputs: dict[str, np.ndarray] | None

    def __call__(self, *args, **kwargs) -> Any: ...

    def save(self, path) -> None: ...


class Backend(Protocol):
    """A way to run the sparsified IR: native code (TVM) or a runtime (onnxruntime)."""

    name: str

    def resolve_target(self, target) -> Target:
        """The target object for a user's target name or dict; bad values raise SparseccError."""
        ...

    def cost_model(self, target: Target) -> CostModel:
        """What sparse formats buy on `target` with this backend's kernels."""
        ...

    def build(self, model: ir.Model, context: CompileContext, request: BuildRequest) -> CompiledModel:
        """Compile the sparsified IR; fill in the kernel, what it runs and why, in the report."""
        ...


def is_torch(value) -> bool:
    """Whether `value` is a torch object (checked without importing torch)."""
    return type(value).__module__.split(".")[0] == "torch"


def arguments(specs: list[TensorSpec], args, kwargs) -> tuple[list[np.ndarray], bool]:
    """The call's inputs in `specs` order as contiguous numpy arrays, checked; and whether torch came in."""
    if len(args) + len(kwargs) != len(specs):
        names = ", ".join(s.name for s in specs)
        raise InputError(f"the model takes {len(specs)} inputs ({names}), got {len(args) + len(kwargs)}")
    values, torch_in = [], False
    for index, spec in enumerate(specs):
        if index < len(args):
            value = args[index]
        elif spec.name in kwargs:
            value = kwargs[spec.name]
        else:
            raise InputError(f"missing input '{spec.name}'; inputs are {[s.name for s in specs]}")
        if is_torch(value):
            torch_in = True
            value = value.detach().cpu().numpy()
        try:
            value = np.asarray(value)
        except (ValueError, TypeError) as error:  # a ragged list, an object numpy cannot make an array of
            raise InputError(
                f"input '{spec.name}' is not an array ({str(error).splitlines()[0]}); "
                f"pass a numpy array or a torch tensor of shape {spec.shape}"
            ) from None
        if not spec.accepts_shape(value.shape):
            raise InputError(
                f"input '{spec.name}' has shape {tuple(value.shape)} but the model was compiled for "
                f"{spec.shape_text}; recompile with example inputs of that shape"
            )
        if value.dtype != np.dtype(spec.dtype):
            raise InputError(
                f"input '{spec.name}' has dtype {value.dtype} but the model expects {spec.dtype}; "
                f"convert it with .astype('{spec.dtype}')"
            )
        spec.check_indices(value)
        values.append(np.ascontiguousarray(value))
    return values, torch_in


def results(outputs: list[np.ndarray], torch_in: bool):
    """One output as itself, several as a tuple; torch tensors when torch tensors came in."""
    if torch_in:
        import torch

        outputs = [torch.from_numpy(o) for o in outputs]
    return outputs[0] if len(outputs) == 1 else tuple(outputs)
