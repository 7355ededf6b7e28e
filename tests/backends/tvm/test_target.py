import pytest

from sparsecc.backends.tvm import target as target_module
from sparsecc.backends.tvm.target import host_x86_target, resolve_target
from sparsecc.errors import SparseccError

AVX512 = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx2", "fma"}
ICELAKE = AVX512 | {"avx512_vnni", "avx512_vbmi2", "avx512vbmi", "avx512ifma", "avx512_bitalg"}
ICELAKE |= {"avx512_vpopcntdq", "gfni", "vaes", "vpclmulqdq"}
ZEN4 = ICELAKE | {"avx512_bf16"}  # AVX-512 with bf16, but no fp16 and no AMX
SAPPHIRE_RAPIDS = ZEN4 | {
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "avx_vnni",
    "avx512_vp2intersect",
}


def test_named_targets():
    cpu = resolve_target("CPU")
    assert cpu.family == "x86" and cpu.target_dict["mcpu"] != "native" and cpu.runs_here
    assert cpu.target_dict["num-cores"] == cpu.num_cores >= 1
    assert resolve_target("x86_64").target_dict["mcpu"] == "haswell"
    assert resolve_target(" X86_64 ").vector_bits == 256
    arm = resolve_target("aarch64")
    assert arm.family == "aarch64" and arm.arch == "aarch64" and not arm.runs_here
    assert arm.target_dict["mattr"] == ["+neon"] and arm.vector_bits == 128
    cuda = resolve_target("cuda:sm_80")
    assert cuda.family == "cuda" and cuda.target_dict["arch"] == "sm_80"
    assert cuda.target_dict["host"]["mtriple"] == "x86_64-linux-gnu" and not cuda.runs_here
    assert resolve_target("cuda").target_dict["arch"] == "sm_90"
    assert resolve_target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"}).family == "aarch64"


def test_bad_targets_list_the_valid_ones():
    with pytest.raises(SparseccError, match="unknown target 'tpu'; valid targets: cpu, x86_64"):
        resolve_target("tpu")
    with pytest.raises(SparseccError, match="cuda:sm_90"):
        resolve_target("cuda:90")
    with pytest.raises(SparseccError, match="'llvm' or 'cuda'"):
        resolve_target({"kind": "vulkan"})


@pytest.mark.parametrize(
    ("flags", "mcpu", "mattr", "bits"),
    [
        (SAPPHIRE_RAPIDS, "sapphirerapids", None, 512),
        (ZEN4, "icelake-server", None, 512),
        (ICELAKE - {"gfni", "vaes"}, "icelake-server", ["-gfni", "-vaes"], 512),
        (AVX512, "skylake-avx512", None, 512),
        ({"avx2", "fma", "sse4_2"}, "haswell", None, 256),
        ({"sse4_2"}, "x86-64", None, 128),
    ],
)
def test_host_cpu_is_named_by_its_features(flags, mcpu, mattr, bits):
    target, got_bits = host_x86_target(flags)
    assert (target["mcpu"], target.get("mattr"), got_bits) == (mcpu, mattr, bits)


def test_features_the_host_lacks_are_switched_off():
    """SPR-class flags without fp16 (not a real CPU): LLVM must not be allowed to emit AVX-512 FP16."""
    target, _ = host_x86_target(SAPPHIRE_RAPIDS - {"avx512_fp16", "avx_vnni"})
    assert target["mcpu"] == "icelake-server"
    target, _ = host_x86_target(SAPPHIRE_RAPIDS - {"avx_vnni", "amx_int8"})
    assert target["mcpu"] == "sapphirerapids" and target["mattr"] == ["-amx-int8", "-avxvnni"]


def test_cpu_target_enables_only_what_this_host_has():
    """Every feature the chosen LLVM CPU implies is in /proc/cpuinfo (else the code could trap here)."""
    tvm = pytest.importorskip("tvm")
    from tvm.target import codegen

    cpu = resolve_target("cpu")
    if cpu.family != "x86":
        pytest.skip("x86 host only")
    flags = target_module._cpu_flags()
    for tier_features in target_module.IMPLIED_FEATURES.values():
        for feature, flag in tier_features.items():
            if codegen.target_has_features([feature], cpu.target):
                assert flag in flags, (feature, cpu.target_dict)
    assert bool(codegen.target_has_features(["avx512f"], cpu.target)) == ("avx512f" in flags)
    assert isinstance(cpu.target, tvm.target.Target)


def test_dict_targets_report_their_vector_width():
    assert resolve_target({"kind": "llvm", "mcpu": "znver4"}).vector_bits == 512
    assert resolve_target({"kind": "llvm", "mcpu": "haswell"}).vector_bits == 256
    assert (
        resolve_target({"kind": "llvm", "mcpu": "sapphirerapids", "mattr": ["-avx512f"]}).vector_bits == 256
    )
    host = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"}
    assert resolve_target({"kind": "cuda", "arch": "sm_90", "host": host}).vector_bits == 256
