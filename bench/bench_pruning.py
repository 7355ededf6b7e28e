"""Accuracy after pruning: magnitude vs wanda vs sparsegpt on a real task (scikit-learn's digits).

    python bench/bench_pruning.py [--retrain] [--markdown out.md]

Two models are trained here on CPU (under a minute each, then cached under
~/.cache/sparsecc/bench/): an MLP and a small MLP-Mixer (a transformer-style model: 2x2 patches as
tokens, token- and channel-mixing MLPs with LayerNorm and residuals), both exported to ONNX. The
8x8 images are split three ways: train, calibration (never trained on) and test. Every pruned
model goes through the user's path, `sparsecc.sparsify(onnx_path, spec, calibration=npz_path)`,
and is scored with onnxruntime on the test split. The classifier head stays dense (as SparseGPT
keeps the LM head), and so does the mixer's 4-input patch embedding; every other linear layer is
pruned.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
import common
import numpy as np
import onnxruntime as ort
import torch
from rich.console import Console
from rich.table import Table
from sklearn.datasets import load_digits
from torch import nn

import sparsecc

CACHE = Path(os.environ.get("SPARSECC_BENCH_CACHE", Path.home() / ".cache" / "sparsecc" / "bench"))
VERSION = 3  # bump when the models or their training change: the cache keys on it
SPLITS = (1000, 256)  # train, calibration; the rest (541 images) is the test split
CALIBRATION_BATCH = 32
METHODS = ("magnitude", "wanda", "sparsegpt")
PATTERNS = {  # label -> shorthand pattern (the method is appended)
    "unstructured 50%": "unstructured@0.5",
    "unstructured 70%": "unstructured@0.7",
    "unstructured 90%": "unstructured@0.9",
    "2:4": "2:4",
    "block 16x1 50%": "block(16,1)@0.5",
    "block 16x1 80%": "block(16,1)@0.8",
}


class MLP(nn.Module):
    """64 -> 48 -> 48 -> 10: narrow on purpose, so that what pruning removes shows in accuracy (at
    width 64, sparsegpt led magnitude at 70% by only 2.6 points; at 32, every method lost 2:4)."""

    def __init__(self, hidden: int = 48):
        super().__init__()
        self.fc1, self.fc2, self.head = (
            nn.Linear(64, hidden),
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, 10),
        )

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.token1, self.token2 = nn.Linear(tokens, token_hidden), nn.Linear(token_hidden, tokens)
        self.channel1, self.channel2 = nn.Linear(dim, channel_hidden), nn.Linear(channel_hidden, dim)

    def forward(self, x):  # [B, tokens, dim]
        y = self.norm1(x).transpose(1, 2)
        x = x + self.token2(torch.nn.functional.gelu(self.token1(y))).transpose(1, 2)
        return x + self.channel2(torch.nn.functional.gelu(self.channel1(self.norm2(x))))


class Mixer(nn.Module):
    """MLP-Mixer over the 8x8 image: 16 tokens (2x2 patches), width 32, two blocks."""

    def __init__(self, dim: int = 32, blocks: int = 2):
        super().__init__()
        self.embed = nn.Linear(4, dim)
        self.blocks = nn.Sequential(*(MixerBlock(16, dim, 32, 64) for _ in range(blocks)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x):  # [B, 64] pixels
        patches = x.reshape(-1, 4, 2, 4, 2).permute(0, 1, 3, 2, 4).reshape(-1, 16, 4)
        return self.head(self.norm(self.blocks(self.embed(patches))).mean(dim=1))


MODELS = {"mlp": (MLP, 60), "mixer": (Mixer, 60)}  # name -> (class, epochs)
KEEP_DENSE = {"mlp": "*head*=dense", "mixer": "*head*=dense; *embed*=dense"}  # spec rules put first


def digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    data = load_digits()
    x, y = (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    train, calib = SPLITS
    parts = {
        "train": order[:train],
        "calibration": order[train : train + calib],
        "test": order[train + calib :],
    }
    return {name: (x[idx], y[idx]) for name, idx in parts.items()}


def trained(name: str, data, retrain: bool) -> Path:
    """The model's ONNX file, trained and exported on first use."""
    path = CACHE / f"digits-{name}-v{VERSION}.onnx"
    if path.exists() and not retrain:
        return path
    cls, epochs = MODELS[name]
    torch.manual_seed(0)
    model = cls()
    x, y = (torch.from_numpy(a) for a in data["train"])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    started = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(32):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    model.eval()
    print(f"trained {name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    CACHE.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch")
    warnings.filterwarnings("ignore")  # the exporter's notes on torchvision and pytree
    program = torch.onnx.export(model, (x[:4],), dynamo=True, dynamic_shapes=({0: batch},), verbose=False)
    program.save(str(path))
    return path


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = common.THREADS
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float(np.mean(np.argmax(logits, axis=1) == y)) * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrain", action="store_true", help="train the models again (ignore the cache)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--markdown", help="also write the table as Markdown to this file")
    args = parser.parse_args()
    data = digits()
    x_test, y_test = data["test"]
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        calibration = Path(folder) / "calibration.npz"
        x_cal = data["calibration"][0]
        usable = len(x_cal) // CALIBRATION_BATCH * CALIBRATION_BATCH
        batches = x_cal[:usable].reshape(-1, CALIBRATION_BATCH, 64)
        for name in args.models.split(","):
            path = trained(name, data, args.retrain)
            input_name = ort.InferenceSession(str(path)).get_inputs()[0].name
            np.savez(calibration, **{input_name: batches})
            dense = accuracy(sparsecc.sparsify(str(path), "dense"), x_test, y_test)
            rows.append((name, "dense", [dense] * len(METHODS)))
            for label, pattern in PATTERNS.items():
                scores = []
                for method in METHODS:
                    spec = f"{KEEP_DENSE[name]}; *={pattern}/{method}"
                    pruned = sparsecc.sparsify(str(path), spec, calibration=str(calibration))
                    scores.append(accuracy(pruned, x_test, y_test))
                rows.append((name, label, scores))
    title = (
        f"digits test accuracy (%), {len(y_test)} images; calibration: {usable} other images "
        f"({time.perf_counter() - started:.0f} s)"
    )
    table = Table(title=title, title_justify="left")
    for column in ("model", "pattern", *METHODS):
        table.add_column(column, justify="left" if column in ("model", "pattern") else "right")
    for name, label, scores in rows:
        best = max(scores)
        cells = [f"[bold]{s:.1f}[/bold]" if s == best and label != "dense" else f"{s:.1f}" for s in scores]
        table.add_row(name, label, *cells)
    Console().print(table)
    if args.markdown:
        lines = [f"| model | pattern | {' | '.join(METHODS)} |", "|---|---|" + "---:|" * len(METHODS)]
        lines += [f"| {n} | {label} | " + " | ".join(f"{s:.1f}" for s in sc) + " |" for n, label, sc in rows]
        Path(args.markdown).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
