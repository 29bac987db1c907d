"""The object detector core: an ONNX model, its preprocessing and its output decoder. A library:
arrays in, detections out, no sockets (the detector node wires it to topics)."""

from perception.detector.core import DetectionResult, Detector, DetectorError

__all__ = ["DetectionResult", "Detector", "DetectorError"]
