"""The edits `percept export --int8` makes to a graph: each leaves what the model computes unchanged."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from perception.train.quantize import (
    decoding_nodes,
    merge_output_convolutions,
    read_shapes_before_dequantising,
    take_frame_input,
)

RNG = np.random.default_rng(0)


def run(model: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
    return session.run(None, feeds)  # type: ignore[no-any-return]


def weights(name: str, shape: tuple[int, ...]) -> object:
    return numpy_helper.from_array(RNG.normal(size=shape).astype(np.float32), name)


def two_heads() -> object:
    """A feature conv read by two 1x1 output convs (scores, boxes), one of them decoded further."""
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["f"], name="features", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["f"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "ws", "bs"], ["s"], name="scores"),
        helper.make_node("Sigmoid", ["s"], ["p"], name="sigmoid"),
        helper.make_node("Conv", ["r", "wb", "bb"], ["boxes"], name="boxes"),
    ]
    initializers = [
        weights("w0", (8, 3, 3, 3)),
        weights("b0", (8,)),
        weights("ws", (5, 8, 1, 1)),
        weights("bs", (5,)),
        weights("wb", (4, 8, 1, 1)),
        weights("bb", (4,)),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("p", "boxes")],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_output_convolutions_reading_one_map_become_one_and_a_split_with_the_same_outputs():
    model = two_heads()
    x = {"x": RNG.normal(size=(1, 3, 8, 8)).astype(np.float32)}
    before = run(model, x)
    merge_output_convolutions(model, ["boxes", "scores"])
    ops = [node.op_type for node in model.graph.node]  # type: ignore[attr-defined]
    assert ops.count("Conv") == 2 and "Split" in ops
    names = {i.name for i in model.graph.initializer}  # type: ignore[attr-defined]
    assert not names & {"ws", "bs", "wb", "bb"}  # the separate filters are gone
    for was, now in zip(before, run(model, x), strict=True):
        np.testing.assert_allclose(now, was, rtol=1e-5, atol=1e-5)


def test_the_decoding_is_what_the_output_convolutions_do_not_depend_on():
    assert decoding_nodes(two_heads(), ["boxes", "scores"]) == ["scores", "sigmoid", "boxes"]
    assert decoding_nodes(two_heads(), []) == []  # no output convolution found: nothing is kept apart


def quantized_input_model(scale: float, zero_point: int) -> object:
    """x (1 x 3 x H x W, 0-1) -> quantised -> dequantised -> its shape and a ReLU: the start of a QDQ graph."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quantize_x"),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], name="dequantize_x"),
        helper.make_node("Shape", ["d"], ["shape"], name="shape"),
        helper.make_node("Relu", ["d"], ["y"], name="relu"),
    ]
    initializers = [
        numpy_helper.from_array(np.array(scale, np.float32), "s"),
        numpy_helper.from_array(np.array(zero_point, np.uint8), "z"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("shape", TensorProto.INT64, None),
        ],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_shape_is_read_from_the_int8_map_and_a_dequantise_nobody_else_reads_goes():
    model = quantized_input_model(1 / 255, 0)
    graph = model.graph  # type: ignore[attr-defined]
    graph.node.insert(2, helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d2"], name="for_shape"))
    graph.node[3].input[0] = "d2"  # the Shape reads a dequantise of its own, as onnxruntime's export has it
    x = {"x": np.full((1, 3, 2, 5), 0.5, np.float32)}
    before = run(model, x)
    read_shapes_before_dequantising(model)
    nodes = {node.name: node for node in graph.node}
    assert nodes["shape"].input[0] == "q" and "for_shape" not in nodes and "dequantize_x" in nodes
    for was, now in zip(before, run(model, x), strict=True):
        np.testing.assert_array_equal(now, was)


def test_the_frame_itself_becomes_the_input_and_gives_what_its_0_1_tensor_gave():
    """Calibrated a little off 1/255 (as MinMax may be), the input quantisation is set to exactly
    1/255: the frame's own bytes then are the quantised input."""
    frame = RNG.integers(0, 256, (1, 4, 6, 3), dtype=np.uint8)
    tensor = frame.transpose(0, 3, 1, 2).astype(np.float32) / 255
    exact = run(quantized_input_model(1 / 255, 0), {"x": tensor})
    model = quantized_input_model(1.003 / 255, 0)
    assert take_frame_input(model)
    image = model.graph.input[0]  # type: ignore[attr-defined]
    assert image.type.tensor_type.elem_type == TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == [1, "height", "width", 3]
    for was, now in zip(exact, run(model, {"x": frame}), strict=True):
        np.testing.assert_array_equal(now, was)


def test_a_model_whose_input_is_not_a_quantised_0_1_image_keeps_its_float_input():
    for model in (two_heads(), quantized_input_model(1.0, 0)):  # YOLOX, say, takes 0-255
        assert not take_frame_input(model)
        assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # type: ignore[attr-defined]
