"""The TVM backend's report says what runs each layer and why, on every target."""

import numpy as np
import onnx_ir as ir
import pytest

import sparsecc
from sparsecc.compiler import api

pytest.importorskip("tvm")

SPEC = "layers.0.weight=block(16,1)@0.9; layers.2.weight=2:4"


def rows(compiled) -> dict:
    return {row["name"]: row for row in compiled.report}


def test_two_four_on_x86_breaks_even_so_it_runs_dense_and_says_why():
    """The lane-permute kernel measured 0.6-1.3x of the dense GEMM: untuned, 2:4 stays dense."""
    report = rows(sparsecc.compile("zoo:mlp", SPEC, target="cpu"))
    nm = report["layers.2.weight"]
    assert nm["pattern"] == "2:4" and nm["density"] == pytest.approx(0.5)
    assert (nm["format"], nm["runs"], nm["kernel"]) == ("dense", "dense", "dense_gemm_x86")
    assert "N:M 2:4 at density 0.50 is estimated at 1.00x dense" in nm["reason"]
    assert report["layers.0.weight"]["kernel"] == "bsr_16x1_x86"
    assert (
        report["layers.1.weight"]["kernel"] == "dense_gemm_x86"
        and report["layers.1.weight"]["runs"] == "dense"
    )


def test_two_four_on_aarch64_reports_the_dense_kernel_and_why():
    """No N:M kernel on aarch64: the cost model keeps the pruned weight dense and says so."""
    report = rows(sparsecc.compile("zoo:mlp", SPEC, target="aarch64"))
    nm = report["layers.2.weight"]
    assert nm["pattern"] == "2:4" and nm["density"] == pytest.approx(0.5)
    assert (nm["format"], nm["runs"], nm["kernel"]) == ("dense", "dense", "dense_gemm_aarch64")
    assert "no N:M 2:4 kernel here" in nm["reason"] and "needs an x86 lane permute" in nm["reason"]
    assert report["layers.0.weight"]["kernel"] == "bsr_16x1_aarch64"


def test_a_sparsified_file_with_two_four_on_aarch64_runs_dense_and_says_why(tmp_path):
    """A file that holds NmMatMul already: the kernel rules decline it and the report says why."""
    sparsified = api.sparsify("zoo:mlp", SPEC, backend="onnxruntime")  # priced by bytes: 2:4 stays
    assert "NmMatMul" in {n.op_type for n in sparsified.graph.node}
    report = rows(sparsecc.compile(sparsified, "existing", target="aarch64"))
    nm = next(row for row in report.values() if row["format"] == "N:M 2:4")
    assert nm["runs"] == "dense" and nm["kernel"] == "dense_gemm_aarch64"
    reason = nm["kernel_reason"]  # every N:M rule's refusal, the decode kernel's (nm_gemv) first
    assert "no N:M 2:4 kernel here (nm_gemv: " in reason and "nm_permute: needs an x86 lane permute" in reason


def test_layers_with_shapes_known_only_at_run_time_get_their_kernels(tmp_path):
    """A TorchScript export computes its reshapes at run time; onnxruntime measures the tokens."""
    from tests.hf_bert import export_hf_bert

    path = tmp_path / "bert.onnx"
    feeds = export_hf_bert(path, "torchscript", 14)
    compiled = sparsecc.compile(str(path), "*intermediate*=block(16,1)@0.9", example_inputs=feeds)
    want = sparsecc.compile(
        str(path), "*intermediate*=block(16,1)@0.9", example_inputs=feeds, backend="onnxruntime"
    )
    got, expected = compiled(**feeds), want(**feeds)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    kernels = {row["name"]: row["kernel"] for row in compiled.report}
    assert kernels["encoder.layer.0.intermediate.dense.weight"] == "bsr_16x1_x86"
    assert all(kernel for kernel in kernels.values())


def test_every_linear_gets_a_unique_node_name_before_lowering():
    model = ir.serde.deserialize_model(api.sparsify("zoo:bert", "existing"))
    names = [node.name for node in model.graph]
    assert all(names) and len(set(names)) == len(names)
