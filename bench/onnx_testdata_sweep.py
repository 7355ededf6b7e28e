"""Every model the `onnx` wheel ships as backend test data, through `sparsecc sparsify --spec existing`.

    python bench/onnx_testdata_sweep.py [--dirs pytorch-converted,pytorch-operator,simple,light]
                                        [--compile] [--filter SUBSTRING]

For each model in onnx/backend/test/data/{pytorch-converted,pytorch-operator,simple,light}:
onnxruntime runs the unmodified model on the shipped inputs (a model it cannot run is excluded
and counted); then `sparsecc sparsify MODEL --spec existing -o out.onnx` runs in-process through
the CLI entry point and the written model is run by onnxruntime on the same inputs. Results:
  same      the sparsified model's outputs equal onnxruntime's on the input model (TOLERANCE)
  refused   sparsecc exited 2 with a one-line reason (printed)
  DIFFERENT the outputs differ (a sparsecc bug)
  CRASH     a traceback (a sparsecc bug)
`--compile` also compiles each model with the TVM backend (cpu) and compares its outputs.
Prints one line per model (`model | sparsify | pipeline IR [| compile]`), the excluded models
with onnxruntime's reason, then the counts. "pipeline IR" is `sparsecc.sparsify`'s own output
(opset-converted, canonicalised), which the CLI writes once some weight gets sparser.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import onnx
import onnx.backend.test
from onnx import numpy_helper
from rich.console import Console
from rich.markup import escape

from sparsecc.backends.ort import session
from sparsecc.errors import SparseccError
from sparsecc.tools import cli

DIRS = ("pytorch-converted", "pytorch-operator", "simple", "light")
DATA = Path(onnx.backend.test.__file__).parent / "data"
TOLERANCE = 1e-4  # max |got - want| / max(1, max |want|): float32 models, outputs of size ~1


def cases(dirs=DIRS) -> list[tuple[str, Path, dict[str, np.ndarray], list[np.ndarray]]]:
    """(name, model path, inputs by name, shipped outputs) for the first data set of every model."""
    found = []
    for folder in dirs:
        root = DATA / folder
        if folder == "light":  # model file + shipped output; inputs as onnx's runner makes them
            for path in sorted(root.glob("*.onnx")):
                model = onnx.load(str(path), load_external_data=False)
                inits = {t.name for t in model.graph.initializer}
                feeds = {v.name: _light_input(v) for v in model.graph.input if v.name not in inits}
                want = [
                    numpy_helper.to_array(_tensor(p)) for p in sorted(root.glob(f"{path.stem}_output_*.pb"))
                ]
                found.append((f"{folder}/{path.stem}", path, feeds, want))
            continue
        for case in sorted(p for p in root.iterdir() if (p / "model.onnx").exists()):
            data = case / "test_data_set_0"
            model = onnx.load(str(case / "model.onnx"), load_external_data=False)
            inits = {t.name for t in model.graph.initializer}
            names = [v.name for v in model.graph.input if v.name not in inits]
            tensors = [_tensor(p) for p in sorted(data.glob("input_*.pb"), key=_index)]
            feeds = {t.name or name: numpy_helper.to_array(t) for t, name in zip(tensors, names)}
            want = [_array(p) for p in sorted(data.glob("output_*.pb"), key=_index)]
            found.append((f"{folder}/{case.name}", case / "model.onnx", feeds, want))
    return found


def _index(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


def _tensor(path: Path) -> onnx.TensorProto:
    return onnx.TensorProto.FromString(path.read_bytes())


def _array(path: Path) -> np.ndarray:
    return numpy_helper.to_array(_tensor(path))


def _light_input(value: onnx.ValueInfoProto) -> np.ndarray:
    """What onnx's backend runner feeds the light models: arange / n in the input's static shape."""
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def differ(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    """Largest output difference relative to max(1, the output's magnitude); NaN against NaN is equal."""
    if len(got) != len(want):
        return float("inf")
    worst = 0.0
    for g, w in zip(got, want):
        diff = session.output_difference(g, w)
        scale = max(1.0, session._finite_magnitude(w))
        worst = max(worst, diff / scale)
    return worst


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`sparsecc ARGV` in this process: exit code, stdout, stderr (a traceback is in stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except Exception:  # a bug: keep the traceback for the table
            traceback.print_exc()
            code = -1
    return code, out.getvalue(), err.getvalue()


def sparsify_case(
    path: Path, feeds: dict[str, np.ndarray], want: list[np.ndarray], workdir: Path, spec: str = "existing"
) -> tuple[str, str]:
    """(result, detail) of `sparsecc sparsify --spec SPEC` on one model with its shipped inputs."""
    out = workdir / "out.onnx"
    argv = ["sparsify", str(path), "--spec", spec, "-o", str(out)]
    for index, (name, array) in enumerate(feeds.items()):
        file = workdir / f"input_{index}.npy"
        np.save(file, array.astype(str) if array.dtype == object else array)  # .npy holds no objects
        argv += ["--input", f"{name}={file}"]
    code, stdout, stderr = run_cli(argv)
    if code == -1:
        return "CRASH", stderr.strip().splitlines()[-1]
    if code == 2:
        return "refused", " ".join(stderr.split()).removeprefix("error: ")
    if code != 0 or not out.exists():
        return "CRASH", f"exit {code}: {stderr.strip()[-200:]}"
    got = session.run(str(out), feeds)
    diff = differ(got, want)
    skipped = next((line for line in stderr.splitlines() if "check skipped" in line), "")
    if "the input model, unchanged" in stdout:
        skipped = "written unchanged (nothing sparse)"
    if diff > TOLERANCE:
        return "DIFFERENT", f"max rel. diff {diff:.2e}"
    return "same", " ".join(skipped.split())


def pipeline_case(
    path: Path, feeds: dict[str, np.ndarray], want: list[np.ndarray], spec: str = "existing"
) -> tuple[str, str]:
    """(result, detail) of the pass pipeline's own output (`sparsecc.sparsify`: the converted opset,
    canonicalised), which `sparsify` writes when some weight gets sparser, run by onnxruntime."""
    import sparsecc

    try:
        proto = sparsecc.sparsify(str(path), spec)
    except SparseccError as error:
        return "refused", str(error)
    except Exception as error:  # a bug: report it
        return "CRASH", f"{type(error).__name__}: {_first_line(error)}"
    got, why = session.try_run(proto, feeds)
    if got is None:
        return "CRASH", why
    diff = differ(got, want)
    return ("same", "") if diff <= TOLERANCE else ("DIFFERENT", f"max rel. diff {diff:.2e}")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def pruned_reference(
    path: Path, feeds: dict[str, np.ndarray], spec: str
) -> tuple[list[np.ndarray] | None, str]:
    """onnxruntime on the pruned dense model (standard ONNX), or None and why there is none."""
    import sparsecc

    try:
        proto = sparsecc.sparsify(str(path), spec, portable=True)
    except SparseccError as error:
        return None, f"refused: {error}"
    except Exception as error:  # a bug: report it
        return None, f"CRASH {type(error).__name__}: {_first_line(error)}"
    return session.try_run(proto, feeds)


def compile_case(
    path: Path, feeds: dict[str, np.ndarray], want: list[np.ndarray], spec: str = "existing"
) -> tuple[str, str]:
    import sparsecc

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            compiled = sparsecc.compile(str(path), spec, example_inputs=feeds, target="cpu")
            got = compiled(**feeds)
    except SparseccError as error:
        return "refused", str(error)
    except Exception as error:  # a bug: report it
        return "CRASH", f"{type(error).__name__}: {_first_line(error)}"
    got = list(got) if isinstance(got, tuple) else [got]
    diff = differ([np.asarray(g) for g in got], want)
    return ("same", "") if diff <= TOLERANCE else ("DIFFERENT", f"max rel. diff {diff:.2e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dirs", default=",".join(DIRS))
    parser.add_argument("--filter", default="", help="only models whose name contains this")
    parser.add_argument("--compile", action="store_true", help="also compile with TVM (cpu)")
    parser.add_argument(
        "--spec",
        default="existing",
        help="the spec (default: existing); with a pruning spec the reference is onnxruntime on the pruned "
        "dense model (sparsecc.sparsify(..., portable=True)): exercises the output check on real models",
    )
    args = parser.parse_args()
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 400, soft_wrap=True)
    columns = ["sparsify", "pipeline IR"] + (["compile"] if args.compile else [])
    console.print("model | " + " | ".join(columns))
    counts: dict[str, int] = {}
    excluded = []
    started = time.perf_counter()
    for name, path, feeds, _shipped in cases(args.dirs.split(",")):
        if args.filter not in name:
            continue
        want, why = session.try_run(str(path), feeds)  # onnxruntime on the input model: the reference
        if want is None:
            excluded.append((name, why))
            continue
        if args.spec != "existing":
            want, why = pruned_reference(path, feeds, args.spec)
            if want is None:
                counts["pruned reference " + why] = counts.get("pruned reference " + why, 0) + 1
                console.print(
                    escape(f"{name} | no pruned reference: {why}"), style="red" if "CRASH" in why else None
                )
                continue
        with tempfile.TemporaryDirectory() as tmp:
            results = [
                sparsify_case(path, feeds, want, Path(tmp), args.spec),
                pipeline_case(path, feeds, want, args.spec),
            ]
        if args.compile:
            results.append(compile_case(path, feeds, want, args.spec))
        for column, (result, _) in zip(columns, results):
            counts[f"{column} {result}"] = counts.get(f"{column} {result}", 0) + 1
        cells = [f"{result}: {detail}" if detail else result for result, detail in results]
        bad = {"CRASH", "DIFFERENT"} & {result for result, _ in results}
        console.print(escape(f"{name} | " + " | ".join(cells)), style="red" if bad else None)
    for name, reason in excluded:
        console.print(escape(f"excluded (onnxruntime cannot run the input model): {name}: {reason}"))
    console.print(
        f"{counts_of(counts, 'sparsify')} models run, {len(excluded)} excluded; "
        + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        + f"; {time.perf_counter() - started:.0f} s"
    )
    return 0 if not any(k.endswith(("CRASH", "DIFFERENT")) for k in counts) else 1


def counts_of(counts: dict[str, int], column: str) -> int:
    return sum(n for key, n in counts.items() if key.startswith(column + " "))


if __name__ == "__main__":
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    sys.exit(main())
