"""`Detector`: any ONNX object detector (ours, or a user's YOLO export) behind one call.

    detector = Detector("models/percept.onnx")
    detections = detector(rgb)      # H x W x 3 uint8 RGB -> perception.msgs.Detections
    detections.xyxy, detections.scores, detections.class_ids, detections.class_names
    detector.timings_ms             # the last call's preprocess, inference and postprocess times

The output layout is recognised from the model's real output shapes (a warm-up run at load tells them
even for dynamic axes) or forced with `layout=`; preprocessing follows the layout's family. A model of
free input size can also run a second pass for small objects (`small_object_zoom=`, small_objects.py).
"""

from __future__ import annotations

import ast
import json
import math
import numbers
import operator
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from perception.detector import decoders
from perception.detector.defaults import (
    DEFAULT_CONFIDENCE,
    DEFAULT_CROSS_CLASS_IOU,
    DEFAULT_IOU,
    DEFAULT_MAX_DETECTIONS,
    small_object_zoom_fits,
)
from perception.detector.preprocess import fit, letterbox
from perception.detector.small_objects import merge_by_size
from perception.errors import PerceptError, did_you_mean
from perception.installed import MODELS_DIR, find_model
from perception.msgs import Detections, Header

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


class DetectorError(PerceptError):
    """A model or a setting that cannot be used: it names the file or the setting, what was expected (or
    is supported) and what was found."""


class Detector:
    """An ONNX object detector: `detector(image)` gives the objects in an image, as boxes in its pixels.

    The image is an RGB uint8 numpy array, H x W x 3, of any size (it is letterboxed into the model's
    input); a grey H x W or H x W x 1 and an RGBA H x W x 4 uint8 image are converted to RGB. BGR is
    not told apart: convert it first (cv2.COLOR_BGR2RGB), or the model sees other colours.

    The model, then settings by keyword; each is checked here, and one out of range raises
    DetectorError naming it:

    - `model`: an ONNX file. A relative path that is not below the working directory is taken, by
      its file name, from the models that ship inside the package (`percept.onnx`).
    - `provider`: onnxruntime's execution provider, one of cpu, cuda, tensorrt, openvino, coreml
      (present in the installed onnxruntime); any but cpu falls back to the CPU for what it lacks.
    - `threads`: onnxruntime's intra-op threads, 0 or more (0: onnxruntime's default, one per core).
    - `spin`: let onnxruntime's threads busy-wait between runs too (by default they stop at a run's
      end: faster in company, slower alone).
    - `confidence`: a detection needs a score above this to be reported, 0 to 1.
    - `iou`: boxes of one class overlapping more than this (intersection over union, 0 to 1) are one
      object (non-maximum suppression); unused by models that suppress inside (end2end, rtdetr).
    - `max_detections`: the most detections per image, a whole number of at least 1.
    - `cross_class_iou`: boxes of different classes overlapping more than this (0 to 1) are one object
      reported twice: the best class is kept, the others demoted (decoders.suppress_across_classes);
      1 keeps every class's boxes.
    - `layout`: the model's output layout, "auto" (recognised from its output) or one of
      decoders.LAYOUTS; a forced one must fit the model's output too.
    - `input_size`: the network input as (height, width) in pixels, for a model of dynamic input size;
      None: the size its metadata names (`imgsz`), else 640 x 640. A model of fixed input runs at its
      own, and refuses another.
    - `small_object_zoom`: 0 (none), or above 1: a second pass on the frame scaled up by this, which
      answers for boxes whose short side is under `small_object_side` pixels (small_objects.py); it
      needs a model of dynamic input size.
    - `small_object_rows`: (top, bottom): the image rows, top included and bottom not, that the second
      pass covers (clipped to the frame); None: all of them.
    - `small_object_side`: in image pixels, above 0.
    - `class_names`, or `labels_file` (a text file, one name a line): the names by class id, one per
      class of the model; neither: the names in the model's metadata (Ultralytics writes them), refused
      when they are not one per class of its output. A class without a name is called by its id ("7").
    - `class_map`: {model's class name: new name, or None to drop the class}, so that a COCO model gives
      our names; each key must be one of the model's class names.

    A call returns a perception.msgs.Detections: `xyxy` (N x 4 float32, image pixels, clipped to the
    image), `scores`, `class_ids` (the model's), `class_names` (after `class_map`), best first, stamped
    with the header passed (the frame's; an empty Header if none). `timings_ms` then holds that call's
    preprocess, inference and postprocess milliseconds.

    Once made, it tells `layout`, `input_hw` (height, width), `dynamic_size` (whether any input size
    runs) and `class_names`; `invalid_detections` counts the model's output rows left out for a NaN or
    infinite box or score.
    """

    confidence: float
    iou: float
    max_detections: int
    cross_class_iou: float

    def __init__(
        self,
        model: str | Path,
        *,
        provider: str = "cpu",
        threads: int = 2,
        spin: bool = False,
        confidence: float = DEFAULT_CONFIDENCE,
        iou: float = DEFAULT_IOU,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
        cross_class_iou: float = DEFAULT_CROSS_CLASS_IOU,
        layout: str = "auto",
        input_size: tuple[int, int] | None = None,
        small_object_zoom: float = 0.0,
        small_object_rows: tuple[int, int] | None = None,
        small_object_side: float = 24.0,
        class_names: list[str] | None = None,
        labels_file: str | Path | None = None,
        class_map: dict[str, str | None] | None = None,
    ) -> None:
        self.path = find_model(model)
        self.retune(
            confidence=confidence, iou=iou, max_detections=max_detections, cross_class_iou=cross_class_iou
        )
        _check_setting(
            "threads", threads, "0 or more (0: onnxruntime's default)", lambda v: v >= 0, whole=True
        )
        small_object_rows = small_object_rows or None  # [] or (): all rows, as the node's parameter says
        _check_small_object_pass(small_object_zoom, small_object_rows, small_object_side)
        self.timings_ms: dict[str, float] = {}  # the last call's preprocess, inference, postprocess
        self.session = self._load(provider, threads, spin)
        self.input_name, self.input_hw = self._check_input(input_size)
        # A size asked for that the model cannot take (too small for its last layers) is refused naming
        # input_size: onnxruntime's own error names an operator deep inside the model.
        self._size_asked = f"input_size {list(self.input_hw)}" if input_size is not None else ""
        shape = self.session.get_inputs()[0].shape
        self.dynamic_size = all(isinstance(shape[a], str) for a in self._hw_axes)  # any input size runs
        if any(isinstance(d, str) for d in shape):
            # Fixed where they were free, onnxruntime plans the graph as for a fixed input: 7% faster.
            self.session = self._load(
                provider, threads, spin, self._fixed(shape, self.input_hw), self._size_asked
            )
        self._check_task()
        self.layout, output_shape = self._choose_layout(layout)
        self._first_output_checked = False  # a forced rtdetr's boxes: a blank image may show none
        # A second pass on the frame (or a band of its rows) scaled up, for small objects: see
        # small_objects.py. Its input depends on the frame's size: ready for the model's own, made at
        # the first frame of another.
        self.small_object_zoom, self.small_object_rows = small_object_zoom, small_object_rows
        self.small_object_side = small_object_side
        if small_object_zoom and not self.dynamic_size:
            raise DetectorError(
                f"model {self.path}: a small-object pass (zoom {small_object_zoom:g}) needs an input of "
                f"dynamic size; this one is fixed at {list(self.input_hw)} (export it with dynamic axes: "
                "percept train --dynamic, Ultralytics dynamic=True)"
            )
        self._session_options = (provider, threads, spin)
        self._input_shape = shape
        self._small_object_sessions: dict[tuple[int, int], ort.InferenceSession] = {}
        if small_object_zoom:  # ready for frames of the model's own size, the usual case
            self._small_object_session(self._small_object_band(*self.input_hw)[2])
        self.class_names = self._class_names(class_names, labels_file, output_shape)
        self.class_map = self._checked_class_map(class_map or {})
        self._yolox = self.layout in ("yolox", "yolox_decoded")
        self._stretch = self.layout == "rtdetr"  # Ultralytics' RT-DETR resizes without padding
        # Rows of the model's output with a NaN or infinite box or score, left out: a message cannot hold
        # them, so one such row cost its frame's every detection.
        self.invalid_detections = 0

    # -- loading ---------------------------------------------------------------------------------------

    def _load(
        self,
        provider: str,
        threads: int,
        spin: bool,
        fixed: dict[str, int] | None = None,
        size_asked: str = "",
    ) -> ort.InferenceSession:
        """An onnxruntime session of the model, its free input dimensions set to `fixed`: the size the
        user asked for (`size_asked`: the setting, named in the error) where one was."""
        if provider not in PROVIDERS:
            raise DetectorError(f"provider {provider!r}: expected one of {', '.join(PROVIDERS)}")
        available = ort.get_available_providers()
        if PROVIDERS[provider] not in available:
            raise DetectorError(
                f"provider {provider!r} ({PROVIDERS[provider]}) is not in this onnxruntime build; "
                f"available: {', '.join(available)}"
            )
        if not self.path.is_file():
            shipped = self.path.parent in (Path("."), Path("models"))  # where find_model looks too
            where = f" (looked in {Path.cwd()} and {MODELS_DIR})" if shipped else ""
            raise DetectorError(f"model {self.path}: no such file{where}; give model:=PATH")
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
        for name, value in (fixed or {}).items():
            options.add_free_dimension_override_by_name(name, value)
        providers = [PROVIDERS[provider]] + (["CPUExecutionProvider"] if provider != "cpu" else [])
        try:
            return ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises several types for a bad file
            if size_asked:
                raise DetectorError(f"{self._size_cannot_run()}: {exc}") from None
            raise DetectorError(f"model {self.path}: onnxruntime cannot load it: {exc}") from None

    def _size_cannot_run(self) -> str:
        return (
            f"{self._size_asked}: model {self.path} cannot run at this size (too small, or not a "
            "multiple of its stride?)"
        )

    def _check_input(self, input_size: tuple[int, int] | None) -> tuple[str, tuple[int, int]]:
        inputs = self.session.get_inputs()
        shape = list(inputs[0].shape)
        # Our int8 export takes the frame as it is (1 x H x W x 3 uint8, RGB 0-255): the first thing
        # its graph did to a 0-1 tensor was round it back to those bytes (quantize.take_frame_input).
        self._frame_input = len(shape) == 4 and inputs[0].type == "tensor(uint8)" and shape[3] in (3, "3")
        self._hw_axes = (1, 2) if self._frame_input else (2, 3)
        if len(inputs) != 1 or len(shape) != 4 or (shape[1] not in (3, "3") and not self._frame_input):
            found = ", ".join(f"{i.name} {i.shape} {i.type}" for i in inputs)
            raise DetectorError(
                f"model {self.path}: expected one image input of shape 1 x 3 x H x W (float) or "
                f"1 x H x W x 3 (uint8), found {found}"
            )
        if isinstance(shape[0], int) and shape[0] != 1:
            raise DetectorError(
                f"model {self.path}: its input is fixed at a batch of {shape[0]}; expected 1 or a dynamic "
                "batch (export it again with batch=1 or dynamic=True)"
            )
        # An fp16 export (Ultralytics' half=True) takes a float16 tensor: the letterbox's is converted.
        self._input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        static = [shape[a] if isinstance(shape[a], int) else None for a in self._hw_axes]
        if input_size is not None:
            input_size = _checked_input_size(input_size)
        if input_size is None and None in static:
            # Dynamic axes: the size the model was made for (Ultralytics and our exports both write
            # `imgsz` in the metadata), else Ultralytics' default.
            input_size = self._metadata_size() or (640, 640)
        elif input_size is None:
            input_size = (int(shape[self._hw_axes[0]]), int(shape[self._hw_axes[1]]))
        elif None not in static and tuple(static) != tuple(input_size):
            raise DetectorError(
                f"input_size {list(input_size)}: model {self.path} takes a fixed input of {static}; "
                "give that size, or none"
            )
        return inputs[0].name, (int(input_size[0]), int(input_size[1]))

    def _choose_layout(self, layout: str) -> tuple[str, tuple[int, ...]]:
        """The output layout, recognised or forced (and then checked), and the output's shape."""
        if layout != "auto" and layout not in decoders.LAYOUTS:
            raise DetectorError(f"layout {layout!r}: expected auto or one of {', '.join(decoders.LAYOUTS)}")
        height, width = self.input_hw
        if self._frame_input:
            blank = np.zeros((1, height, width, 3), np.uint8)
        else:
            blank = np.zeros((1, 3, height, width), self._input_dtype)
        try:
            outputs = self.session.run(None, {self.input_name: blank})  # also warms the session up
        except Exception as exc:  # onnxruntime's several types, as at load
            if self._size_asked:
                raise DetectorError(f"{self._size_cannot_run()}: {exc}") from None
            raise DetectorError(
                f"model {self.path}: onnxruntime cannot run it at its input size {list(self.input_hw)}: {exc}"
            ) from None
        if layout == "auto":
            found = decoders.choose_layout(outputs[0], self.input_hw)
            if found is None:
                raise self._no_decoder_fits(outputs, "no decoder fits", "pass layout=... to force one")
            return found, outputs[0].shape
        if not decoders.fits(layout, outputs[0], self.input_hw):
            raise self._no_decoder_fits(outputs, f"layout {layout!r} does not fit", "layout=auto finds one")
        return layout, outputs[0].shape

    def _no_decoder_fits(self, outputs: Sequence[np.ndarray], what: str, hint: str) -> DetectorError:
        """The error for an output that no decoder fits, or not the forced one (whose decoder would read
        it as something else: YOLOv8's columns from end2end's rows gave scores of 640)."""
        shapes = [list(o.shape) for o in outputs]
        return DetectorError(
            f"model {self.path}: {what} its output shapes {shapes} for input {list(self.input_hw)}; "
            f"supported: {decoders.supported(self.input_hw)} ({hint})"
        )

    def _metadata_size(self) -> tuple[int, int] | None:
        text = self.session.get_modelmeta().custom_metadata_map.get("imgsz")
        try:
            value = ast.literal_eval(text) if text else None  # "[480, 640]" (h, w) or "640"
            size = as_input_size(value)
            if size and min(size) < 1:
                raise ValueError(size)
            return size
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
            try:
                names = ast.literal_eval(text)  # Ultralytics writes str(dict): "{0: 'person', 1: ...}"
            except (ValueError, SyntaxError):
                raise DetectorError(
                    f"model {self.path}: its metadata names {text[:80]!r} are not a list or a map of class "
                    "names; give labels:=file.txt"
                ) from None
        if isinstance(names, dict):
            # Ids with gaps keep their own names (a model trained on a subset of COCO's ids).
            by_id = {int(k): str(v) for k, v in names.items()}
            return [by_id.get(i, str(i)) for i in range(max(by_id, default=-1) + 1)]
        return [str(n) for n in names]

    def _class_names(
        self,
        given: Sequence[str] | None,
        labels_file: str | Path | None,
        output_shape: tuple[int, ...],
    ) -> list[str]:
        """The names by class id: given, read from a labels file or from the model's metadata; one per
        class where the model's output (or metadata) tells how many it has. A list of another length
        named some classes wrongly and the others by their ids, silently (['6', '6', 'a', '3'])."""
        if isinstance(given, str):
            raise DetectorError(f"class_names: expected a list of names, one per class, found {given!r}")
        if given is not None and len(given) and labels_file:
            raise DetectorError(
                f"class_names and labels_file {labels_file}: expected one of them, found both"
            )
        metadata = self._metadata_names()
        count = decoders.class_count(self.layout, output_shape)
        source = f"its output is {' x '.join(map(str, output_shape))}"
        if count is None and metadata:  # end2end's rows hold a class id: only the metadata tells
            count, source = len(metadata), "its metadata names that many"
        if given is not None and len(given):
            names, what = [str(name) for name in given], "class_names"
        elif labels_file:
            names, what = _read_labels(labels_file), f"labels file {labels_file}"
        else:
            names, what = metadata, ""
        if what and count is not None and len(names) != count:
            raise DetectorError(
                f"{what}: expected {count} names, one per class of model {self.path} in id order "
                f"({source}), found {len(names)}"
            )
        if not what and names and count is not None and len(names) != count:
            # Metadata left from another model (an output layer cut or grown after export): its names
            # would be read by id and miss the classes they were written for.
            raise DetectorError(
                f"model {self.path}: expected its metadata to name {count} classes, one per class "
                f"({source}), found {len(names)}; give class_names or labels_file naming them in id order"
            )
        return names + [str(i) for i in range(len(names), count or 0)]  # as the detections call them

    def _checked_class_map(self, class_map: dict[str, str | None]) -> dict[str, str | None]:
        """The map, once each key is one of the model's class names (a mistyped one renamed nothing,
        silently) and each value a name or None."""
        for key, value in class_map.items():
            if not isinstance(key, str):
                raise DetectorError(f"class_map: expected class names as keys, found {key!r}")
            if key not in self.class_names:
                # Classes no name was given for are called by their ids ("0", "1", ...): list those as
                # what they are, with the way to name them.
                named = any(name != str(i) for i, name in enumerate(self.class_names))
                classes = (
                    ", ".join(self.class_names)
                    if named
                    else f"{len(self.class_names)} without names in its metadata, called by their ids "
                    "(give class_names or labels_file)"
                )
                raise DetectorError(
                    f"class_map: {key!r} is not a class of model {self.path}; its classes: {classes}"
                    f"{did_you_mean(key, self.class_names)}"
                )
            if value is not None and not isinstance(value, str):
                raise DetectorError(
                    f"class_map: {key!r} maps to {value!r}; expected a class name, or None to drop it"
                )
        return dict(class_map)

    def _check_task(self) -> None:
        """Ultralytics writes the model's task: a pose, segmentation or oriented-box model has extra
        output columns that a detection decoder would read as class scores, silently."""
        task = self.session.get_modelmeta().custom_metadata_map.get("task", "detect")
        if task != "detect":
            raise DetectorError(
                f"model {self.path}: an Ultralytics {task!r} model; expected a detection model (task "
                "'detect'): its extra outputs would be read as class scores"
            )

    # -- running ---------------------------------------------------------------------------------------

    def retune(
        self,
        *,
        confidence: float | None = None,
        iou: float | None = None,
        max_detections: int | None = None,
        cross_class_iou: float | None = None,
    ) -> None:
        """Change the thresholds (a running node's parameters); None keeps one. A value out of range
        raises DetectorError and changes none of them."""
        for name, value, expected in (
            ("confidence", confidence, "a score from 0 to 1"),
            ("iou", iou, "an overlap from 0 to 1"),
            ("cross_class_iou", cross_class_iou, "an overlap from 0 to 1 (1: per class only)"),
        ):
            if value is not None:
                _check_setting(name, value, expected, lambda v: 0 <= v <= 1)
        if max_detections is not None:
            _check_setting("max_detections", max_detections, "at least 1", lambda v: v >= 1, whole=True)
        self.confidence = self.confidence if confidence is None else confidence
        self.iou = self.iou if iou is None else iou
        self.max_detections = self.max_detections if max_detections is None else max_detections
        self.cross_class_iou = self.cross_class_iou if cross_class_iou is None else cross_class_iou

    def __call__(self, image: np.ndarray, header: Header | None = None) -> Detections:
        """Detect objects in an RGB uint8 image (H x W x 3; grey H x W or H x W x 1 and RGBA H x W x 4
        are converted).

        Returns the message the detector node publishes (see the class's docstring), stamped with
        `header` (the frame's); the stage times of this call are in `timings_ms` afterwards."""
        timings = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
        # Anything else went out as the message's header, as given (an int among them).
        if header is not None and not isinstance(header, Header):
            raise TypeError(
                f"header: expected a perception.msgs.Header (the frame's) or None, found {type(header).__name__}"
            )
        if not isinstance(image, np.ndarray):
            raise ValueError(f"expected an RGB uint8 image as a numpy array, found {type(image).__name__}")
        if image.size == 0:  # a camera's empty frame: no scale fits it (a ZeroDivisionError)
            raise ValueError(f"expected an image of at least 1 x 1 pixels, found shape {image.shape}")
        if image.dtype == np.uint8 and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 4))):
            code = cv2.COLOR_RGBA2RGB if image.ndim == 3 and image.shape[2] == 4 else cv2.COLOR_GRAY2RGB
            image = cv2.cvtColor(image, code)
        boxes, scores, class_ids = self._detect(self.session, image, self.input_hw, timings)
        if self.small_object_zoom:
            small, rows = self._detect_small_objects(image, timings)
            start = time.perf_counter()
            boxes, scores, class_ids = merge_by_size(
                (boxes, scores, class_ids), small, self.small_object_side, rows
            )
            boxes, scores, class_ids = (a[: self.max_detections] for a in (boxes, scores, class_ids))
            timings["postprocess"] += (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        boxes, scores, class_ids = decoders.suppress_across_classes(
            (boxes, scores, class_ids), self.cross_class_iou, self.confidence
        )
        names = [self.class_names[i] if 0 <= i < len(self.class_names) else str(i) for i in class_ids]
        if self.class_map:
            mapped = [self.class_map.get(n, n) for n in names]
            keep = np.array([bool(m) for m in mapped], bool)
            boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
            names = [m for m in mapped if m]
        result = Detections(
            header=header if header is not None else Header(),
            xyxy=boxes,
            scores=scores,
            class_ids=class_ids,
            class_names=names,
        )
        timings["postprocess"] += (time.perf_counter() - start) * 1000
        self.timings_ms = timings
        return result

    def _detect_small_objects(
        self, image: np.ndarray, timings: dict[str, float]
    ) -> tuple[decoders.Candidates, tuple[float, float]]:
        """The zoomed pass over the band of rows: its boxes in image pixels, and the rows it answers for
        (a band's inner edges one pixel in: a box touching one was cut by it)."""
        height, width = image.shape[:2]
        top, bottom, input_hw = self._small_object_band(height, width)
        session = self._small_object_session(input_hw)
        boxes, scores, class_ids = self._detect(session, image[top:bottom], input_hw, timings)
        boxes[:, [1, 3]] += top
        rows = (top + 1 if top > 0 else -math.inf, bottom - 1 if bottom < height else math.inf)
        return (boxes, scores, class_ids), rows

    def _small_object_band(self, height: int, width: int) -> tuple[int, int, tuple[int, int]]:
        """The rows of a frame this size the zoomed pass covers, and its input size."""
        top, bottom = self.small_object_rows or (0, height)
        top, bottom = max(0, min(top, height - 1)), max(1, min(bottom, height))
        zoom = self.small_object_zoom
        return top, bottom, (_multiple_of_32(zoom * (bottom - top)), _multiple_of_32(zoom * width))

    def _fixed(self, shape: list[Any], input_hw: tuple[int, int]) -> dict[str, int]:
        """Values for an input's free dimensions (Ultralytics names them batch, height, width)."""
        sizes = {shape[0]: 1, shape[self._hw_axes[0]]: input_hw[0], shape[self._hw_axes[1]]: input_hw[1]}
        return {name: value for name, value in sizes.items() if isinstance(name, str)}

    def _small_object_session(self, input_hw: tuple[int, int]) -> ort.InferenceSession:
        session = self._small_object_sessions.get(input_hw)
        if session is None:
            session = self._load(*self._session_options, self._fixed(self._input_shape, input_hw))
            self._small_object_sessions[input_hw] = session
        return session

    def preprocess(
        self, image: np.ndarray, input_hw: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, Any]:
        """The model's input tensor for an RGB image (its family's letterbox) and the transform back to
        the image's pixels; what calibrating a quantised model feeds it too."""
        if self._frame_input:  # the letterboxed frame itself: its graph scales and transposes it
            canvas, transform = fit(
                image, input_hw or self.input_hw, centre=not self._yolox, stretch=self._stretch
            )
            return np.ascontiguousarray(canvas[np.newaxis]), transform  # a no-op for a whole frame
        tensor, transform = letterbox(
            image,
            input_hw or self.input_hw,
            centre=not self._yolox,
            stretch=self._stretch,
            bgr=self._yolox,
            unit_scale=not self._yolox,
        )
        if self._input_dtype is not np.float32:
            tensor = tensor.astype(self._input_dtype)
        return tensor, transform

    def _detect(
        self,
        session: ort.InferenceSession,
        image: np.ndarray,
        input_hw: tuple[int, int],
        timings: dict[str, float],
    ) -> decoders.Candidates:
        """One pass at `input_hw`: boxes in image pixels, scores, class ids; stage times added up."""
        start = time.perf_counter()
        tensor, transform = self.preprocess(image, input_hw)
        preprocessed = time.perf_counter()
        outputs = session.run(None, {self.input_name: tensor})
        output = outputs[0].astype(np.float32, copy=False)
        inferred = time.perf_counter()
        if not self._first_output_checked:
            # At load a blank image showed the output's shape; a forced rtdetr's boxes may show only now
            # (an end2end model that finds nothing on a blank image gives rows of 0, fractions alike).
            if not decoders.fits(self.layout, output, input_hw):
                raise self._no_decoder_fits(outputs, f"layout {self.layout!r} does not fit", "layout=auto")
            # Checked for good once there were boxes to see: a frame that finds nothing shows none.
            self._first_output_checked = self.layout != "rtdetr" or decoders.shows_boxes(output)
        boxes, scores, class_ids = decoders.decode(self.layout, output, input_hw, self.confidence)
        finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
        if not finite.all():
            self.invalid_detections += int((~finite).sum())
            boxes, scores, class_ids = boxes[finite], scores[finite], class_ids[finite]
        if self.layout not in decoders.NMS_INSIDE:
            boxes, scores, class_ids = decoders.nms((boxes, scores, class_ids), self.iou, self.max_detections)
        else:  # NMS ran inside the model (or it needs none); its best come first
            boxes, scores, class_ids = (a[: self.max_detections] for a in (boxes, scores, class_ids))
        boxes = transform.to_image(boxes)
        done = time.perf_counter()
        timings["preprocess"] += (preprocessed - start) * 1000
        timings["inference"] += (inferred - preprocessed) * 1000
        timings["postprocess"] += (done - inferred) * 1000
        return boxes, scores, class_ids


def _check_setting(
    name: str, value: Any, expected: str, valid: Callable[[Any], bool], *, whole: bool = False
) -> None:
    """Refuse a numeric setting that is not a number (a whole one with `whole`; a bool is neither) or
    that `valid` rejects (NaN fails every comparison)."""
    kind = numbers.Integral if whole else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not valid(value):
        raise DetectorError(
            f"{name}: expected {'a whole number, ' if whole else ''}{expected}, found {value!r}"
        )


def _check_small_object_pass(zoom: Any, rows: Any, side: Any) -> None:
    """The second pass's settings (defaults.small_object_zoom_fits: why a zoom is above 1)."""
    _check_setting(
        "small_object_zoom",
        zoom,
        "0 (no second pass) or above 1 (the frame scaled up)",
        small_object_zoom_fits,
    )
    band = _whole_pair(rows) if rows is not None else None
    if rows is not None and not (band and 0 <= band[0] < band[1]):
        raise DetectorError(
            f"small_object_rows: expected image rows (top, bottom), 0 <= top < bottom, found {rows!r}"
        )
    _check_setting("small_object_side", side, "a length in pixels above 0", lambda v: 0 < v < math.inf)


def _checked_input_size(value: Any) -> tuple[int, int]:
    """input_size as (height, width), once both are whole numbers of pixels, at least 1."""
    size = _whole_pair(value)
    if size is None or min(size) < 1:
        raise DetectorError(
            f"input_size: expected (height, width) in pixels, whole numbers of at least 1, found {value!r}"
        )
    return size


def _whole_pair(value: Any) -> tuple[int, int] | None:
    """Two whole numbers (numpy's too; a bool is none), or None."""
    try:
        first, second = value
        if isinstance(first, bool) or isinstance(second, bool):
            return None
        return operator.index(first), operator.index(second)
    except (TypeError, ValueError):
        return None


def _multiple_of_32(pixels: float) -> int:
    return max(32, math.ceil(pixels / 32) * 32)


def _read_labels(path: str | Path) -> list[str]:
    try:
        return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise DetectorError(f"labels file {path}: cannot read: {exc.strerror}") from None


def as_input_size(value: Any) -> tuple[int, int] | None:
    """`640`, `[640]` or `[480, 640]` (h, w) from a parameter or metadata; 0 or empty: none."""
    if not value:
        return None
    if isinstance(value, int):
        return (value, value)
    if len(value) not in (1, 2):
        raise ValueError(f"expected h or [h, w], found {value!r}")
    return (int(value[0]), int(value[-1]))
