"""`sparsecc generate MODEL --prompt-ids 1,2,3 [-n 32] [--spec S] [--backend B] [--sample ...]`: tokens from a decoder.

MODEL is a decoder exported one step with its KV cache (an .onnx file, e.g. one `sparsecc sparsify`
wrote), compiled with `--spec` (default: the zeros already there) for `--backend` (onnxruntime by
default: quick to start; tvm: native decode kernels, the one-token step built for any cache length),
or a `.sccpkg` such a compile saved. The ids and the decode speed are printed.
"""

from __future__ import annotations

from sparsecc.errors import InputError
from sparsecc.tools import present


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "generate",
        help="generate token ids with a decoder exported with its KV cache",
        epilog=(
            "examples:\n"
            "  sparsecc generate llama.sparse.onnx --prompt-ids 1,450,4996 -n 32\n"
            "  sparsecc generate llama.onnx --spec '*mlp*=2:4' --prompt-ids 1,450 --sample --top-k 40 --seed 0\n"
            "  sparsecc generate llama.onnx --backend tvm --spec 2:4 --prompt-ids 1,450\n"
            "  sparsecc generate llama.sccpkg --prompt-ids 1,450"
        ),
    )
    parser.add_argument(
        "model", metavar="MODEL", help="a decoder .onnx exported with its KV cache, or a .sccpkg of one"
    )
    parser.add_argument("--prompt-ids", required=True, metavar="IDS", help="comma-separated token ids")
    parser.add_argument("-n", "--max-new-tokens", type=int, default=32, metavar="N")
    parser.add_argument("--spec", default="existing", help="sparsity spec applied before generating")
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--eos", type=int, default=None, metavar="ID", help="stop when this id is produced")
    parser.add_argument(
        "--backend", choices=("onnxruntime", "tvm"), default="onnxruntime", help="how an .onnx MODEL runs"
    )
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    parser.set_defaults(run=run)


def _prompt(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise InputError(f"--prompt-ids must be comma-separated integers, got {text!r}") from None
    if not ids:
        raise InputError("--prompt-ids is empty; give at least one token id, e.g. --prompt-ids 1")
    return ids


def run(args) -> int:
    import sparsecc
    from sparsecc.backends.generation import Sampling

    prompt = _prompt(args.prompt_ids)
    sampling = Sampling(not args.sample, args.temperature, args.top_k, args.top_p, args.seed)
    if str(args.model).endswith(".sccpkg"):
        if args.spec != "existing":
            raise InputError(
                "--spec applies to an .onnx decoder; a .sccpkg was sparsified when it was compiled"
            )
        model = sparsecc.load(args.model)
    else:
        target = {"threads": args.threads} if args.backend == "onnxruntime" else "cpu"
        with present.status(f"compiling {args.model} for {args.backend}"):
            model = sparsecc.compile(args.model, args.spec, backend=args.backend, target=target)
    run = model.generation([prompt], args.max_new_tokens, sampling, args.eos)
    present.console.print(" ".join(str(int(t)) for t in run.tokens[0]))
    speed = run.decode_tokens_per_second
    present.console.print(
        f"{len(prompt)} prompt tokens in {run.prefill_seconds * 1e3:.1f} ms; {run.new_tokens} new tokens"
        + (f", decode {speed:.1f} tokens/s" if speed else "")
    )
    return 0
