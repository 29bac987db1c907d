"""The detector node: images in (latest-only, never a backlog), detections out, stamped like the image.

Topics: `image` (rgb8, bgr8 or mono8) -> `detections`; `~/stats` (DetectorStats) once a second.
"""

from __future__ import annotations

import statistics
import time

import cv2
import numpy as np

from perception import LATEST_ONLY, Node, run
from perception.detector import Detector
from perception.detector.core import as_input_size
from perception.detector.decoders import LAYOUTS
from perception.detector.defaults import (
    DEFAULT_CONFIDENCE,
    DEFAULT_CROSS_CLASS_IOU,
    DEFAULT_IOU,
    DEFAULT_MAX_DETECTIONS,
)
from perception.errors import ParameterError
from perception.installed import SHIPPED_MODEL
from perception.msgs import Detections, DetectorStats, Image
from perception.nodes._reporting import NewCounts

# Every 8-bit encoding an Image may carry (a ZED's bgra8 arrives as rgba8: the ROS 2 bridge and bag
# convert reorder it); the detector takes grey and RGBA as they are.
TO_RGB = {"rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": None, "mono8": None}


class DetectorNode(Node):
    """Run an ONNX detector (ours or a YOLO export) on the newest image."""

    def __init__(self) -> None:
        super().__init__("detector")
        model = self.declare_parameter("model", SHIPPED_MODEL, "ONNX file", read_only=True)
        self.detector = Detector(
            model,
            provider=self.declare_parameter(
                "provider", "cpu", "cpu, cuda, tensorrt, openvino or coreml", read_only=True
            ),
            threads=self.declare_parameter("threads", 2, "onnxruntime intra-op threads", read_only=True),
            spin=self.declare_parameter(
                "spin",
                False,
                "let onnxruntime's threads busy-wait between frames too (faster alone, slower in company)",
                read_only=True,
            ),
            confidence=self.declare_parameter("confidence", DEFAULT_CONFIDENCE, "minimum score"),
            iou=self.declare_parameter("iou", DEFAULT_IOU, "NMS IoU threshold"),
            max_detections=self.declare_parameter("max_detections", DEFAULT_MAX_DETECTIONS, "per image"),
            cross_class_iou=self.declare_parameter(
                "cross_class_iou",
                DEFAULT_CROSS_CLASS_IOU,
                "boxes of different classes overlapping more than this are one object (1: per class only)",
            ),
            layout=self.declare_parameter(
                "layout",
                "auto",
                f"output layout ({', '.join(LAYOUTS)}), or auto",
                read_only=True,
            ),
            input_size=self._size("input_size", "[h, w] (or [s]: square); []: the model's"),
            small_object_zoom=self.declare_parameter(
                "small_object_zoom",
                0.0,
                "a second pass on the frame scaled up by this (above 1), for small objects; 0: none",
                read_only=True,
            ),
            small_object_rows=self._rows(
                "small_object_rows", "[top, bottom]: the image rows it covers; []: all of them"
            ),
            small_object_side=self.declare_parameter(
                "small_object_side", 24.0, "px: shorter boxes come from the small-object pass", read_only=True
            ),
            labels_file=self.declare_parameter("labels", "", "class names file (one a line)", read_only=True)
            or None,
            class_map=self.declare_parameter(
                "class_map", {}, "rename classes, or null to drop them", read_only=True
            ),
        )
        self.parameters.on_change(self._retune)
        self.model = model
        self.publisher = self.create_publisher(Detections, "detections")
        self.subscription = self.create_subscription(Image, "image", self.on_image, LATEST_ONLY)
        self.stats_publisher = self.create_publisher(DetectorStats, "~/stats")
        self.create_timer(1.0, self.publish_stats)
        self.timings: list[dict[str, float]] = []
        self.invalid = NewCounts(self.log, "detections the model gave with a NaN or infinite box or score")
        # Frames of another encoding (a depth image remapped onto this topic): left out and counted,
        # named once per encoding, not a traceback per frame.
        self.refused_images = 0
        self.refused = NewCounts(self.log, f"images of an encoding other than {', '.join(TO_RGB)}")
        self.refused_encodings: set[str] = set()
        self.window_start = time.monotonic()
        self.log.info(
            "%s: %s layout, input %s%s, %d classes",
            model,
            self.detector.layout,
            self.detector.input_hw,
            f" (and the frame scaled by {self.detector.small_object_zoom:g} for small objects, rows "
            f"{self.detector.small_object_rows or 'all'})"
            if self.detector.small_object_zoom
            else "",
            len(self.detector.class_names),
        )
        if self.detector.small_object_rows and not self.detector.small_object_zoom:
            self.log.warning(
                "small_object_rows %s are unused: they are the rows of the small-object pass, and "
                "small_object_zoom is 0 (no such pass)",
                list(self.detector.small_object_rows),
            )

    def _size(self, name: str, description: str) -> tuple[int, int] | None:
        value = self.declare_parameter(name, [], description, read_only=True)
        try:
            return as_input_size(value)
        except (ValueError, TypeError):
            raise ParameterError(f"parameter {name!r}: expected [h, w] in pixels, found {value!r}") from None

    def _rows(self, name: str, description: str) -> tuple[int, int] | None:
        value = self.declare_parameter(name, [], description, read_only=True)
        if not value:
            return None
        if len(value) != 2 or not all(isinstance(v, int) for v in value):
            raise ParameterError(f"parameter {name!r}: expected [top, bottom] image rows, found {value!r}")
        return (value[0], value[1])  # the detector checks that they make a band

    def _retune(self, name: str, value: object) -> None:
        if name in ("confidence", "iou", "max_detections", "cross_class_iou"):
            self.detector.retune(**{name: value})  # type: ignore[arg-type]  # it checks the value

    def on_image(self, msg: Image) -> None:
        if msg.encoding not in TO_RGB:
            self.refused_images += 1
            if msg.encoding not in self.refused_encodings:
                self.refused_encodings.add(msg.encoding)
                self.log.error(
                    "image encoding %r on %s cannot be detected on; expected %s (left out and counted)",
                    msg.encoding,
                    self.subscription.topic,
                    ", ".join(TO_RGB),
                )
            return
        code = TO_RGB[msg.encoding]
        image = msg.data if code is None else cv2.cvtColor(np.ascontiguousarray(msg.data), code)
        self.publisher.publish(self.detector(image, msg.header))
        self.timings.append(self.detector.timings_ms)

    def publish_stats(self) -> None:
        self.invalid.say(self.detector.invalid_detections)
        self.refused.say(self.refused_images)
        elapsed = time.monotonic() - self.window_start
        stats = self.subscription.stats

        def median(key: str) -> float:
            return statistics.median(t[key] for t in self.timings) if self.timings else 0.0

        self.stats_publisher.publish(
            DetectorStats(
                header=self.header(),
                model=self.model,
                frames_per_s=len(self.timings) / elapsed,
                frames_skipped=stats.dropped_queue + stats.dropped_gap,
                preprocess_ms=median("preprocess"),
                inference_ms=median("inference"),
                postprocess_ms=median("postprocess"),
            )
        )
        self.timings = []
        self.window_start = time.monotonic()


if __name__ == "__main__":
    run(DetectorNode)
