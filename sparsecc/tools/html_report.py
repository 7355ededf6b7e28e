"""`sparsecc inspect --html`: one self-contained page with a table and a heatmap per weight.

Heatmaps are density maps: each pixel is the fraction of non-zeros in one tile of W
(rows = outputs, columns = inputs), white = all zero, dark = dense. PNGs are written
with zlib directly so the report needs no plotting library.
"""

from __future__ import annotations

import base64
import html
import struct
import zlib
from pathlib import Path

import numpy as np

from sparsecc.files import write_bytes

MAX_PIXELS = 256  # per side; larger weights are pooled into tiles


def density_grid(w: np.ndarray, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Fraction of non-zeros per tile; the tile is at least 1x1 and the grid at most max_pixels."""
    out, inp = w.shape
    th, tw = -(-out // max_pixels), -(-inp // max_pixels)
    padded = np.zeros((-(-out // th) * th, -(-inp // tw) * tw), dtype=bool)
    padded[:out, :inp] = w != 0
    return padded.reshape(padded.shape[0] // th, th, padded.shape[1] // tw, tw).mean(axis=(1, 3))


def _png(rgb: np.ndarray) -> bytes:
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def heatmap_png(w: np.ndarray) -> bytes:
    """White (no non-zeros) to deep blue (dense), scaled up so small weights stay visible."""
    grid = density_grid(w)
    scale = max(1, 192 // max(grid.shape))
    grid = np.kron(grid, np.ones((scale, scale)))
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    rgb = white + (blue - white) * grid[..., None]
    return _png(rgb.round().astype(np.uint8))


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin-bottom:2em}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}
th{background:#f0f0f0}.sparse{background:#eef8ee}.maps{display:flex;flex-wrap:wrap;gap:18px}
figure{margin:0;font-size:12px;max-width:300px}img{image-rendering:pixelated;border:1px solid #999}"""


def write_html(path: str | Path, title: str, rows: list, weights: dict[str, np.ndarray]) -> None:
    """Write the report page: the weight table, then one heatmap per weight."""
    columns = ("weight", "shape", "density", "detected", "rule", "format", "est.", "reason")
    lines = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1><table><tr>",
    ]
    lines += [f"<th>{c}</th>" for c in columns] + ["</tr>"]
    for row in rows:
        speed = "-" if row.est_speedup is None else f"{row.est_speedup:.2f}x"
        cells = (
            row.name,
            f"{row.shape[0]}x{row.shape[1]}",
            f"{row.density:.3f}",
            row.detected,
            row.pattern,
            row.format,
            speed,
            row.reason,
        )
        css = " class='sparse'" if row.format != "dense" else ""
        lines.append(f"<tr{css}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    lines.append(
        "</table><h2>Sparsity heatmaps</h2><p>Each pixel: fraction of non-zeros in a tile of W "
        "(rows = outputs, columns = inputs). White = all zero, dark blue = dense.</p><div class='maps'>"
    )
    for name, w in weights.items():
        data = base64.b64encode(heatmap_png(w)).decode()
        density = np.count_nonzero(w) / w.size
        lines.append(
            f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(name)}'>"
            f"<figcaption>{html.escape(name)}<br>{w.shape[0]}x{w.shape[1]}, density {density:.3f}"
            "</figcaption></figure>"
        )
    lines.append("</div></body></html>")
    write_bytes(path, "\n".join(lines).encode("utf-8"))
