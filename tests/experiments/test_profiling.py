"""Pure parts of the studies under experiments/: how `experiments/profiling/conv_profile.py` names each of
ONNX Runtime's fused conv kernels by its network layer (a wrong name would silently put a kernel's time
on another row of the per-conv table)."""

from __future__ import annotations

from experiments.profiling.conv_profile import layer_of


def test_conv_profile_maps_every_exported_conv_kernel_to_its_layer() -> None:
    assert layer_of("/network/lower/conv1/relu/Relu_output_0_nchwc_kernel_time") == "lower.conv1"
    assert layer_of("/network/lower/conv2/relu_1/Relu_output_0_nchwc_kernel_time") == "lower.conv2"
    assert (
        layer_of("/network/temporal/branch/conv/relu/Relu_output_0_nchwc_kernel_time")
        == "temporal.branch.conv"
    )
    assert (
        layer_of("/network/spatial/branch/conv/relu/Relu_output_0_nchwc_kernel_time") == "spatial.branch.conv"
    )
    assert (
        layer_of("/network/temporal/branches.1.1/Relu_output_0_nchwc_kernel_time")
        == "temporal.tcl.branches.1"
    )
    assert (
        layer_of("/network/temporal/tcl/branches.0/branches.0.1/Relu_kernel_time")
        == "temporal.tcl.branches.0"
    )
    assert layer_of("/network/fusion/fusion.0/Gemm_kernel_time") is None
