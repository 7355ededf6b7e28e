"""Heatmap pictures for the HTML report: a grid of values in [0, 1] as a PNG, white to deep blue.

PNGs are written with zlib directly, so the report needs no plotting library. Large matrices
are pooled into tiles first (at most `MAX_PIXELS` a side), then scaled up so small ones stay
visible.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

MAX_PIXELS = 256  # per side; larger matrices are pooled into tiles


def pooled(values: np.ndarray, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The mean of each tile (tiles of at least 1x1, at most max_pixels a side; the edge is zero-padded)."""
    rows, cols = values.shape
    th, tw = -(-rows // max_pixels), -(-cols // max_pixels)
    padded = np.zeros((-(-rows // th) * th, -(-cols // tw) * tw))
    padded[:rows, :cols] = values
    return padded.reshape(padded.shape[0] // th, th, padded.shape[1] // tw, tw).mean(axis=(1, 3))


def density_grid(w: np.ndarray, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Fraction of non-zeros per tile; the tile is at least 1x1 and the grid at most max_pixels."""
    return pooled(w != 0, max_pixels)


def png(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of `rgb` [height, width, 3] uint8."""
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


def grid_png(grid: np.ndarray) -> bytes:
    """White (0) to deep blue (1), scaled up to about 192 pixels a side."""
    scale = max(1, 192 // max(grid.shape))
    grid = np.kron(np.clip(grid, 0.0, 1.0), np.ones((scale, scale)))
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    rgb = white + (blue - white) * grid[..., None]
    return png(rgb.round().astype(np.uint8))


def heatmap_png(w: np.ndarray) -> bytes:
    """The density map of W: white (no non-zeros in a tile) to deep blue (dense)."""
    return grid_png(density_grid(w))
