"""The channel-blocked Conv kernel and the layout kernels at its edges, against onnxruntime:
blocked and NCHW inputs, strides, pads, dilation, batches, epilogues; MaxPool on blocked input."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from sparsecc.backends.tvm.kernels.blocked_layout_cpu import (
    PoolGeometry,
    max_pool_blocked_func,
    pool_supported,
    to_blocked_func,
    to_planar_func,
)
from sparsecc.backends.tvm.kernels.conv_blocked_cpu import (
    blocked_shape,
    channel_blocked_tiles,
    make_blocked_conv_kernel,
)
from sparsecc.backends.tvm.kernels.conv_cpu import ConvGeometry, Epilogue
from sparsecc.backends.tvm.target import resolve_target
from tests.backends.tvm.test_kernels_conv import assert_close, onnxruntime_conv

tvm = pytest.importorskip("tvm")
TARGET = resolve_target("cpu")
LANES = TARGET.lanes
RNG = np.random.default_rng(11)


def to_blocked(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    padded = np.zeros((n, -(-c // LANES) * LANES, h, w), np.float32)
    padded[:, :c] = x
    return np.ascontiguousarray(padded.reshape(n, -1, LANES, h, w).transpose(0, 1, 3, 4, 2))


def to_planar(y: np.ndarray, c: int) -> np.ndarray:
    n, blocks, h, w, lanes = y.shape
    return y.transpose(0, 1, 4, 2, 3).reshape(n, blocks * lanes, h, w)[:, :c]


def call(func, *arrays, out_shape):
    module = tvm.compile(func, target=TARGET.target)
    args = [tvm.runtime.tensor(a, tvm.cpu()) for a in (*arrays, np.full(out_shape, np.nan, np.float32))]
    module(*args)
    return args[-1].numpy()


GEOMETRIES = {
    "3x3": ConvGeometry(1, 2 * LANES, 9, 11, 4 * LANES, 3, 3, pads=(1, 1, 1, 1)),
    "1x1-in-place": ConvGeometry(1, 2 * LANES, 6, 10, 2 * LANES, 1, 1),
    "1x1-stride2-in-place": ConvGeometry(1, LANES, 9, 9, 2 * LANES, 1, 1, strides=(2, 2)),
    "stride2-dilated-asymmetric-batch2": ConvGeometry(
        2, LANES, 12, 10, 2 * LANES, 3, 2, strides=(2, 1), pads=(2, 1, 2, 0), dilations=(2, 1)
    ),
    "one-vector-of-outputs": ConvGeometry(1, LANES, 5, 6, LANES, 3, 3, strides=(1, 2), pads=(1, 1, 1, 1)),
    "narrow-rows": ConvGeometry(1, LANES, 4, 3, 2 * LANES, 3, 3, pads=(1, 1, 1, 1)),
    # weights past L1 per tile: rows per task, the weight walked in chunks, partial sums
    "chunked-3x3": ConvGeometry(1, 8 * LANES, 9, 14, 2 * LANES, 3, 3, pads=(1, 1, 1, 1)),
    "chunked-1x1-stride2": ConvGeometry(1, 80 * LANES, 10, 14, 4 * LANES, 1, 1, strides=(2, 2)),
}
CHUNKED = {"chunked-3x3", "chunked-1x1-stride2"}


@pytest.mark.parametrize("input_blocked", [True, False], ids=["blocked-in", "nchw-in"])
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_blocked_conv_matches_onnxruntime(name, input_blocked):
    """Y starts as NaN: every output is written, and equals onnxruntime's Conv + residual + ReLU."""
    g = GEOMETRIES[name]
    epilogue = Epilogue(True, "relu")
    w = RNG.standard_normal((g.o, g.taps)).astype(np.float32)
    b = RNG.standard_normal(g.o).astype(np.float32)
    x = RNG.standard_normal((g.n, g.c, g.h, g.w)).astype(np.float32)
    residual = RNG.standard_normal((g.n, g.o, g.out_h, g.out_w)).astype(np.float32)
    tiles = channel_blocked_tiles(g, LANES, TARGET.vector_registers)
    assert (tiles.rows_per_task > 0) == (name in CHUNKED), tiles
    kernel = make_blocked_conv_kernel(w, b, g, epilogue, LANES, tiles, input_blocked, TARGET.num_cores, "k")
    got = call(
        kernel.prim_func,
        to_blocked(x) if input_blocked else x,
        *kernel.constants,
        to_blocked(residual),
        out_shape=blocked_shape((g.n, g.o, g.out_h, g.out_w), LANES),
    )
    assert_close(to_planar(got, g.o), onnxruntime_conv(g, x, w, b, epilogue, residual))


def test_partial_channel_block_reads_from_nchw():
    """Channels that are not whole vectors (7x7, stride 2, clip epilogue) straight from NCHW; an
    RGB image (fewer channels than a vector) stays with the NCHW kernel."""
    assert channel_blocked_tiles(ConvGeometry(1, 3, 20, 18, 2 * LANES, 7, 7), LANES, 32) is None
    g = ConvGeometry(1, LANES + 3, 20, 18, 2 * LANES, 7, 7, strides=(2, 2), pads=(3, 3, 3, 3))
    epilogue = Epilogue(False, "clip", (0.0, 6.0))
    w = RNG.standard_normal((g.o, g.taps)).astype(np.float32)
    b = RNG.standard_normal(g.o).astype(np.float32)
    x = RNG.standard_normal((g.n, g.c, g.h, g.w)).astype(np.float32)
    tiles = channel_blocked_tiles(g, LANES, TARGET.vector_registers)
    kernel = make_blocked_conv_kernel(w, b, g, epilogue, LANES, tiles, False, TARGET.num_cores, "k")
    got = call(
        kernel.prim_func,
        x,
        *kernel.constants,
        np.zeros(1, np.float32),
        out_shape=blocked_shape((g.n, g.o, g.out_h, g.out_w), LANES),
    )
    assert_close(to_planar(got, g.o), onnxruntime_conv(g, x, w, b, epilogue, None))


DEPTHWISE = {
    "3x3": ConvGeometry(1, 2 * LANES, 9, 11, 2 * LANES, 3, 3, pads=(1, 1, 1, 1), groups=2 * LANES),
    "stride2-dilated-batch2": ConvGeometry(
        2, LANES, 12, 10, LANES, 3, 3, strides=(2, 2), pads=(2, 1, 2, 1), dilations=(2, 1), groups=LANES
    ),
    "5x5-narrow": ConvGeometry(1, LANES, 6, 4, LANES, 5, 5, pads=(2, 2, 2, 2), groups=LANES),
}


@pytest.mark.parametrize("input_blocked", [True, False], ids=["blocked-in", "nchw-in"])
@pytest.mark.parametrize("name", list(DEPTHWISE))
def test_blocked_depthwise_conv_matches_onnxruntime(name, input_blocked):
    g = DEPTHWISE[name]
    epilogue = Epilogue(True, "clip", (0.0, 6.0))
    w = RNG.standard_normal((g.o, g.taps)).astype(np.float32)
    b = RNG.standard_normal(g.o).astype(np.float32)
    x = RNG.standard_normal((g.n, g.c, g.h, g.w)).astype(np.float32)
    residual = RNG.standard_normal((g.n, g.o, g.out_h, g.out_w)).astype(np.float32)
    tiles = channel_blocked_tiles(g, LANES, TARGET.vector_registers)
    assert tiles.depthwise
    kernel = make_blocked_conv_kernel(w, b, g, epilogue, LANES, tiles, input_blocked, TARGET.num_cores, "k")
    got = call(
        kernel.prim_func,
        to_blocked(x) if input_blocked else x,
        *kernel.constants,
        to_blocked(residual),
        out_shape=blocked_shape((g.n, g.o, g.out_h, g.out_w), LANES),
    )
    assert_close(to_planar(got, g.o), onnxruntime_conv(g, x, w, b, epilogue, residual))


def test_grouped_and_partial_vector_convs_stay_nchw():
    assert channel_blocked_tiles(ConvGeometry(1, 32, 8, 8, 32, 3, 3, groups=4), LANES, 32) is None
    assert channel_blocked_tiles(ConvGeometry(1, 32, 8, 8, 64, 3, 3, groups=32), LANES, 32) is None
    assert channel_blocked_tiles(ConvGeometry(1, 32, 8, 8, LANES + 1, 3, 3), LANES, 32) is None


def test_layout_round_trip_with_a_partial_channel_block():
    shape = (2, LANES + 3, 5, 7)
    x = RNG.standard_normal(shape).astype(np.float32)
    blocked = call(to_blocked_func(shape, LANES), x, out_shape=blocked_shape(shape, LANES))
    np.testing.assert_array_equal(blocked, to_blocked(x))  # channels past C are zero
    np.testing.assert_array_equal(call(to_planar_func(shape, LANES), blocked, out_shape=shape), x)


def onnxruntime_max_pool(x, attributes):
    node = helper.make_node("MaxPool", ["x"], ["y"], **attributes)
    graph = helper.make_graph(
        [node],
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]


@pytest.mark.parametrize(
    "attributes",
    [
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},  # a ResNet stem's
        {"kernel_shape": [2, 3], "strides": [1, 2], "pads": [0, 1, 1, 0], "dilations": [2, 1]},
        {"kernel_shape": [2, 2], "strides": [2, 2]},
    ],
    ids=["resnet-stem", "dilated-asymmetric", "no-pads"],
)
def test_max_pool_matches_onnxruntime(attributes):
    """Blocked, and NCHW as one channel per lane ([N, C, H, W, 1])."""
    shape = (2, 2 * LANES, 9, 8)
    x = RNG.standard_normal(shape).astype(np.float32)
    g = PoolGeometry.of(shape, attributes)
    want = onnxruntime_max_pool(x, attributes)
    got = call(max_pool_blocked_func(g, LANES), to_blocked(x), out_shape=blocked_shape(want.shape, LANES))
    np.testing.assert_array_equal(to_planar(got, shape[1]), want)
    planar = call(max_pool_blocked_func(g, 1), x[..., None], out_shape=(*want.shape, 1))
    np.testing.assert_array_equal(planar[..., 0], want)


def test_max_pool_modes_the_blocked_kernel_leaves_to_tvm():
    assert not pool_supported({"kernel_shape": [3, 3], "ceil_mode": 1})
    assert not pool_supported({"kernel_shape": [3, 3], "auto_pad": b"SAME_UPPER"})
    assert not pool_supported({"kernel_shape": [3]})
    assert pool_supported({"kernel_shape": (3, 3), "auto_pad": b"NOTSET"})
