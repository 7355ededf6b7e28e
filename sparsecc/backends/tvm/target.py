"""Compilation targets: the names users give (`cpu`, `x86_64`, `aarch64`, `cuda[:sm_XX]`) as TVM targets.

"cpu" detects this host's vector features from /proc/cpuinfo and names a concrete
LLVM CPU: LLVM's "native" silently falls back to a generic CPU here and loses AVX-512.
"""

from __future__ import annotations

import dataclasses
import os
import platform

from sparsecc.errors import SparseccError

TARGET_NAMES = ("cpu", "x86_64", "aarch64", "cuda", "cuda:sm_XX")


@dataclasses.dataclass(frozen=True)
class TargetInfo:
    """A resolved target: the TVM target plus what kernels and artifacts need to know."""

    name: str  # "cpu", "x86_64", "aarch64", "cuda"
    family: str  # "x86", "aarch64", "cuda"
    arch: str  # machine architecture the host code runs on: "x86_64" or "aarch64"
    target_dict: dict
    num_cores: int
    vector_bits: int  # widest float SIMD register of the host CPU (cuda: host's)

    @property
    def target(self):
        import tvm

        spec = dict(self.target_dict)
        host = spec.pop("host", None)
        return tvm.target.Target(spec, host=host) if host else tvm.target.Target(spec)

    @property
    def lanes(self) -> int:
        """float32 lanes of one vector register."""
        return max(self.vector_bits // 32, 1)

    @property
    def runs_here(self) -> bool:
        return self.family != "cuda" and self.arch == platform.machine()


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _host_x86() -> tuple[dict, int]:
    flags = _cpu_flags()
    if {"avx512f", "avx512bw", "avx512vl"} <= flags:
        mcpu, bits = (
            ("sapphirerapids", 512)
            if "amx_tile" in flags or "avx512_bf16" in flags
            else ("skylake-avx512", 512)
        )
    elif "avx2" in flags:
        mcpu, bits = "haswell", 256
    else:
        mcpu, bits = "x86-64", 128
    return {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu}, bits


def _cores() -> int:
    return int(os.environ.get("TVM_NUM_THREADS") or os.cpu_count() or 1)


def resolve_target(spec) -> TargetInfo:
    """A target name (case-insensitive), a TVM target dict, or a TargetInfo."""
    if isinstance(spec, TargetInfo):
        return spec
    if isinstance(spec, dict):
        return _from_dict(spec)
    name = str(spec).strip().lower()
    cores = _cores()
    if name == "cpu":
        machine = platform.machine()
        if machine in ("aarch64", "arm64"):
            return resolve_target("aarch64")
        target, bits = _host_x86()
        return TargetInfo("cpu", "x86", "x86_64", {**target, "num-cores": cores}, cores, bits)
    if name in ("x86_64", "x86-64", "x86"):
        target = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell", "num-cores": cores}
        return TargetInfo("x86_64", "x86", "x86_64", target, cores, 256)
    if name in ("aarch64", "arm64"):
        target = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"], "num-cores": 4}
        return TargetInfo("aarch64", "aarch64", "aarch64", target, 4, 128)
    if name == "cuda" or name.startswith("cuda:"):
        arch = name.split(":", 1)[1] if ":" in name else "sm_90"
        if not arch.startswith("sm_") or not arch[3:].isdigit():
            raise SparseccError(
                f"bad CUDA architecture {arch!r}; write it as cuda:sm_90 (or cuda:sm_80, ...)"
            )
        host, bits = _host_x86()
        target = {"kind": "cuda", "arch": arch, "host": {**host, "num-cores": cores}}
        return TargetInfo(f"cuda:{arch}", "cuda", "x86_64", target, cores, bits)
    raise SparseccError(
        f"unknown target {spec!r}; valid targets: {', '.join(TARGET_NAMES)}, or a TVM target dict"
    )


def _from_dict(spec: dict) -> TargetInfo:
    kind = spec.get("kind")
    if kind == "cuda":
        return TargetInfo(f"cuda:{spec.get('arch', 'sm_90')}", "cuda", "x86_64", dict(spec), _cores(), 512)
    if kind != "llvm":
        raise SparseccError(f"unsupported TVM target kind {kind!r}; use 'llvm' or 'cuda'")
    triple = spec.get("mtriple", "x86_64-linux-gnu")
    if triple.startswith("aarch64"):
        return TargetInfo("aarch64", "aarch64", "aarch64", dict(spec), int(spec.get("num-cores", 4)), 128)
    bits = (
        512
        if "avx512" in str(spec.get("mcpu", ""))
        or spec.get("mcpu") in ("sapphirerapids", "skylake-avx512", "icelake-server")
        else 256
    )
    return TargetInfo("x86_64", "x86", "x86_64", dict(spec), int(spec.get("num-cores", _cores())), bits)
