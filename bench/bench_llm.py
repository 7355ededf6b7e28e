"""A Llama-shaped decoder generating with its KV cache: sparsecc against onnxruntime and torch eager.

    python bench/bench_llm.py [--size 1.1b|small|tiny] [--prefill 128] [--decode 128] [--rounds 2]
                              [--specs dense,2:4,unstructured@0.5,unstructured@0.7] [--backends tvm]

The decoder (`sparsecc.models.llama`, random seeded weights; "1.1b" is TinyLlama-1.1B's shape:
hidden 2048, 22 layers, FFN 5632, 32 heads, 4 KV heads) is exported once with its cache by the
dynamo exporter (opset 23, cached under ~/.cache/sparsecc/bench). Each spec prunes the decoder
blocks' linears (`*layers*=PATTERN`; embeddings and the LM head stay dense).
- `--backends tvm` (default): `sparsecc.compile(..., backend="tvm")` per spec builds the one-token
  decode step (decode kernels, the cache length symbolic), timed with its peak RSS (VmHWM), and
  saves a .sccpkg that every round loads (mapped). The prompt runs through the step token by token.
- `--backends onnxruntime`: `sparsecc sparsify` per spec, then the onnxruntime backend; it folds
  sparse weights back to dense at session start, so its sparse rows show bytes saved, not speed.
Then, in rounds, one fresh process per contender loads its model and generates `--decode` tokens
after a `--prefill`-token prompt, greedy, at 2 threads: torch eager (`generate` with its dynamic
cache), onnxruntime on the dense export (a plain session, the cache through numpy), and each
sparsecc model (`CompiledModel.generate`, the cache kept on the backend's side). Medians over
rounds; a settle pause between contenders. The host's read bandwidth (bench/bandwidth.py) gives
each tvm row's share: package bytes (the weights a token streams) x tokens/s over it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
import common
import numpy as np
from rich.console import Console
from rich.table import Table

CACHE = Path.home() / ".cache" / "sparsecc" / "bench"


def peak_rss_mib() -> float:
    """This process's VmHWM (exec resets it: a worker's own peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _worker(task: dict) -> dict:
    """One job in a fresh process: export, sparsify or generate; returns what it measured."""
    import torch

    torch.set_num_threads(task["threads"])
    kind = task["kind"]
    if kind == "export":
        from sparsecc.models import llama

        started = time.perf_counter()
        model = llama.build(task["size"], seed=0)
        llama.export_decoder(model, task["path"], opset=23)
        return {"seconds": time.perf_counter() - started, "peak_mib": peak_rss_mib()}
    if kind == "bandwidth":
        import bandwidth

        return {"read_gb_s": bandwidth.read_bandwidth()}
    if kind == "compile":  # the TVM backend: one compile per spec, saved; generate rounds load the package
        import sparsecc

        started = time.perf_counter()
        compiled = sparsecc.compile(task["path"], task["spec"], backend="tvm")
        seconds = time.perf_counter() - started
        saved = time.perf_counter()
        compiled.save(task["out"])
        kernels: dict[str, int] = {}
        for row in compiled.report:
            kernels[row["kernel"]] = kernels.get(row["kernel"], 0) + 1
        return {
            "seconds": seconds,
            "save_s": time.perf_counter() - saved,
            "peak_mib": peak_rss_mib(),
            "package_mib": os.path.getsize(task["out"]) / 2**20,
            "kernels": kernels,
        }
    if kind == "sparsify":
        from sparsecc.tools.cli import main

        started = time.perf_counter()
        code = main(["sparsify", task["path"], "--spec", task["spec"], "-o", task["out"], "--no-check"])
        return {"seconds": time.perf_counter() - started, "peak_mib": peak_rss_mib(), "code": code}
    prompt = np.random.default_rng(1).integers(3, task["vocab"], size=(1, task["prefill"]))
    started = time.perf_counter()
    generate = _contender(task)
    load = time.perf_counter() - started
    generate(prompt[:, :8], 4)  # warm-up: first-run allocations and thread pools
    tokens, prefill, decode = generate(prompt, task["decode"])
    return {
        "load_s": load,
        "prefill_s": prefill,
        "decode_tok_s": (task["decode"] - 1) / decode,
        "peak_mib": peak_rss_mib(),
        "tokens": [int(t) for t in np.asarray(tokens)[0, -8:]],
    }


def _contender(task: dict):
    """generate(prompt, new) -> (tokens, prefill seconds, seconds of the new-1 decode steps) for one
    contender, its model loaded."""
    threads = task["threads"]
    if task["who"] == "torch":
        import torch

        from sparsecc.models import llama

        model = llama.build(task["size"], seed=0)
        model.generation_config.eos_token_id = None

        def run_torch(prompt, new):
            ids = torch.from_numpy(prompt)
            with torch.no_grad():  # generate's own prefill, timed alone; the decode steps are the rest
                started = time.perf_counter()
                model.generate(ids, max_new_tokens=1, do_sample=False)
                prefill = time.perf_counter() - started
                started = time.perf_counter()
                out = model.generate(ids, max_new_tokens=new, do_sample=False)
                total = time.perf_counter() - started
            return out.numpy(), prefill, total - prefill

        return run_torch
    if task["who"] == "onnxruntime":
        from sparsecc.backends.ort import session

        sess = session.make_session(task["path"], threads=threads)
        past = [i for i in sess.get_inputs() if i.name.startswith("past")]
        names = [o.name for o in sess.get_outputs()]

        def run_ort(prompt, new):
            cache = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32) for i in past}
            tokens, current, prefill = list(prompt[0]), prompt, 0.0
            started = time.perf_counter()
            for step in range(new):
                feeds = {"input_ids": current, "attention_mask": np.ones((1, len(tokens)), np.int64), **cache}
                outputs = dict(zip(names, sess.run(None, feeds)))
                if step == 0:
                    prefill = time.perf_counter() - started
                cache = {n: outputs[n.replace("past_key_values", "present")] for n in cache}
                tokens.append(int(outputs["logits"][0, -1].argmax()))
                current = np.array([[tokens[-1]]], np.int64)
            return np.array([tokens]), prefill, time.perf_counter() - started - prefill

        return run_ort
    import sparsecc

    if task["who"] == "sparsecc-tvm":
        compiled = sparsecc.load(task["path"])
    else:
        compiled = sparsecc.compile(
            task["path"], "existing", backend="onnxruntime", target={"threads": threads}
        )

    def run_sparsecc(prompt, new):
        run = compiled.generation(prompt, new)
        return run.tokens, run.prefill_seconds, run.decode_seconds

    return run_sparsecc


def _spawn(task: dict) -> dict:
    root = str(Path(__file__).resolve().parent.parent)  # this checkout's sparsecc, whatever is installed
    threads = str(task["threads"])
    env = dict(os.environ, OMP_NUM_THREADS=threads, TVM_NUM_THREADS=threads, PYTHONPATH=root)
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(task)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker {task['kind']} {task.get('who', '')} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _vs_dense(name: str, speed: float, runs: dict) -> str:
    """A sparse sparsecc row's decode speed over the same backend's dense row."""
    if not name.startswith("sparsecc") or name.endswith(", dense"):
        return "-"
    dense = runs.get(name.rsplit(", ", 1)[0] + ", dense")
    if not dense:
        return "-"
    return f"{speed / float(np.median([r['decode_tok_s'] for r in dense])):.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1.1b")
    parser.add_argument("--prefill", type=int, default=128)
    parser.add_argument("--decode", type=int, default=128)
    parser.add_argument("--specs", default="dense,2:4,unstructured@0.5,unstructured@0.7")
    parser.add_argument(
        "--backends",
        default="tvm",
        help="sparsecc backends to run each spec with: tvm (native decode kernels), onnxruntime, or both",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=common.THREADS)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    from sparsecc.models import llama

    console = Console(width=170)
    shape = llama.SHAPES[args.size]
    folder = CACHE / f"llama-{args.size}"
    folder.mkdir(parents=True, exist_ok=True)
    dense = folder / "decoder.onnx"
    base = {"size": args.size, "threads": args.threads, "vocab": shape.vocab}
    if not dense.exists():
        with console.status(f"exporting the {args.size} decoder ({shape.parameters / 1e9:.2f}B parameters)"):
            done = _spawn({**base, "kind": "export", "path": str(dense)})
        console.print(f"exported in {done['seconds']:.0f} s, peak {done['peak_mib']:.0f} MiB")
    weight_mib = shape.parameters * 4 / 2**20
    backends = args.backends.split(",")
    with console.status("measuring the host's read bandwidth"):
        read_gb_s = _spawn({**base, "kind": "bandwidth"})["read_gb_s"]
    console.print(f"read bandwidth {read_gb_s:.1f} GB/s (bench/bandwidth.py, {args.threads} threads)")
    contenders = {
        "torch eager": {"who": "torch"},
        "onnxruntime (dense file)": {"who": "onnxruntime", "path": str(dense)},
    }
    prepared = {}  # contender -> its sparsify or compile measurements
    for spec in args.specs.split(","):
        label = spec.replace(":", "of").replace("@", "-")
        rule = "existing" if spec == "dense" else f"*layers*={spec}"
        if "onnxruntime" in backends:
            name, path = f"sparsecc (onnxruntime), {spec}", dense
            if spec != "dense":
                path = folder / f"decoder-{label}.onnx"
                with console.status(f"sparsify {spec}"):
                    prepared[name] = _spawn(
                        {**base, "kind": "sparsify", "path": str(dense), "spec": rule, "out": str(path)}
                    )
            contenders[name] = {"who": "sparsecc", "path": str(path)}
        if "tvm" in backends:
            name, package = f"sparsecc (tvm), {spec}", folder / f"tvm-{label}.sccpkg"
            with console.status(f"compile {spec} with the tvm backend"):
                prepared[name] = _spawn(
                    {**base, "kind": "compile", "path": str(dense), "spec": rule, "out": str(package)}
                )
            made = prepared[name]
            console.print(
                f"tvm {spec}: compiled in {made['seconds']:.0f} s, peak {made['peak_mib']:.0f} MiB "
                f"({made['peak_mib'] / weight_mib:.2f}x the weights), package {made['package_mib']:.0f} MiB, "
                f"kernels {made['kernels']}"
            )
            contenders[name] = {"who": "sparsecc-tvm", "path": str(package)}
    runs: dict[str, list[dict]] = {name: [] for name in contenders}
    for index in range(args.rounds):
        for name, who in contenders.items():
            time.sleep(common.SETTLE_SECONDS)
            with console.status(f"round {index + 1}/{args.rounds}: {name}"):
                runs[name].append(
                    _spawn(
                        {**base, **who, "kind": "generate", "prefill": args.prefill, "decode": args.decode}
                    )
                )
    table = Table(
        title=f"Llama {args.size} ({shape.parameters / 1e9:.2f}B, {weight_mib:.0f} MiB fp32): prefill {args.prefill}, "
        f"decode {args.decode}, greedy, {args.threads} threads, medians of {args.rounds} rounds"
    )
    for column in (
        "contender",
        "load s",
        "prefill ms",
        "decode tok/s",
        "vs onnxruntime",
        "peak RSS MiB",
        "vs dense (same backend)",
        "bandwidth share",
        "prepare s",
        "prepare peak",
    ):
        table.add_column(column, justify="left" if column == "contender" else "right")
    reference = float(np.median([r["decode_tok_s"] for r in runs["onnxruntime (dense file)"]]))
    summary = {}
    for name, results in runs.items():
        speed = float(np.median([r["decode_tok_s"] for r in results]))
        made = prepared.get(name)
        summary[name] = {
            "load_s": float(np.median([r["load_s"] for r in results])),
            "prefill_ms": float(np.median([r["prefill_s"] for r in results])) * 1e3,
            "decode_tok_s": speed,
            "peak_mib": max(r["peak_mib"] for r in results),
            "prepared": made,
            "read_gb_s": read_gb_s,
            "last_tokens": results[-1]["tokens"],
        }
        row = summary[name]
        table.add_row(
            name,
            f"{row['load_s']:.1f}",
            f"{row['prefill_ms']:.0f}",
            f"{speed:.2f}",
            f"{speed / reference:.2f}x",
            f"{row['peak_mib']:.0f}",
            _vs_dense(name, speed, runs),
            f"{made['package_mib'] * 2**20 * speed / (read_gb_s * 1e9):.0%}"
            if made and "package_mib" in made
            else "-",
            f"{made['seconds']:.0f}" if made else "-",
            f"{made['peak_mib'] / weight_mib:.2f}x" if made else "-",
        )
    console.print(table)
    console.print(
        "bandwidth share: the package's bytes (weights streamed once per token) x tokens/s over the read "
        "bandwidth; prepare: sparsify (onnxruntime rows) or compile + save (tvm rows), peak RSS over the weights"
    )
    agree = {tuple(v["last_tokens"]) for k, v in summary.items() if "dense" in k or k == "torch eager"}
    console.print(f"dense contenders' last 8 tokens agree: {len(agree) == 1}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
