import pytest

from sparsecc.backends.tvm.target import resolve_target
from sparsecc.errors import SparseccError


def test_named_targets():
    cpu = resolve_target("CPU")
    assert cpu.family == "x86" and cpu.target_dict["mcpu"] != "native" and cpu.runs_here
    assert resolve_target("x86_64").target_dict["mcpu"] == "haswell"
    arm = resolve_target("aarch64")
    assert arm.family == "aarch64" and arm.arch == "aarch64" and not arm.runs_here
    cuda = resolve_target("cuda:sm_80")
    assert cuda.family == "cuda" and cuda.target_dict["arch"] == "sm_80"
    assert resolve_target("cuda").target_dict["arch"] == "sm_90"
    assert resolve_target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"}).family == "aarch64"


def test_bad_targets_list_the_valid_ones():
    with pytest.raises(SparseccError, match="unknown target 'tpu'; valid targets: cpu, x86_64"):
        resolve_target("tpu")
    with pytest.raises(SparseccError, match="cuda:sm_90"):
        resolve_target("cuda:90")
