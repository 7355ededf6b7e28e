"""2:4 N:M linear on sparse tensor cores (`mma.sp`, m16n8k32, fp16/bf16 operands, fp32 accumulate).

`cuda/sparse_mma.cu` computes Y[M, N] = X[M, K] @ W.T (+ bias): W is the sparse A operand
(16 output rows x 32 inputs per instruction), X the dense B operand. This module holds what the
host does once per weight, at compile time:

- `pack_2to4` reorders the kept values of an `NmWeight` (2:4) into per-lane A fragments, one 16-byte
  load per lane and instruction, and packs the 2-bit positions into the metadata words of sparsity
  selector 0, as the PTX ISA specifies ("Sparse matrix storage" and "Matrix fragments for sparse
  mma.m16n8k32 with .f16/.bf16"; the layouts are spelled out at the top of the .cu file);
- `mma_sp_m16n8k32` is a numpy model of the instruction as the ISA defines it, lane by lane, from
  which `emulate_linear` runs the kernel's loop nest: tests check that the packing decodes back to W
  without a GPU (CI has none);
- `build` compiles the .cu with nvcc (PTX or cubin) and caches it.

Running it takes a GPU: `bench/gpu_check.py` loads the cubin with CuPy. It is not yet a `KernelRule`:
TVM's Relax build cannot call it until it is wrapped as a PrimFunc or packed function (future work).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from sparsecc.errors import SparseccError
from sparsecc.ops import NmWeight
from sparsecc.ops.precision import bf16_bits, bf16_to_float32

SOURCE = Path(__file__).parent / "cuda" / "sparse_mma.cu"
N_ALIGN = 64  # output rows per CTA (both tiles): packed rows are padded to it
K_ALIGN = 64  # logical K per shared-memory stage: packed K is padded to it
DTYPES = {"float16": "f16", "bfloat16": "bf16"}
OUT_DTYPES = ("float32", "same")  # fp32 output, or the operands' dtype
SMALL_M = 16  # up to this many tokens the 64x8 tile runs, above it the 64x64 one
TILES = {"small": 8, "big": 64}  # tokens per CTA


@dataclasses.dataclass(frozen=True)
class Packed2to4:
    """A 2:4 weight in the kernel's layout; rows and K padded with zeros (a valid 2:4 group)."""

    values: np.ndarray  # [Np/16, Kp/32, 32 lanes, 8] uint16 bits (fp16 or bf16): lane's 4 A registers
    meta: np.ndarray  # [Np/16, Kp/32, 32 lanes] uint32 (lanes t = 2, 3 repeat lanes t - 2)
    shape: tuple[int, int]  # the logical W [N, K]
    dtype: str  # "float16" or "bfloat16"

    @property
    def padded(self) -> tuple[int, int]:
        tiles, steps = self.meta.shape[:2]
        return tiles * 16, steps * 32


def _lane_coords():
    lane = np.arange(32)
    return lane >> 2, lane & 3  # g (groupID), t (threadID_in_group)


def to_bits(values: np.ndarray, dtype: str) -> np.ndarray:
    """uint16 bits of float32 `values` in fp16 or bf16 (round to nearest even)."""
    if dtype == "float16":
        return np.asarray(values, np.float32).astype(np.float16).view(np.uint16)
    if dtype == "bfloat16":
        return bf16_bits(values)
    raise SparseccError(f"no 2:4 tensor-core kernel for {dtype!r}; valid: {', '.join(DTYPES)}")


def from_bits(bits: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float16":
        return np.asarray(bits, np.uint16).view(np.float16).astype(np.float32)
    return bf16_to_float32(bits)


def pack_2to4(weight: NmWeight, dtype: str = "float16") -> Packed2to4:
    """The kernel's operands for a 2:4 `weight` (values rounded to `dtype`)."""
    if (weight.n, weight.m) != (2, 4):
        raise SparseccError(f"mma.sp takes 2:4 weights, not {weight.n}:{weight.m}")
    out, inp = weight.shape
    n_pad, k_pad = -(-out // N_ALIGN) * N_ALIGN, -(-inp // K_ALIGN) * K_ALIGN
    # Kept values and positions padded to [Np, Kp/2]; padded groups keep positions (0, 1) (0b0100).
    values = np.zeros((n_pad, k_pad // 2), np.uint16)
    values[:out, : inp // 2] = to_bits(weight.values, dtype)
    pos = np.tile(np.array([0, 1], np.uint32), (n_pad, k_pad // 4))
    pos[:out, : inp // 2] = weight.indices
    values = values.reshape(n_pad // 16, 16, k_pad // 32, 16)  # [tile, row, step, stored col]
    pos = pos.reshape(n_pad // 16, 16, k_pad // 32, 16)

    g, t = _lane_coords()
    # A register j, half h: row g + 8 (j & 1), stored column 2t + h + 8 (j >> 1) (chunk t + 4 (j >> 1)).
    j, h = np.arange(4)[:, None], np.arange(2)[None, :]
    rows = g[:, None, None] + 8 * (j & 1)[None]  # [32, 4, 1]
    cols = 2 * t[:, None, None] + h[None] + 8 * (j >> 1)[None]  # [32, 4, 2]
    frag = values[:, rows, :, cols]  # [32, 4, 2, tile, step] (advanced indices first)
    frag = frag.transpose(3, 4, 0, 1, 2).reshape(n_pad // 16, k_pad // 32, 32, 8)

    # Metadata, selector 0: lane t in {0, 1} holds chunks 4t..4t+3 of row g (bits 0-15) and of
    # row g + 8 (bits 16-31); chunk c's nibble at 4c, the smaller position in its low 2 bits.
    pair = t & 1  # lanes t = 2, 3 (unused with selector 0) repeat lanes 0, 1
    meta = np.zeros((n_pad // 16, k_pad // 32, 32), np.uint32)
    for half in range(2):
        row = g + 8 * half
        for c in range(4):
            for h in range(2):
                col = 2 * (4 * pair + c) + h  # stored column of chunk 4 pair + c, value h
                bits = pos[:, row, :, col].transpose(1, 2, 0)  # [tile, step, 32]
                meta |= bits << np.uint32(16 * half + 4 * c + 2 * h)
    return Packed2to4(np.ascontiguousarray(frag), meta, (out, inp), dtype)


def mma_sp_m16n8k32(a: np.ndarray, b: np.ndarray, c: np.ndarray, meta: np.ndarray, selector: int = 0):
    """`mma.sp.sync.aligned.m16n8k32.row.col.f32` on per-lane fragments, as the PTX ISA defines it.

    a: [32, 8] float (lane's a0..a7), b: [32, 8] (b0..b7), c: [32, 4] (c0..c3), meta: [32] uint32.
    Returns d [32, 4]. Decodes A through the metadata of the selected lane pair of each quad.
    """
    g, t = _lane_coords()
    dense_a = np.zeros((16, 32))
    for lane in range(32):
        for i in range(8):
            row = g[lane] + 8 * ((i >> 1) & 1)
            chunk = t[lane] + 4 * (i >> 2)
            # metadata lane: quad g, thread 2 * selector + (chunk // 4); nibble chunk % 4 of row's half
            word = int(meta[4 * g[lane] + 2 * selector + chunk // 4])
            shift = 16 * (row >= 8) + 4 * (chunk % 4) + 2 * (i & 1)
            position = (word >> shift) & 3
            dense_a[row, 4 * chunk + position] += a[lane, i]
    dense_b = np.zeros((32, 8))
    for lane in range(32):
        for i in range(8):
            dense_b[2 * t[lane] + (i & 1) + 8 * (i >> 1), g[lane]] = b[lane, i]
    product = dense_a @ dense_b
    d = np.array(c, np.float64)
    for lane in range(32):
        for i in range(4):
            d[lane, i] += product[g[lane] + 8 * (i >> 1), 2 * t[lane] + (i & 1)]
    return d


def b_fragment(x_tile: np.ndarray) -> np.ndarray:
    """[32, 8] B registers of the lanes for an X tile [8 tokens, 32 k]: b_i = X[g, 2t + (i&1) + 8(i>>1)]."""
    g, t = _lane_coords()
    i = np.arange(8)
    return x_tile[g[:, None], 2 * t[:, None] + (i & 1)[None] + 8 * (i >> 1)[None]]


def emulate_linear(packed: Packed2to4, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Y = X @ W.T (+ bias) through `mma_sp_m16n8k32`, tile by tile, as the kernel walks it (float64).

    X is rounded to the packed dtype first, like the kernel's operand. Slow: for small shapes in tests.
    """
    n_pad, k_pad = packed.padded
    out, inp = packed.shape
    m = x.shape[0]
    xs = np.zeros((-(-m // 8) * 8, k_pad))
    xs[:m, :inp] = from_bits(to_bits(x, packed.dtype), packed.dtype)
    g, t = _lane_coords()
    y = np.zeros((xs.shape[0], n_pad))
    for tile in range(n_pad // 16):
        for tok in range(0, xs.shape[0], 8):
            d = np.zeros((32, 4))
            for step in range(k_pad // 32):
                a = from_bits(packed.values[tile, step], packed.dtype)
                b = b_fragment(xs[tok : tok + 8, step * 32 : step * 32 + 32])
                d = mma_sp_m16n8k32(a, b, d, packed.meta[tile, step])
            for i in range(4):
                y[tok + 2 * t + (i & 1), tile * 16 + g + 8 * (i >> 1)] = d[:, i]
    y = y[:m, :out]
    return y + bias if bias is not None else y


def entry(dtype: str, out_dtype: str, m: int) -> tuple[str, int]:
    """The kernel's symbol for operands of `dtype`, output `out_dtype`, and its tokens per CTA."""
    if dtype not in DTYPES:
        raise SparseccError(f"no 2:4 tensor-core kernel for {dtype!r}; valid: {', '.join(DTYPES)}")
    if out_dtype not in ("float32", dtype):
        raise SparseccError(f"output must be float32 or {dtype}, not {out_dtype!r}")
    tile = "small" if m <= SMALL_M else "big"
    out = "f32" if out_dtype == "float32" else DTYPES[dtype]
    return f"sp24_{DTYPES[dtype]}_{out}_{tile}", TILES[tile]


def launch_shape(packed: Packed2to4, m: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(grid, block) of a launch for `m` tokens: 128 threads, one CTA per 64 rows x tile tokens."""
    tokens = TILES["small" if m <= SMALL_M else "big"]
    return (packed.padded[0] // N_ALIGN, -(-m // tokens), 1), (128, 1, 1)


def cache_dir() -> Path:
    return Path(os.environ.get("SPARSECC_CUDA_CACHE", ".sparsecc-cache/cuda"))


def build(arch: str = "sm_90a", fmt: str = "cubin", out_dir: Path | None = None) -> Path:
    """nvcc-compile `cuda/sparse_mma.cu` for `arch` to `fmt` ("cubin" or "ptx"), cached by source hash.

    Needs sm_80 or newer (mma.sp); `::ordered_metadata` needs PTX ISA 8.5 (CUDA 12.5+).
    """
    if fmt not in ("cubin", "ptx"):
        raise SparseccError(f"bad format {fmt!r}; valid: cubin, ptx")
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise SparseccError("nvcc not found on PATH: install the CUDA toolkit (12.5 or newer)")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + f"{arch}/{fmt}".encode()).hexdigest()[:16]
    out_dir = Path(out_dir) if out_dir is not None else cache_dir()
    target = out_dir / f"sparse_mma_{arch}_{key}.{fmt}"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [nvcc, f"-arch={arch}", "-O3", "-std=c++17", f"-{fmt}", "-o", str(target), str(SOURCE)]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SparseccError(
            f"nvcc failed ({proc.returncode}): {' '.join(command)}\n{proc.stderr[-4000:]}\n"
            "rerun that command to reproduce"
        )
    return target


class CupyLinear:
    """The compiled kernel for one packed weight on the current GPU, driven by CuPy (GPU machines only).

    `linear(x)` takes a CuPy (or `__cuda_array_interface__`) array X[M, K] of the packed dtype (bf16
    as uint16/int16 bits: CuPy has no bfloat16) and returns Y[M, N]: float32, or with
    `out_dtype="same"` the operands' dtype (bf16 again as uint16 bits).
    """

    def __init__(self, packed: Packed2to4, bias: np.ndarray | None = None, cubin: Path | None = None):
        import cupy

        self.cp, self.packed = cupy, packed
        self.module = cupy.RawModule(path=str(cubin or build()))
        self.values = cupy.asarray(packed.values.reshape(-1, 8).view(np.uint32).reshape(-1, 4))
        self.meta = cupy.asarray(packed.meta.reshape(-1))
        self.bias = None if bias is None else cupy.asarray(np.asarray(bias, np.float32))

    def __call__(self, x, out_dtype: str = "float32"):
        cp, packed = self.cp, self.packed
        x = cp.asarray(x)
        m, k = x.shape
        if x.dtype.itemsize != 2:
            raise SparseccError(f"X must hold {packed.dtype} (2-byte) values, not {x.dtype}")
        if k != packed.shape[1]:
            raise SparseccError(f"X has {k} inputs, W {packed.shape[1]}")
        if k % 8:  # 16-byte loads of X rows: pad K (the packed W has zeros there)
            x = cp.pad(x, ((0, 0), (0, 8 - k % 8)))
        x = cp.ascontiguousarray(x)
        name, _ = entry(packed.dtype, packed.dtype if out_dtype == "same" else out_dtype, m)
        y_dtype = (
            np.float32 if out_dtype == "float32" else np.float16 if packed.dtype == "float16" else np.uint16
        )
        y = cp.empty((m, packed.shape[0]), dtype=y_dtype)
        grid, block = launch_shape(packed, m)
        bias = self.bias if self.bias is not None else np.uint64(0)  # a null pointer
        args = (x, self.values, self.meta, bias, y)
        sizes = (np.int32(m), np.int32(packed.shape[0]), np.int32(x.shape[1]), np.int32(packed.padded[1]))
        self.module.get_function(name)(grid, block, args + sizes)
        return y
