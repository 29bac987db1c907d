"""Camera calibration files in the ROS `camera_calibration` YAML format (what `cameracalibrator` and
`camera_info_manager` write):

    image_width: 640
    image_height: 480
    camera_name: front
    camera_matrix: {rows: 3, cols: 3, data: [fx, 0, cx, 0, fy, cy, 0, 0, 1]}
    distortion_model: plumb_bob
    distortion_coefficients: {rows: 1, cols: 5, data: [k1, k2, p1, p2, k3]}
    rectification_matrix: ...      (read if present, not needed)
    projection_matrix: ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from perception.errors import PerceptError

DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")


class CalibrationError(PerceptError):
    """A calibration file that cannot be used: names the file, the key, what was expected and found."""


@dataclass(frozen=True)
class Calibration:
    width: int
    height: int
    K: np.ndarray  # 3 x 3
    D: np.ndarray  # distortion coefficients
    distortion_model: str = "plumb_bob"
    name: str = ""

    @classmethod
    def nominal(cls, width: int, height: int, horizontal_fov_deg: float = 60.0) -> Calibration:
        """Intrinsics for an uncalibrated camera: a pinhole with this field of view, centred, no distortion."""
        f = width / 2 / math.tan(math.radians(horizontal_fov_deg) / 2)
        K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
        return cls(width, height, K, np.zeros(5), "plumb_bob", "nominal")

    def scaled(self, width: int, height: int) -> Calibration:
        """The same camera at another resolution (a driver that delivers a different size than calibrated)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0] *= sx
        K[1] *= sy
        return Calibration(width, height, K, self.D, self.distortion_model, self.name)


def _matrix(doc: dict[str, Any], key: str, shape: tuple[int, int] | None, path: Path) -> np.ndarray:
    entry = doc.get(key)
    if not isinstance(entry, dict) or "data" not in entry:
        raise CalibrationError(
            f"calibration {path}: {key}: expected a mapping with rows, cols and data, found {entry!r}"
        )
    try:
        data = np.array(entry["data"], dtype=np.float64)
        rows, cols = int(entry.get("rows", 1)), int(entry.get("cols", len(data)))
    except (TypeError, ValueError):
        raise CalibrationError(
            f"calibration {path}: {key}: expected numbers, found {entry['data']!r}"
        ) from None
    if data.size != rows * cols or (shape is not None and (rows, cols) != shape):
        want = f"{shape[0]} x {shape[1]}" if shape else f"{rows} x {cols}"
        raise CalibrationError(
            f"calibration {path}: {key}: expected {want} values, found {data.size} for rows {rows}, cols {cols}"
        )
    return data.reshape(rows, cols)


def load_calibration(path: str | Path) -> Calibration:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CalibrationError(f"calibration {path}: cannot read it: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CalibrationError(f"calibration {path}: not YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise CalibrationError(
            f"calibration {path}: expected a mapping of keys (ROS camera_calibration format)"
        )
    for key in ("image_width", "image_height"):
        if not isinstance(doc.get(key), int) or doc[key] <= 0:
            raise CalibrationError(
                f"calibration {path}: {key}: expected a positive integer, found {doc.get(key)!r}"
            )
    K = _matrix(doc, "camera_matrix", (3, 3), path)
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CalibrationError(
            f"calibration {path}: camera_matrix: expected positive fx and fy, found {K[0, 0]}, {K[1, 1]}"
        )
    model = doc.get("distortion_model", "plumb_bob")
    if model not in DISTORTION_MODELS:
        raise CalibrationError(
            f"calibration {path}: distortion_model: expected one of {', '.join(DISTORTION_MODELS)}, found {model!r}"
        )
    D = (
        _matrix(doc, "distortion_coefficients", None, path).reshape(-1)
        if "distortion_coefficients" in doc
        else np.zeros(5)
    )
    return Calibration(doc["image_width"], doc["image_height"], K, D, model, str(doc.get("camera_name", "")))
