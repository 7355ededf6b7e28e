"""The one place that talks to the terminal: rich tables, status lines and progress.

Library code logs; the CLI and the demo turn results into tables through here.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator

from rich.console import Console
from rich.table import Table

# Piped output (CI logs, tests) gets wide tables, so one weight stays on one line.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 220)
error_console = Console(stderr=True, highlight=False)


def _speedup(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def weight_table(rows: Iterable, title: str = "Weights") -> Table:
    """One row per linear weight: what was found, what was chosen and why."""
    table = Table(title=title, title_justify="left", show_lines=False)
    for column, justify in (
        ("weight", "left"),
        ("shape", "right"),
        ("density", "right"),
        ("detected", "left"),
        ("rule", "left"),
        ("method (error)", "left"),
        ("format", "left"),
        ("est.", "right"),
        ("reason", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold", no_wrap=column == "weight")
    for row in rows:
        style = "green" if row.format != "dense" else None
        table.add_row(
            row.name,
            f"{row.shape[0]}x{row.shape[1]}",
            f"{row.density:.3f}",
            row.detected,
            row.pattern,
            _method(row),
            row.format,
            _speedup(row.est_speedup),
            row.reason,
            style=style,
        )
    return table


def _method(row) -> str:
    """`sparsegpt (0.042)`: the method that pruned the weight and, with calibration data, its
    reconstruction error ||WX - W'X|| / ||WX|| there; "-" when nothing was pruned."""
    method = row.method or "-"
    return method if row.error is None else f"{method} ({row.error:.3f})"


def kernel_table(rows: list[dict], title: str) -> Table:
    """After a compile, one row per linear weight: what the IR stores, what runs, and why."""
    table = Table(title=title, title_justify="left")
    for column in ("weight", "shape", "density", "format", "runs", "kernel", "est.", "measured", "why"):
        right = column in ("shape", "density", "est.", "measured")
        table.add_column(
            column, justify="right" if right else "left", overflow="fold", no_wrap=column == "weight"
        )
    for row in rows:
        sparse_runs = row.get("runs") not in (None, "dense")
        table.add_row(
            row["name"],
            f"{row['shape'][0]}x{row['shape'][1]}",
            f"{row['density']:.3f}",
            row["format"],
            row.get("runs") or "-",
            row.get("kernel") or "-",
            _speedup(row.get("est_speedup")) if sparse_runs else "-",
            _speedup(row.get("measured_speedup")),
            row.get("kernel_reason") or row.get("reason") or "",
            style="green" if sparse_runs else None,
        )
    return table


def attention_table(groups: Iterable, title: str = "Attention groups") -> Table:
    """One row per group of heads that runs one pattern (`AttentionGroup`s or their dicts):
    layer, mode, heads, the share of dense attention's FLOPs it computes and, after a build,
    its kernel."""
    rows = [group if isinstance(group, dict) else group.as_dict() for group in groups]
    built = any(row.get("kernel") for row in rows)
    table = Table(title=title, title_justify="left")
    for column in ("layer", "mode", "heads", "density", *(["kernel"] if built else []), "heads grouped"):
        table.add_column(column, justify="right" if column == "density" else "left", overflow="fold")
    for row in rows:
        skipped = row["mode"] == "skip"
        kernel = ["not computed" if skipped else row.get("kernel") or "-"] if built else []
        table.add_row(
            f"{row['layer_index']}: {row['layer']}",
            row["mode"],
            f"{head_ranges(row['heads'])} ({len(row['heads'])})",
            f"{row['density']:.3f}",
            *kernel,
            row.get("reorder") or "",
            style="dim" if skipped else ("green" if row["mode"] != "full" else None),
        )
    return table


def head_ranges(heads: Iterable[int]) -> str:
    """`0-3, 7, 9`: head indices as runs."""
    runs: list[list[int]] = []
    for head in sorted(heads):
        if runs and head == runs[-1][-1] + 1:
            runs[-1].append(head)
        else:
            runs.append([head])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def profile_table(entries: Iterable, title: str, limit: int = 15) -> Table:
    """Time per function group of one call (`FunctionTime`s, slowest first), with its share."""
    entries = list(entries)
    total = sum(e.total_ms for e in entries) or 1.0
    table = Table(title=title, title_justify="left")
    for column in ("function", "calls", "ms", "ms per call", "share"):
        table.add_column(column, justify="left" if column == "function" else "right")
    for entry in entries[:limit]:
        table.add_row(
            entry.group[:70],
            str(entry.calls),
            f"{entry.total_ms:.2f}",
            f"{entry.per_call_ms:.3f}",
            f"{100 * entry.total_ms / total:.0f}%",
        )
    if len(entries) > limit:
        rest = entries[limit:]
        table.add_row(
            f"({len(rest)} more)",
            str(sum(e.calls for e in rest)),
            f"{sum(e.total_ms for e in rest):.2f}",
            "",
            "",
        )
    return table


def pass_table(runs: Iterable) -> Table:
    """Per-pass timing, as `mlir-opt --mlir-timing` shows it."""
    table = Table(title="Passes", title_justify="left")
    table.add_column("pass")
    table.add_column("time", justify="right")
    table.add_column("modified")
    for run in runs:
        table.add_row(run.name, f"{run.seconds * 1000:.1f} ms", "yes" if run.modified else "no")
    return table


def key_value_table(title: str, items: Iterable[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in items:
        table.add_row(key, value)
    return table


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner while long work runs (export, compile, tuning); plain text when not a TTY."""
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        console.print(f"[dim]… {message}[/dim]")
        yield


@contextlib.contextmanager
def log_lines(logger_name: str) -> Iterator[None]:
    """Show a library logger's INFO lines (steps, tuning progress) while long work runs."""
    import logging

    class ConsoleHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            console.print(f"[dim]  {record.getMessage()}[/dim]", highlight=False)

    logger, handler = logging.getLogger(logger_name), ConsoleHandler(logging.INFO)
    previous = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # shown once, here, not again by a root handler
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous[0])
        logger.propagate = previous[1]


def warn(message: str) -> None:
    """One line on stderr, however long (a terminal wraps it, rich does not break it)."""
    error_console.print(f"[yellow]warning:[/yellow] {message}", soft_wrap=True)


def error(message: str) -> None:
    """One line on stderr: the CLI's form for every user error."""
    first_line = str(message).strip().splitlines()[0] if str(message).strip() else "unknown error"
    error_console.print(f"[red]error:[/red] {first_line}", soft_wrap=True)


def flush() -> None:
    sys.stdout.flush()
