"""`CompiledModel`: a model built by the TVM backend, called like a function; `load` reopens one.

Imports only numpy, apache-tvm and the standard library, so `sparsecc.load()` works where
neither torch nor onnx is installed. torch is imported only when a caller passes torch
tensors (and then gets torch tensors back).
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from sparsecc.backends.base import TensorSpec, arguments, results
from sparsecc.backends.generation import DecoderSignature, GeneratesTokens
from sparsecc.backends.tvm.package import map_arrays, read_package, write_package
from sparsecc.errors import ArtifactError, SparseccError

LIBRARY = "model.so"


class CompiledModel(GeneratesTokens):
    """A model compiled by sparsecc's TVM backend: call it with numpy arrays or torch tensors; a decoder
    compiled with its KV cache also generates (`generate`, `generation`)."""

    def __init__(self, library, manifest: dict, weights: list | None = None):
        self._library = library  # tvm.runtime.Module (or Executable) holding the Relax VM program
        # main's parameters after the inputs (`params.py`): tvm tensors from the build, or numpy
        # views of the package file (`package.map_arrays`)
        self._weights = list(weights or [])
        self._device_weights: list | None = None
        self.manifest = manifest
        self.input_specs = [TensorSpec.from_dict(d) for d in manifest["inputs"]]
        self.output_specs = [TensorSpec.from_dict(d) for d in manifest["outputs"]]
        self.target = manifest["target"]["name"]
        self.report = manifest.get("report", [])
        self._vm = None
        self.device_code: dict[str, bytes] = {}  # extra entries for the artifact (CUDA: device.ptx)
        self.example_inputs: dict[str, np.ndarray] | None = None
        self.tuning_trials = 0
        self.schedule_log = None  # which schedule rule took each function (set by the backend's build)

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

    def _arguments(self, values: list) -> list:
        """The inputs (numpy arrays, or TVM tensors kept as they are) as device tensors, followed by
        the weights (moved to the device once)."""
        import tvm

        self._machine()
        if self._device_weights is None:
            self._device_weights = [_on_device(w, self._device) for w in self._weights]
        inputs = [
            v if isinstance(v, tvm.runtime.Tensor) else tvm.runtime.tensor(v, self._device) for v in values
        ]
        return [*inputs, *self._device_weights]

    @property
    def device(self):
        """The TVM device the model runs on."""
        self._machine()
        return self._device

    def call_tensors(self, values: list) -> list:
        """One call of `main` on inputs already checked (numpy arrays or TVM tensors, in input order);
        the outputs as TVM tensors, left on the device."""
        import tvm

        result = self._machine()["main"](*self._arguments(values))
        return list(result) if not isinstance(result, tvm.runtime.Tensor) else [result]

    def _decoder_steps(self, signature: DecoderSignature):
        from sparsecc.backends.tvm.decoder import TvmDecoderSteps

        return TvmDecoderSteps(self, signature)

    def __call__(self, *args, **kwargs):
        values, torch_in = arguments(self.input_specs, args, kwargs)
        vm = self._machine()
        result = vm["main"](*self._arguments(values))
        outputs = [r.numpy() for r in result] if not hasattr(result, "numpy") else [result.numpy()]
        return results(outputs, torch_in)

    def benchmark(self, *args, number: int = 10, repeat: int = 5, **kwargs) -> float:
        """Median milliseconds of one call (TVM's time evaluator, no Python overhead)."""
        values, _ = arguments(self.input_specs, args, kwargs)
        vm = self._machine()
        vm.set_input("main", *self._arguments(values))
        timer = vm.time_evaluator("invoke_stateful", self._device, number=number, repeat=repeat)
        return float(np.median(timer("main").results)) * 1000.0

    def profile(self, *args, runs: int = 5, **kwargs):
        """Time per function group of one call (median of `runs`), slowest first: `profile.FunctionTime`s."""
        from sparsecc.backends.tvm.profile import profile_vm

        values, _ = arguments(self.input_specs, args, kwargs)
        vm = self._machine()
        return profile_vm(vm, self._device, self._arguments(values), runs)

    # -- saving ----------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write one `.sccpkg` file (atomically): library, weights, manifest, sha256 per entry."""
        from sparsecc.backends.tvm.export import export_library

        with tempfile.TemporaryDirectory() as work:
            library = Path(work) / LIBRARY
            export_library(self._library, library, self.manifest["target"]["family"])
            entries = {LIBRARY: library.read_bytes(), **self.device_code}
        write_package(path, self.manifest, entries, (_host_array(w) for w in self._weights))

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in self.input_specs)
        return f"CompiledModel(target={self.target!r}, inputs=[{ins}])"


def load(path) -> CompiledModel:
    """Open a `.sccpkg` written by `CompiledModel.save`, checking integrity and architecture."""
    from sparsecc.backends.tvm.env import configure_tvm

    configure_tvm()
    path = Path(path)
    manifest, entries = read_package(path, (LIBRARY,))
    problem = _manifest_problem(manifest)
    if problem:
        raise ArtifactError(
            f"'{path}' has a manifest this sparsecc cannot read ({problem}); compile it again"
        )
    arch, here = manifest["target"]["arch"], platform.machine()
    if arch != here:
        raise ArtifactError(
            f"'{path}' was built for {arch}, this machine is {here}; compile it with --target cpu here"
        )
    import tvm

    # The library goes to a file we name in a directory we create: never a name from the archive.
    work = tempfile.mkdtemp(prefix="sparsecc-load-")
    lib_path = Path(work) / LIBRARY
    try:
        lib_path.write_bytes(entries[LIBRARY])
        module = tvm.runtime.load_module(str(lib_path))
    except RuntimeError as error:  # TVM's errors; the digests matched: a library this TVM cannot open
        first = " ".join(str(error).split())[:200]
        raise ArtifactError(
            f"'{path}' holds a library this TVM cannot load ({first}); compile it again with this sparsecc"
        ) from None
    finally:  # the loaded object stays mapped; the file is not needed any more
        lib_path.unlink(missing_ok=True)
        os.rmdir(work)
    return CompiledModel(module, manifest, map_arrays(path, manifest))


def _host_array(weight) -> np.ndarray:
    """A weight as a numpy array: a view of a CPU tvm tensor's memory where possible."""
    if isinstance(weight, np.ndarray):
        return weight
    try:
        return np.from_dlpack(weight)
    except (BufferError, TypeError, RuntimeError):  # on a GPU, or a dtype numpy lacks
        return weight.numpy()


def _on_device(weight, device):
    """A weight as a tensor on `device`: a file-backed numpy view stays where it is on a CPU."""
    import tvm

    if not isinstance(weight, np.ndarray):
        return weight if weight.device == device else weight.copyto(device)
    if device.dlpack_device_type() == 1 and weight.flags.writeable:  # kDLCPU: no copy
        try:
            return tvm.runtime.from_dlpack(weight)
        except RuntimeError:  # not aligned as TVM requires
            pass
    return tvm.runtime.tensor(weight, device)


def _manifest_problem(manifest: dict) -> str | None:
    """What in the manifest `CompiledModel` cannot use (None when all is well)."""
    target = manifest.get("target")
    if not isinstance(target, dict) or not all(_is_text(target.get(k)) for k in ("name", "family", "arch")):
        return "'target' must hold 'name', 'family' and 'arch' strings"
    if not isinstance(manifest.get("report", []), list):
        return "'report' must be a list"
    for key, lowest in (("inputs", -1), ("outputs", -1)):
        specs = manifest.get(key)
        if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
            return f"'{key}' must be a list of tensor specs"
        for spec in specs:
            problem = _tensor_spec_problem(spec, lowest)
            if problem:
                return f"{key}: {problem}"
    return None


def _tensor_spec_problem(spec: dict, lowest: int) -> str | None:
    name, shape, dtype, limit = (
        spec.get("name"),
        spec.get("shape"),
        spec.get("dtype"),
        spec.get("index_limit"),
    )
    if not _is_text(name):
        return "a tensor without a printable name"
    if not isinstance(shape, list) or not all(_is_int(d) and d >= lowest for d in shape):
        return f"'{name}' has no valid shape"
    if limit is not None and not (_is_int(limit) and limit > 0):
        return f"'{name}' has an invalid index_limit"
    try:
        kind = np.dtype(dtype).kind if isinstance(dtype, str) else None
    except (TypeError, ValueError):
        kind = None
    if kind is None or kind not in "biuf":
        return f"'{name}' has no numeric dtype"
    return None


def _is_text(value) -> bool:
    return isinstance(value, str) and value.isprintable()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
