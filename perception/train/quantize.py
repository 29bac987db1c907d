"""An int8 detector: onnxruntime's static quantisation (QDQ, weights per channel on 7 bits, so that
CPUs without VNNI compute it right too), calibrated on frames the simulator renders, as `yolo export
int8=True` calibrates on a dataset.

The convolutions the outputs are computed from stay in float: they make the class scores (whose peaks
are compared to each other) and the box sides, and quantised they cost our model 0.013-0.022 mAP50.
So does the decoding after them (box corners in pixels). The rest of the network runs in int8: every
other convolution, the ReLUs after them (quantised as an activation onnxruntime folds into the
convolution before it, a ReLU's range becomes that convolution's output range, so no dequantise-
requantise pair is left between them), and the feature pyramid's upsampling and sums.

Four edits of the graph keep whole images and feature maps from being converted between int8 and
float for nothing (docs/benchmarks.md, "The int8 graph without needless conversions"):
- the output convolutions that read the same features become one convolution and a split, so those
  features are dequantised once, not once per convolution;
- a node that reads only a map's shape (the pyramid's upsampling asks for its target's size) reads it
  from the int8 map, so no map is dequantised just to be measured;
- the pyramid's adds and upsampling run on int8 maps, not between a dequantise and a quantise;
- the model takes the uint8 frame itself (1 x H x W x 3): quantising a 0-1 tensor at exactly 1/255
  gives back the frame's bytes, so neither the preprocessing's float tensor nor that rounding is made.

Calibration frames come from seeds the benchmark suites do not use, from both scenes, through the
detector's own preprocessing. A model fine-tuned with `percept train --quantization-aware`
(quantization_aware.py) has learned the rounding as it was before the ReLUs were folded (each
convolution's output rounded over its range before the ReLU).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.errors import PerceptError
from perception.installed import require
from perception.train.metadata import model_metadata

CALIBRATION_SEED = 9100  # not a benchmark suite's seed (4000, 4100) nor a training seed (models/percept.md)
# Weights on 7 bits (onnxruntime's reduce_range: -64..64), so the file gives the same answers on every x86
# CPU. Without VNNI (AVX2 alone, as on many laptops and cloud machines) onnxruntime multiplies uint8
# activations by int8 weights with VPMADDUBSW, which adds each pair of products into 16 bits and
# saturates: 255 x 127 x 2 overflows, 255 x 64 x 2 does not. With 8-bit weights our file scored mAP50
# 0.816 on driving-standard and 0.928 on tabletop-standard on an AVX2-only EPYC (fp32: 0.963, 1.000),
# and 0.957 / 0.996 with VNNI; with 7-bit weights 0.959 and 1.000 there, as fast (docs/benchmarks.md,
# "int8 on CPUs without VNNI"). onnxruntime's quantize_static recommends it for CPUs without VNNI.
REDUCED_RANGE = True
WEIGHT_RANGE = (-64, 64)  # what onnxruntime's symmetric int8 weights span with REDUCED_RANGE


@dataclass
class Quantized:
    path: Path
    frames: int
    kept_float: list[str]  # the convolutions left in float
    frame_input: bool  # takes the uint8 frame (1 x H x W x 3), not a 0-1 float tensor
    seconds: float
    megabytes: float


def output_convolutions(model: Any) -> list[str]:
    """The Conv nodes the graph's outputs are computed from with no other Conv between: the layers
    that write scores and boxes."""
    producer = {output: node for node in model.graph.node for output in node.output}
    found: list[str] = []
    seen: set[str] = set()
    stack = [output.name for output in model.graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "Conv":
            found.append(node.name)
            continue
        stack += list(node.input)
    return sorted(found)


def merge_output_convolutions(model: Any, names: list[str]) -> None:
    """Make the convolutions `names` that read the same tensor with the same settings one convolution
    (their filters stacked) and a Split that gives back each one's output under its own name."""
    from onnx import helper, numpy_helper

    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    initializers = {i.name: i for i in graph.initializer}
    groups: dict[tuple[str, bytes], list[Any]] = {}
    for node in graph.node:
        if (
            node.name in names
            and len(node.input) == 3
            and {node.input[1], node.input[2]} <= initializers.keys()
        ):
            settings = b"".join(a.SerializeToString() for a in sorted(node.attribute, key=lambda a: a.name))
            groups.setdefault((node.input[0], settings), []).append(node)
    for (source, _), convs in groups.items():
        if len(convs) < 2 or opset < 13 or any(a.name == "group" and a.i != 1 for a in convs[0].attribute):
            continue  # grouped, or before opset 13 (Split's sizes an attribute): left as they are
        weights = [numpy_helper.to_array(initializers[c.input[1]]) for c in convs]
        biases = [numpy_helper.to_array(initializers[c.input[2]]) for c in convs]
        name = "+".join(c.name for c in convs)
        stacked = [
            numpy_helper.from_array(np.concatenate(weights), f"{name}.weight"),
            numpy_helper.from_array(np.concatenate(biases), f"{name}.bias"),
            numpy_helper.from_array(np.array([len(w) for w in weights], np.int64), f"{name}.split"),
        ]
        merged = helper.make_node(
            "Conv", [source, stacked[0].name, stacked[1].name], [f"{name}.out"], name=name
        )
        merged.attribute.extend(convs[0].attribute)
        split = helper.make_node(
            "Split",
            [merged.output[0], stacked[2].name],
            [c.output[0] for c in convs],
            name=f"{name}.split",
            axis=1,
        )
        at = min(list(graph.node).index(c) for c in convs)
        for conv in convs:
            graph.node.remove(conv)
        graph.node.insert(at, split)
        graph.node.insert(at, merged)
        graph.initializer.extend(stacked)
    used = {name for node in graph.node for name in node.input}
    for initializer in list(graph.initializer):
        if initializer.name not in used:
            graph.initializer.remove(initializer)


def decoding_nodes(model: Any, output_convs: list[str]) -> list[str]:
    """The nodes that none of `output_convs` depends on (the decoding after them, which stays in
    float), `output_convs` included; none when there are no output convolutions to tell them by."""
    if not output_convs:
        return []
    producer = {output: node for node in model.graph.node for output in node.output}
    network: set[str] = set()
    stack = [node for node in model.graph.node if node.name in output_convs]
    while stack:
        node = stack.pop()
        for name in node.input:
            source = producer.get(name)
            if source is not None and source.name not in network:
                network.add(source.name)
                stack.append(source)
    return [node.name for node in model.graph.node if node.name not in network]


def read_shapes_before_dequantising(model: Any) -> None:
    """Let each Shape of a dequantised map read the int8 map (same shape), and drop the dequantise
    nodes left with no reader."""
    graph = model.graph
    producer = {output: node for node in graph.node for output in node.output}
    for node in graph.node:
        source = producer.get(node.input[0]) if node.op_type == "Shape" else None
        if source is not None and source.op_type == "DequantizeLinear":
            node.input[0] = source.input[0]
    read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for node in list(graph.node):
        if node.op_type == "DequantizeLinear" and node.output[0] not in read:
            graph.node.remove(node)


def take_frame_input(model: Any) -> bool:
    """Make the model take the frame itself (1 x H x W x 3 uint8, RGB 0-255) where its input (1 x 3 x
    H x W, RGB 0-1: calibrated to a scale within 10% of 1/255) is read by one QuantizeLinear alone:
    that quantisation, set to exactly 1/255 and zero point 0, gives back the frame's own bytes, so a
    Transpose in its place does its work and the preprocessing's float tensor is never made. False
    (the model left as it is) otherwise."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    image = graph.input[0]
    readers = [node for node in graph.node if image.name in node.input]
    initializers = {i.name: i for i in graph.initializer}
    if len(graph.input) != 1 or len(readers) != 1 or readers[0].op_type != "QuantizeLinear":
        return False
    quantize_input = readers[0]
    if len(quantize_input.input) != 3 or not set(quantize_input.input[1:]) <= initializers.keys():
        return False
    scale, zero_point = (initializers[name] for name in quantize_input.input[1:])
    calibrated = float(numpy_helper.to_array(scale))
    if numpy_helper.to_array(zero_point).dtype != np.uint8 or not 0.9 / 255 <= calibrated <= 1.1 / 255:
        return False  # not a 0-1 image (YOLOX takes 0-255), or not rounded to uint8
    scale.CopyFrom(numpy_helper.from_array(np.array(1 / 255, np.float32), scale.name))
    zero_point.CopyFrom(numpy_helper.from_array(np.array(0, np.uint8), zero_point.name))
    batch, _, height, width = (d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim)
    frame = helper.make_tensor_value_info(image.name, TensorProto.UINT8, [batch, height, width, 3])
    to_channels_first = helper.make_node(
        "Transpose",
        [image.name],
        [quantize_input.output[0]],
        name="frame_to_channels_first",
        perm=[0, 3, 1, 2],
    )
    at = list(graph.node).index(quantize_input)
    graph.node.remove(quantize_input)
    graph.node.insert(at, to_channels_first)
    graph.input.remove(image)
    graph.input.insert(0, frame)
    return True


def quantize(
    model: str | Path,
    out: Path,
    frames: int = 64,
    scenes: tuple[str, ...] | None = None,
    seed: int = CALIBRATION_SEED,
) -> Quantized:
    """Write an int8 copy of `model` to `out`, calibrated on `frames` rendered frames of `scenes` (every
    scene by default)."""
    onnx = require("onnx", "percept export --int8")  # onnxruntime's quantisation is written on it
    from onnxruntime import quantization
    from onnxruntime.quantization.shape_inference import quant_pre_process  # type: ignore[import-untyped]

    from perception.detector import Detector
    from sim.camera import CameraSpec
    from sim.dataset import SCENES, rendered_frames

    started = time.monotonic()
    scenes = scenes or SCENES
    detector = Detector(model)
    if frames < 1:
        raise PerceptError(f"--calibration-frames: expected 1 or more, found {frames}")
    per_scene = [frames // len(scenes) + (i < frames % len(scenes)) for i in range(len(scenes))]
    tensors = [
        detector.preprocess(frame.rgb)[0]
        for scene, count in zip(scenes, per_scene, strict=True)
        for _, frame in rendered_frames(scene, seed, list(range(count)), CameraSpec(640, 480))
    ]
    input_name = detector.input_name

    class Frames(quantization.CalibrationDataReader):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self._left = iter(tensors)

        def get_next(self) -> dict[str, np.ndarray] | None:
            tensor = next(self._left, None)
            return None if tensor is None else {input_name: tensor}

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(detector.path), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        kept_float = output_convolutions(model)
        merge_output_convolutions(model, kept_float)
        onnx.save(model, str(prepared))
        quantization.quantize_static(
            str(prepared),
            str(out),
            Frames(),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            reduce_range=REDUCED_RANGE,
            calibrate_method=quantization.CalibrationMethod.MinMax,
            op_types_to_quantize=["Conv", "Relu", "Add", "Resize"],
            nodes_to_exclude=decoding_nodes(model, output_convolutions(model)),
        )
    quantized = onnx.load(str(out))
    read_shapes_before_dequantising(quantized)
    frame_input = take_frame_input(quantized)
    metadata = model_metadata(detector.path)
    metadata["quantization"] = json.dumps(
        {
            "kind": "int8 static, onnxruntime QDQ, weights per channel on 7 bits, ReLUs folded, "
            "pyramid in int8, output convolutions merged"
            + (", input the uint8 frame (1 x H x W x 3)" if frame_input else ""),
            "calibration": f"{len(tensors)} frames of {', '.join(scenes)} rendered from seed {seed}",
            "kept_float": kept_float,
            "from": detector.path.name,
        }
    )
    del quantized.metadata_props[:]
    for key, value in metadata.items():
        quantized.metadata_props.add(key=key, value=value)
    onnx.save(quantized, str(out))
    return Quantized(
        out,
        len(tensors),
        kept_float,
        frame_input,
        round(time.monotonic() - started, 1),
        round(out.stat().st_size / 1e6, 2),
    )
