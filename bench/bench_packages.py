"""Latency of compiled packages side by side: the same model compiled by two sparsecc versions.

    TVM_NUM_THREADS=2 python bench/bench_packages.py BEFORE.sccpkg AFTER.sccpkg [--rounds 7]

Loads every package in one process, checks they give the same outputs for the same inputs
(random, seeded; integer inputs below their index limit, masks of ones), then times them in
alternation (`CompiledModel.benchmark`: TVM's time evaluator) for `--rounds` rounds and prints
each one's median ms and the median of its per-round ratios to the first (robust to a shared
host's load changing between rounds). Issue 14 used it to check that weights bound
as parameters (format 3) run as fast as weights compiled in as constants (format 2).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

os.environ.setdefault("TVM_NUM_THREADS", "2")

import sparsecc


def inputs_for(model, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in model.input_specs:
        if np.dtype(spec.dtype).kind in "iu":
            high = spec.index_limit or 2
            feeds[spec.name] = (
                rng.integers(0, high, spec.shape) if spec.index_limit else np.ones(spec.shape)
            ).astype(spec.dtype)
        else:
            feeds[spec.name] = rng.standard_normal(spec.shape).astype(spec.dtype)
    return feeds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("packages", nargs="+")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    models = [sparsecc.load(path) for path in args.packages]
    feeds = inputs_for(models[0])
    outputs = [np.asarray(m(**feeds)) for m in models]
    for path, out in zip(args.packages[1:], outputs[1:]):
        difference = float(np.abs(out - outputs[0]).max())
        print(
            f"max |{path} - {args.packages[0]}| = {difference:.3g} (of max |y| {np.abs(outputs[0]).max():.3g})"
        )
    times: list[list[float]] = [[] for _ in models]
    for round_ in range(args.rounds):
        for step in range(len(models)):  # each round starts with the next package: no position bias
            index = (round_ + step) % len(models)
            times[index].append(models[index].benchmark(**feeds, number=5, repeat=3))
    for path, samples in zip(args.packages, times):
        ratio = np.median([a / b for a, b in zip(samples, times[0])])
        print(
            f"{path}: median {np.median(samples):.2f} ms over {args.rounds} rounds; "
            f"median of per-round ratios to the first {ratio:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
