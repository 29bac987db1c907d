"""An int8 detector: onnxruntime's static quantisation (QDQ, weights per channel), calibrated on frames
the simulator renders, as `yolo export int8=True` calibrates on a dataset.

The convolutions the outputs are computed from stay in float: they make the class scores (whose peaks
are compared to each other) and the box sides, and quantised they cost our model 0.013-0.022 mAP50.
The rest (every other convolution) runs in int8, and so do the ReLUs after them: quantised as an
activation onnxruntime folds into the convolution before it, a ReLU's range becomes that convolution's
output range, so no dequantise-requantise pair is left between them (15 Q/DQ nodes left after
onnxruntime's fusion against 33, 8-9% faster on machine C, mAP50-95 0.008-0.010 higher on the suites,
docs/benchmarks.md). Calibration frames come from seeds the benchmark
suites do not use, from both scenes, through the detector's own preprocessing. A model fine-tuned with
`percept train --quantization-aware` (quantization_aware.py) has learned the rounding as it was before
the ReLUs were folded (each convolution's output rounded over its range before the ReLU).
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


@dataclass
class Quantized:
    path: Path
    frames: int
    kept_float: list[str]  # the convolutions left in float
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
        kept_float = output_convolutions(onnx.load(str(prepared)))
        quantization.quantize_static(
            str(prepared),
            str(out),
            Frames(),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax,
            op_types_to_quantize=["Conv", "Relu"],
            nodes_to_exclude=kept_float,
        )
    quantized = onnx.load(str(out))
    metadata = model_metadata(detector.path)
    metadata["quantization"] = json.dumps(
        {
            "kind": "int8 static, onnxruntime QDQ, weights per channel, ReLUs folded",
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
        round(time.monotonic() - started, 1),
        round(out.stat().st_size / 1e6, 2),
    )
