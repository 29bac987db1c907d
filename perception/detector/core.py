"""`Detector`: any ONNX object detector (ours, or a user's YOLO export) behind one call.

    detector = Detector("models/percept.onnx")
    result = detector(rgb)          # H x W x 3 uint8 RGB
    result.xyxy, result.scores, result.class_ids, result.class_names, result.timings_ms

The output layout is recognised from the model's real output shapes (a warm-up run at load tells them
even for dynamic axes) or forced with `layout=`; preprocessing follows the layout's family.
"""

from __future__ import annotations

import ast
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from perception.detector import decoders
from perception.detector.preprocess import letterbox
from perception.errors import PerceptError

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


class DetectorError(PerceptError):
    """A model that cannot be used: it names the file, what was found and what is supported."""


@dataclass
class DetectionResult:
    xyxy: np.ndarray  # N x 4 float32, original-image pixels
    scores: np.ndarray  # N float32
    class_ids: np.ndarray  # N int64 (after the class map)
    class_names: list[str]
    timings_ms: dict[str, float] = field(default_factory=dict)  # preprocess, inference, postprocess

    def __len__(self) -> int:
        return len(self.xyxy)


class Detector:
    def __init__(
        self,
        model: str | Path,
        *,
        provider: str = "cpu",
        threads: int = 2,
        spin: bool = False,
        confidence: float = 0.25,
        iou: float = 0.45,
        max_detections: int = 300,
        layout: str = "auto",
        input_size: tuple[int, int] | None = None,
        class_names: list[str] | None = None,
        labels_file: str | Path | None = None,
        class_map: dict[str, str | None] | None = None,
    ) -> None:
        self.path = Path(model)
        self.confidence, self.iou, self.max_detections = confidence, iou, max_detections
        self.session = self._load(provider, threads, spin)
        self.input_name, self.input_hw = self._check_input(input_size)
        self.layout = self._choose_layout(layout)
        names = class_names or (_read_labels(labels_file) if labels_file else None) or self._metadata_names()
        self.class_map = class_map or {}
        self.class_names = names
        self._yolox = self.layout == "yolox"

    # -- loading ---------------------------------------------------------------------------------------

    def _load(self, provider: str, threads: int, spin: bool) -> ort.InferenceSession:
        if provider not in PROVIDERS:
            raise DetectorError(f"provider {provider!r}: expected one of {', '.join(PROVIDERS)}")
        available = ort.get_available_providers()
        if PROVIDERS[provider] not in available:
            raise DetectorError(
                f"provider {provider!r} ({PROVIDERS[provider]}) is not in this onnxruntime build; "
                f"available: {', '.join(available)}"
            )
        if not self.path.is_file():
            raise DetectorError(f"model {self.path}: no such file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # onnxruntime's workers busy-wait between runs by default. On a few cores shared with other
        # nodes (or other models, in a benchmark) that steals their time: measured here, an interleaved
        # YOLOv8n took 60 ms instead of 27 ms. Never spinning is worse for a camera's frames, which
        # come with idle gaps: each operator then wakes a sleeping worker, and on a 2-core AVX2 machine
        # a frame every 100 ms took 36 ms instead of 19. So the workers spin while a run lasts and
        # sleep as soon as it ends (22 ms, and the same CPU time as never spinning), unless `spin`.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "0" if spin else "1")
        providers = [PROVIDERS[provider]] + (["CPUExecutionProvider"] if provider != "cpu" else [])
        try:
            return ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises several types for a bad file
            raise DetectorError(f"model {self.path}: onnxruntime cannot load it: {exc}") from None

    def _check_input(self, input_size: tuple[int, int] | None) -> tuple[str, tuple[int, int]]:
        inputs = self.session.get_inputs()
        shape = list(inputs[0].shape)
        if len(inputs) != 1 or len(shape) != 4 or shape[1] not in (3, "3"):
            found = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise DetectorError(
                f"model {self.path}: expected one image input of shape 1 x 3 x H x W, found {found}"
            )
        static = [d if isinstance(d, int) else None for d in shape[2:]]
        if input_size is None and None in static:
            # Dynamic axes: the size the model was made for (Ultralytics and our exports both write
            # `imgsz` in the metadata), else Ultralytics' default.
            input_size = self._metadata_size() or (640, 640)
        elif input_size is None:
            input_size = (int(shape[2]), int(shape[3]))
        elif None not in static and tuple(static) != tuple(input_size):
            raise DetectorError(f"model {self.path}: its input is fixed at {static}, not {list(input_size)}")
        return inputs[0].name, (int(input_size[0]), int(input_size[1]))

    def _choose_layout(self, layout: str) -> str:
        blank = np.zeros((1, 3, *self.input_hw), np.float32)
        outputs = self.session.run(None, {self.input_name: blank})  # also warms the session up
        shapes = [list(o.shape) for o in outputs]
        if layout == "auto":
            found = decoders.choose_layout(shapes[0], self.input_hw)
            if found is None:
                raise DetectorError(
                    f"model {self.path}: no decoder fits its output shapes {shapes} for input "
                    f"{list(self.input_hw)}; supported: yolov8 1x(4+nc)xN, yolov5 1xNx(5+nc) with "
                    f"N={3 * decoders.cells(self.input_hw)}, yolox 1xNx(5+nc) with N={decoders.cells(self.input_hw)}, "
                    "end2end 1xKx6 (pass layout=... to force one)"
                )
            return found
        if layout not in decoders.LAYOUTS:
            raise DetectorError(f"layout {layout!r}: expected auto or one of {', '.join(decoders.LAYOUTS)}")
        return layout

    def _metadata_size(self) -> tuple[int, int] | None:
        text = self.session.get_modelmeta().custom_metadata_map.get("imgsz")
        try:
            value = ast.literal_eval(text) if text else None  # "[480, 640]" (h, w) or "640"
            return as_input_size(value)
        except (ValueError, SyntaxError, TypeError, IndexError):
            raise DetectorError(
                f"model {self.path}: its metadata imgsz {text!r} is not a size (expected h or [h, w])"
            ) from None

    def _metadata_names(self) -> list[str]:
        meta = self.session.get_modelmeta().custom_metadata_map
        text = meta.get("names")
        if not text:
            return []
        try:
            names = json.loads(text)
        except json.JSONDecodeError:
            names = ast.literal_eval(text)  # Ultralytics writes str(dict): "{0: 'person', 1: ...}"
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names, key=int)]
        return [str(n) for n in names]

    # -- running ---------------------------------------------------------------------------------------

    def __call__(self, image: np.ndarray) -> DetectionResult:
        """Detect objects in an RGB uint8 image (H x W x 3)."""
        start = time.perf_counter()
        tensor, transform = letterbox(
            image, self.input_hw, centre=not self._yolox, bgr=self._yolox, unit_scale=not self._yolox
        )
        preprocessed = time.perf_counter()
        output = self.session.run(None, {self.input_name: tensor})[0]
        inferred = time.perf_counter()
        candidates = decoders.decode(self.layout, output, self.input_hw, self.confidence)
        if self.layout != "end2end":
            candidates = decoders.nms(candidates, self.iou, self.max_detections)
        boxes, scores, class_ids = candidates
        names = [self.class_names[i] if 0 <= i < len(self.class_names) else str(i) for i in class_ids]
        if self.class_map:
            mapped = [self.class_map.get(n, n) for n in names]
            keep = np.array([bool(m) for m in mapped], bool)
            boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
            names = [m for m in mapped if m]
        result = DetectionResult(transform.to_image(boxes), scores, class_ids.astype(np.int64), names)
        done = time.perf_counter()
        result.timings_ms = {
            "preprocess": (preprocessed - start) * 1000,
            "inference": (inferred - preprocessed) * 1000,
            "postprocess": (done - inferred) * 1000,
        }
        return result


def _read_labels(path: str | Path) -> list[str]:
    try:
        return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise DetectorError(f"labels file {path}: cannot read: {exc.strerror}") from None


def as_input_size(value: Any) -> tuple[int, int] | None:
    """`640` or `[480, 640]` (h, w) from a parameter; 0 or empty: the model's own."""
    if not value:
        return None
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))
