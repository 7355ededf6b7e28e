"""Runs inside .venv-deepsparse (bench/deepsparse_env.sh): a DeepSparse engine driven over stdin/stdout.

One JSON command per line, one JSON answer per line:
  {"load": MODEL.onnx, "inputs": FEEDS.npz, "threads": 2} -> {"ok": true, "seconds": compile time}
  {"time": RUNS}                                          -> {"ms": median ms of RUNS calls, timed here}
  {"run": OUT.npz}                                        -> {"ok": true} (the outputs, for checking)
Timing inside the worker keeps the pipe out of the measurement.
"""

import json
import os
import sys
import time

import numpy as np


def main() -> None:
    # DeepSparse prints its banner and logs to stdout: answers get the real stdout, the rest stderr
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from deepsparse import Engine

    engine, feeds = None, None
    for line in sys.stdin:
        command = json.loads(line)
        try:
            if "load" in command:
                started = time.perf_counter()
                engine = Engine(command["load"], batch_size=1, num_cores=command.get("threads", 2))
                with np.load(command["inputs"]) as data:
                    feeds = [data[name] for name in engine.input_names]
                engine.run(feeds)
                answer = {"ok": True, "seconds": time.perf_counter() - started}
            elif "time" in command:
                samples = []
                for _ in range(int(command["time"])):
                    started = time.perf_counter()
                    engine.run(feeds)
                    samples.append(time.perf_counter() - started)
                answer = {"ms": float(np.median(samples)) * 1000.0}
            elif "run" in command:
                outputs = engine.run(feeds)
                np.savez(command["run"], *outputs)
                answer = {"ok": True}
            else:
                answer = {"error": f"unknown command {sorted(command)}"}
        except Exception as error:  # reported to the driver, which owns the error handling
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), file=answers, flush=True)


if __name__ == "__main__":
    main()
