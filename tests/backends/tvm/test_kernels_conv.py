"""The Conv kernel against onnxruntime's Conv on the masked numpy weight: strides, pads, groups,
depthwise, dilation, batches, epilogues, and dense / CSR / BSR weights (x86, this host)."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsecc.backends.tvm.kernels.conv_cpu import ConvGeometry, ConvTiles, Epilogue, make_conv_kernel
from sparsecc.backends.tvm.target import resolve_target
from sparsecc.ops import BsrFormat, CsrFormat
from sparsecc.sparsity.masks import block_mask, unstructured_mask

tvm = pytest.importorskip("tvm")
TARGET = resolve_target("cpu")
RNG = np.random.default_rng(5)


def onnxruntime_conv(g: ConvGeometry, x, w, b, epilogue: Epilogue, residual):
    """Conv [+ residual] [-> Relu | Clip] in onnxruntime: the reference."""
    nodes = [
        helper.make_node(
            "Conv",
            ["x", "w", "b"],
            ["y0"],
            strides=list(g.strides),
            pads=list(g.pads),
            dilations=list(g.dilations),
            group=g.groups,
        )
    ]
    inputs, last = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))], "y0"
    if epilogue.residual:
        nodes.append(helper.make_node("Add", ["y0", "r"], ["y1"]))
        inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, list(residual.shape)))
        last = "y1"
    if epilogue.activation == "relu":
        nodes.append(helper.make_node("Relu", [last], ["y"]))
        last = "y"
    elif epilogue.activation == "clip":
        nodes.append(helper.make_node("Clip", [last, "lo", "hi"], ["y"]))
        last = "y"
    graph = helper.make_graph(
        nodes,
        "conv",
        inputs,
        [helper.make_tensor_value_info(last, TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(w.reshape(g.o, g.c // g.groups, g.kh, g.kw), "w"),
            numpy_helper.from_array(b, "b"),
            numpy_helper.from_array(np.float32(epilogue.clip[0]), "lo"),
            numpy_helper.from_array(np.float32(epilogue.clip[1]), "hi"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x, **({"r": residual} if epilogue.residual else {})})[0]


def run(g: ConvGeometry, w: np.ndarray, fmt=None, epilogue=None, tiles=None):
    """Our kernel's output and onnxruntime's, for the masked weight `w` [O, C/g*kh*kw]."""
    epilogue = epilogue or Epilogue()
    x = RNG.standard_normal((g.n, g.c, g.h, g.w)).astype(np.float32)
    b = RNG.standard_normal(g.o).astype(np.float32)
    shape = (g.n, g.o, g.out_h, g.out_w)
    residual = RNG.standard_normal(shape).astype(np.float32) if epilogue.residual else np.zeros(1, np.float32)
    weight = w if fmt is None else fmt.compress(w)
    kernel = make_conv_kernel(
        weight, b, g, epilogue, TARGET.lanes, TARGET.vector_registers, TARGET.num_cores, "conv", tiles
    )
    module = tvm.compile(kernel.prim_func, target=TARGET.target)
    device = tvm.cpu()
    args = [
        tvm.runtime.tensor(a, device)
        for a in (x, *kernel.constants, residual, np.full(shape, np.nan, np.float32))
    ]
    module(*args)
    return args[-1].numpy(), onnxruntime_conv(g, x, w, b, epilogue, residual)


def weight(g: ConvGeometry) -> np.ndarray:
    return RNG.standard_normal((g.o, g.taps)).astype(np.float32)


def assert_close(got, want):
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * float(np.abs(want).max()))


GEOMETRIES = {
    "1x1": ConvGeometry(1, 32, 8, 8, 48, 1, 1),  # X read in place (64 positions fill whole tiles)
    "1x1-odd": ConvGeometry(1, 24, 7, 9, 40, 1, 1),  # positions do not fill tiles: X copied
    "3x3-pad": ConvGeometry(1, 16, 12, 10, 32, 3, 3, pads=(1, 1, 1, 1)),
    "stride2": ConvGeometry(1, 16, 13, 11, 24, 3, 3, (2, 2), (1, 1, 1, 1)),
    "1x1-stride2": ConvGeometry(1, 32, 14, 14, 64, 1, 1, (2, 2)),
    "7x7-stem": ConvGeometry(1, 3, 32, 32, 16, 7, 7, (2, 2), (3, 3, 3, 3)),
    "asymmetric": ConvGeometry(2, 8, 9, 11, 12, 3, 2, (2, 1), (1, 0, 2, 1), (1, 2)),
    "dilation": ConvGeometry(1, 8, 16, 16, 16, 3, 3, pads=(2, 2, 2, 2), dilations=(2, 2)),
    "groups": ConvGeometry(2, 16, 9, 11, 24, 3, 3, (2, 1), (1, 0, 2, 1), (2, 1), 2),
    "depthwise": ConvGeometry(1, 32, 14, 14, 32, 3, 3, pads=(1, 1, 1, 1), groups=32),
    "depthwise-s2": ConvGeometry(1, 24, 15, 15, 48, 3, 3, (2, 2), (1, 1, 1, 1), groups=24),
}


@pytest.mark.parametrize("case", GEOMETRIES)
def test_dense_matches_onnxruntime(case):
    g = GEOMETRIES[case]
    assert_close(*run(g, weight(g)))


@pytest.mark.parametrize(
    "epilogue",
    [
        Epilogue(activation="relu"),
        Epilogue(residual=True),
        Epilogue(True, "relu"),
        Epilogue(activation="clip"),
    ],
    ids=["relu", "residual", "residual-relu", "clip6"],
)
@pytest.mark.parametrize("case", ["1x1", "3x3-pad", "stride2"])
def test_epilogues(case, epilogue):
    g = GEOMETRIES[case]
    got, want = run(g, weight(g), epilogue=epilogue)
    assert_close(got, want)
    if epilogue.activation != "none":
        assert got.min() >= 0 and (epilogue.activation != "clip" or got.max() <= 6.0)


@pytest.mark.parametrize(
    "fmt, mask",
    [
        (CsrFormat(), lambda w: unstructured_mask(w, 0.85)),
        (BsrFormat((16, 1)), lambda w: block_mask(w, (16, 1), 0.75)),
        (BsrFormat((4, 4)), lambda w: block_mask(w, (4, 4), 0.7)),
    ],
    ids=["csr", "bsr16x1", "bsr4x4"],
)
@pytest.mark.parametrize("case", ["1x1", "1x1-odd", "3x3-pad", "stride2", "groups"])
def test_sparse_matches_onnxruntime_on_the_masked_weight(case, fmt, mask):
    g = GEOMETRIES[case]
    if not fmt.fits((g.o, g.taps)) or (isinstance(fmt, BsrFormat) and (g.o // g.groups) % fmt.block[0]):
        pytest.skip(f"{fmt.label} does not fit [{g.o}, {g.taps}] with {g.groups} groups")
    w = weight(g)
    w = np.where(mask(w), w, np.float32(0))
    got, want = run(g, w, fmt, Epilogue(True, "relu"))
    assert_close(got, want)


def test_empty_rows_and_an_all_zero_weight():
    g = GEOMETRIES["3x3-pad"]
    w = weight(g)
    w[::3] = 0  # output channels with no taps: bias only
    assert_close(*run(g, w, CsrFormat()))
    got, want = run(g, np.zeros_like(w), CsrFormat())
    assert_close(got, want)


@pytest.mark.parametrize("tiles", [ConvTiles(1, 1), ConvTiles(2, 3), ConvTiles(4, 2)], ids=str)
def test_every_register_tile_computes_the_same(tiles):
    g = GEOMETRIES["asymmetric"]
    assert_close(*run(g, weight(g), tiles=tiles))


def test_positions_not_filling_tiles_are_not_written_past_y():
    """Y starts as NaN: a lane past a row's end or the last position must not land in Y."""
    g = ConvGeometry(1, 8, 5, 7, 16, 3, 3, pads=(1, 1, 1, 1))
    got, want = run(g, weight(g))
    assert not np.isnan(got).any()
    assert_close(got, want)
