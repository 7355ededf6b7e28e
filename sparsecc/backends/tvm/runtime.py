"""`CompiledModel`: a built model you call like a function.

Imports only numpy, apache-tvm and the standard library at module level, so that
`sparsecc.load()` works where neither torch nor onnx is installed. torch is imported
only when a caller passes torch tensors (and then gets torch tensors back).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from sparsecc.errors import InputError, SparseccError


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str
    # For an integer input used as Gather indices: the indexed table's length n (valid: -n..n-1).
    # TVM's Gather does not check bounds, so an out-of-range id would read stray memory or crash.
    index_limit: int | None = None

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


def _is_torch(value) -> bool:
    return type(value).__module__.split(".")[0] == "torch"


class CompiledModel:
    """A model compiled by sparsecc: call it with numpy arrays or torch tensors."""

    def __init__(self, library, manifest: dict):
        self._library = library  # tvm.runtime.Module (or Executable) holding the Relax VM program
        self.manifest = manifest
        self.input_specs = [TensorSpec.from_dict(d) for d in manifest["inputs"]]
        self.output_specs = [TensorSpec.from_dict(d) for d in manifest["outputs"]]
        self.target = manifest["target"]["name"]
        self.report = manifest.get("report", [])
        self._vm = None
        self.device_code: dict[str, bytes] = {}  # extra entries for the artifact (CUDA: device.ptx)

    # -- running ---------------------------------------------------------------------------------
    def _machine(self):
        if self._vm is None:
            import tvm
            from tvm.runtime.vm import VirtualMachine

            if self.manifest["target"]["family"] == "cuda":
                device = tvm.cuda(0)
                if not device.exist:
                    raise SparseccError("this model was compiled for CUDA and no CUDA GPU is present here")
            else:
                device = tvm.cpu(0)
            self._device = device
            self._vm = VirtualMachine(self._library, device)
        return self._vm

    def _arguments(self, args, kwargs) -> tuple[list[np.ndarray], bool]:
        if len(args) + len(kwargs) != len(self.input_specs):
            names = ", ".join(s.name for s in self.input_specs)
            raise InputError(
                f"the model takes {len(self.input_specs)} inputs ({names}), got {len(args) + len(kwargs)}"
            )
        values, torch_in = [], False
        for index, spec in enumerate(self.input_specs):
            if index < len(args):
                value = args[index]
            elif spec.name in kwargs:
                value = kwargs[spec.name]
            else:
                raise InputError(
                    f"missing input '{spec.name}'; inputs are {[s.name for s in self.input_specs]}"
                )
            if _is_torch(value):
                torch_in = True
                value = value.detach().cpu().numpy()
            value = np.asarray(value)
            if tuple(value.shape) != spec.shape:
                raise InputError(
                    f"input '{spec.name}' has shape {tuple(value.shape)} but the model was compiled for {spec.shape}; "
                    "recompile with example inputs of that shape"
                )
            if value.dtype != np.dtype(spec.dtype):
                raise InputError(
                    f"input '{spec.name}' has dtype {value.dtype} but the model expects {spec.dtype}; "
                    f"convert it with .astype('{spec.dtype}')"
                )
            spec.check_indices(value)
            values.append(np.ascontiguousarray(value))
        return values, torch_in

    def __call__(self, *args, **kwargs):
        import tvm

        values, torch_in = self._arguments(args, kwargs)
        vm = self._machine()
        result = vm["main"](*[tvm.runtime.tensor(v, self._device) for v in values])
        outputs = [r.numpy() for r in result] if not hasattr(result, "numpy") else [result.numpy()]
        if torch_in:
            import torch

            outputs = [torch.from_numpy(o) for o in outputs]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def benchmark(self, *args, number: int = 10, repeat: int = 5, **kwargs) -> float:
        """Median milliseconds of one call (TVM's time evaluator, no Python overhead)."""
        import tvm

        values, _ = self._arguments(args, kwargs)
        vm = self._machine()
        tensors = [tvm.runtime.tensor(v, self._device) for v in values]
        vm.set_input("main", *tensors)
        timer = vm.time_evaluator("invoke_stateful", self._device, number=number, repeat=repeat)
        return float(np.median(timer("main").results)) * 1000.0

    def wall_ms(self, *args, runs: int = 20, **kwargs) -> float:
        """Median wall-clock milliseconds of `self(*args)` (includes argument conversion)."""
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            self(*args, **kwargs)
            times.append(time.perf_counter() - started)
        return float(np.median(times)) * 1000.0

    # -- saving ----------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write one `.sccpkg` file (atomically): library, manifest, sha256 per entry."""
        from sparsecc.backends.tvm.artifact import save

        save(self, path)

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in self.input_specs)
        return f"CompiledModel(target={self.target!r}, inputs=[{ins}])"
