"""The object detector core: an ONNX model, its preprocessing and its output decoder. A library:
arrays in, detections out, no sockets (the detector node wires it to topics).

The names below load on first use, so `perception.detector.vocabulary` (the shipped model's classes,
which the simulator's scenes use) imports without onnxruntime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Detector", "DetectorError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from perception.detector import core

        return getattr(core, name)
    raise AttributeError(f"module 'perception.detector' has no attribute {name!r}")


if TYPE_CHECKING:
    from perception.detector.core import Detector as Detector
    from perception.detector.core import DetectorError as DetectorError
