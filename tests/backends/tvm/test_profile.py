"""Grouping of the VM's function names in profiles: a linear kernel by its label, the rest by name."""

from sparsecc.backends.tvm.profile import group_of


def test_linear_kernels_group_by_label_and_the_rest_by_name():
    assert group_of("csr_x86_encoder_layer_0_output_dense_weight3") == "csr_x86"
    assert group_of("bsr_16x1_x86_layers_0_weight") == "bsr_16x1_x86"
    assert group_of("dense_gemm_aarch64_h_0_mlp_c_fc_weight12") == "dense_gemm_aarch64"
    assert group_of("fused_matmul_add3") == "fused_matmul_add"
    assert group_of("attention_cpu2") == "attention_cpu"
    assert group_of("conv_dense_blocked_x86_node_Conv_807") == "conv_dense_blocked_x86"
    assert group_of("conv_csr_x86_stages_0_conv_weight") == "conv_csr_x86"
    assert group_of("conv_depthwise_blocked_x86_node_Conv") == "conv_depthwise_blocked_x86"
