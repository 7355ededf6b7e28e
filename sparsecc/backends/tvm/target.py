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

    @classmethod
    def lanes_of(cls, target) -> int:
        """float32 lanes of a TVM LLVM target's vectors (what schedule rules, given only it, need)."""
        attrs = target.attrs
        if str(attrs.get("mtriple", "")).startswith("aarch64"):
            return 4
        spec = {"mcpu": str(attrs.get("mcpu", "")), "mattr": [str(a) for a in attrs.get("mattr", [])]}
        return x86_vector_bits(spec) // 32

    @property
    def vector_registers(self) -> int:
        """Architectural float vector registers: 32 with AVX-512 and on aarch64, 16 with AVX2."""
        return 32 if self.vector_bits >= 512 or self.family == "aarch64" else 16

    @property
    def bf16_dot(self) -> bool:
        """Whether the target has AVX512-BF16's `vdpbf16ps` (pairs of bf16 products into float32 lanes)."""
        if self.family != "x86" or self.vector_bits < 512:
            return False
        mattr = [str(a) for a in self.target_dict.get("mattr", [])]
        if "-avx512bf16" in mattr:
            return False
        return self.target_dict.get("mcpu") in BF16_CPUS or "+avx512bf16" in mattr

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


# x86 LLVM CPUs, best first: the /proc/cpuinfo flags a host needs for each, and its vector width.
# Picked by feature, not vendor: an AMD Zen 4 (AVX-512 with bf16/vnni, no fp16, no AMX) lands on
# "icelake-server"; it measured the same speed as "sapphirerapids" here, "znver4" was 1.3-1.5x slower.
X86_TIERS = (
    ("sapphirerapids", {"avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_fp16", "amx_tile"}, 512),
    ("icelake-server", {"avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_vbmi2"}, 512),
    ("skylake-avx512", {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}, 512),
    ("haswell", {"avx2", "fma"}, 256),
)

# LLVM x86 CPUs with AVX-512 (their float vectors are 512 bits wide).
AVX512_CPUS = frozenset(
    [
        "skylake-avx512",
        "cascadelake",
        "cooperlake",
        "cannonlake",
        "icelake-client",
        "icelake-server",
        "tigerlake",
        "rocketlake",
        "sapphirerapids",
        "emeraldrapids",
        "graniterapids",
        "znver4",
        "znver5",
        "x86-64-v4",
    ]
)

# LLVM x86 CPUs with AVX512-BF16 (`vdpbf16ps`). A Zen 4 host lands on "icelake-server" (X86_TIERS),
# which LLVM gives no bf16: its bf16 kernels take the float32-FMA path.
BF16_CPUS = frozenset(["cooperlake", "sapphirerapids", "emeraldrapids", "graniterapids", "znver4", "znver5"])


# LLVM features the tiers above imply that LLVM may emit without intrinsics, with their cpuinfo flag.
# A tier's feature the host lacks is switched off ("-feature"), so "cpu" code never traps (SIGILL).
IMPLIED_FEATURES = {
    "sapphirerapids": {
        "avx512fp16": "avx512_fp16",
        "avxvnni": "avx_vnni",
        "avx512vp2intersect": "avx512_vp2intersect",
        "amx-int8": "amx_int8",
        "amx-bf16": "amx_bf16",
    },
    "icelake-server": {
        "avx512vbmi": "avx512vbmi",
        "avx512ifma": "avx512ifma",
        "avx512bitalg": "avx512_bitalg",
        "avx512vpopcntdq": "avx512_vpopcntdq",
        "gfni": "gfni",
        "vaes": "vaes",
        "vpclmulqdq": "vpclmulqdq",
    },
}
IMPLIED_FEATURES["sapphirerapids"].update(IMPLIED_FEATURES["icelake-server"])


def host_x86_target(flags: set[str]) -> tuple[dict, int]:
    """The LLVM target dict and vector bits for an x86 host with these cpuinfo flags."""
    mcpu, _, bits = next((tier for tier in X86_TIERS if tier[1] <= flags), ("x86-64", set(), 128))
    target = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu}
    missing = sorted(
        f"-{feature}" for feature, flag in IMPLIED_FEATURES.get(mcpu, {}).items() if flag not in flags
    )
    if missing:
        target["mattr"] = missing
    return target, bits


def _host_x86() -> tuple[dict, int]:
    return host_x86_target(_cpu_flags())


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
        if machine in ("aarch64", "arm64"):  # this host's cores, unlike the 4 assumed for a cross build
            target = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"], "num-cores": cores}
            return TargetInfo("cpu", "aarch64", "aarch64", target, cores, 128)
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
        host_bits = x86_vector_bits(spec["host"]) if isinstance(spec.get("host"), dict) else _host_x86()[1]
        return TargetInfo(
            f"cuda:{spec.get('arch', 'sm_90')}", "cuda", "x86_64", dict(spec), _cores(), host_bits
        )
    if kind != "llvm":
        raise SparseccError(f"unsupported TVM target kind {kind!r}; use 'llvm' or 'cuda'")
    triple = spec.get("mtriple", "x86_64-linux-gnu")
    if triple.startswith("aarch64"):
        return TargetInfo("aarch64", "aarch64", "aarch64", dict(spec), int(spec.get("num-cores", 4)), 128)
    return TargetInfo(
        "x86_64", "x86", "x86_64", dict(spec), int(spec.get("num-cores", _cores())), x86_vector_bits(spec)
    )


def x86_vector_bits(spec: dict) -> int:
    """Vector width of an x86 target dict: its mcpu, then any +/-avx512f in mattr."""
    mattr = [str(feature) for feature in spec.get("mattr", [])]
    bits = 512 if spec.get("mcpu") in AVX512_CPUS else 256
    if "+avx512f" in mattr:
        bits = 512
    if "-avx512f" in mattr:
        bits = 256
    return bits
