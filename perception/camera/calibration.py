"""Camera calibration files: the ROS `camera_calibration` YAML format (what `cameracalibrator` and
`camera_info_manager` write), and also OpenCV's FileStorage YAML (what its calibration sample and
`cv2.FileStorage` write: the same key names, `%YAML:1.0` and `!!opencv-matrix`) and a Kalibr camchain
of one pinhole camera (`cam0: {intrinsics, distortion_model, distortion_coeffs, resolution}`). The ROS
layout:

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
# How many coefficients each model takes (ROS's plumb_bob is OpenCV's k1, k2, p1, p2[, k3]).
DISTORTION_SIZES = {"plumb_bob": (4, 5), "rational_polynomial": (8,), "equidistant": (4,)}
KALIBR_MODELS = {"radtan": "plumb_bob", "equidistant": "equidistant"}
# Two sizes of one camera whose sides scale by factors this far apart are different aspect ratios:
# another sensor crop, not a binned mode of the calibrated one.
ASPECT_TOLERANCE = 0.01


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
    path: str = ""  # the file it came from ("" for nominal intrinsics)

    @classmethod
    def nominal(cls, width: int, height: int, horizontal_fov_deg: float = 60.0) -> Calibration:
        """Intrinsics for an uncalibrated camera: a pinhole with this field of view, centred, no distortion."""
        f = width / 2 / math.tan(math.radians(horizontal_fov_deg) / 2)
        K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
        return cls(width, height, K, np.zeros(5), "plumb_bob", "nominal")

    def scaled(self, width: int, height: int) -> Calibration:
        """The same camera at another resolution of the same aspect ratio (a binned mode: a driver that
        delivers a different size than calibrated). Another aspect ratio is another crop of the sensor,
        whose intrinsics no scaling gives: refused."""
        sx, sy = width / self.width, height / self.height
        if abs(sx - sy) > ASPECT_TOLERANCE * max(sx, sy):
            raise CalibrationError(
                f"calibration {self.path or self.name} is for {self.width}x{self.height}, the source delivers "
                f"{width}x{height}, another aspect ratio (another crop of the sensor, which no scaling "
                "fits): calibrate this mode, or ask the source for the calibrated size (width:=, height:=)"
            )
        K = self.K.copy()
        K[0] *= sx
        K[1] *= sy
        return Calibration(width, height, K, self.D, self.distortion_model, self.name, self.path)


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
    """A camera's calibration from a file: ROS camera_calibration YAML (the layout in the module's
    docstring), OpenCV's FileStorage YAML or a Kalibr camchain of one pinhole camera, told apart by what
    the file holds. Whatever the format, it has a positive image size, finite positive focal lengths and
    a known distortion model (plumb_bob, rational_polynomial or equidistant) with as many finite
    coefficients as that model takes; otherwise CalibrationError, naming the file and the key. For a
    source that delivers another size of the same aspect ratio, Calibration.scaled."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CalibrationError(f"calibration {path}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CalibrationError(f"calibration {path}: expected a YAML text file, found binary data") from None
    # OpenCV's FileStorage (`%YAML:1.0` before OpenCV 5; its matrices' tag in any version), which
    # PyYAML cannot read.
    if text.lstrip().startswith("%YAML:") or "!!opencv-matrix" in text:
        return _from_opencv(path)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CalibrationError(f"calibration {path}: not valid YAML{line}: {problem}") from None
    if not isinstance(doc, dict):
        raise CalibrationError(
            f"calibration {path}: expected a mapping of keys (ROS camera_calibration format)"
        )
    if "image_width" not in doc and any(isinstance(v, dict) and "intrinsics" in v for v in doc.values()):
        return _from_kalibr(path, doc)
    return _from_ros(path, doc)


def _from_ros(path: Path, doc: dict[str, Any]) -> Calibration:
    for key in ("image_width", "image_height"):
        if not isinstance(doc.get(key), int) or doc[key] <= 0:
            raise CalibrationError(
                f"calibration {path}: {key}: expected a positive integer, found {doc.get(key)!r}"
            )
    K = _matrix(doc, "camera_matrix", (3, 3), path)
    model = doc.get("distortion_model", "plumb_bob")
    D = (
        _matrix(doc, "distortion_coefficients", None, path).reshape(-1)
        if "distortion_coefficients" in doc
        else np.zeros(5)
    )
    return _checked(
        path, doc["image_width"], doc["image_height"], K, D, model, str(doc.get("camera_name", ""))
    )


def _from_opencv(path: Path) -> Calibration:
    """OpenCV's FileStorage YAML, as its calibration sample writes it (camera_matrix,
    distortion_coefficients, image_width, image_height)."""
    import cv2

    storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    try:
        if not storage.isOpened():
            raise CalibrationError(f"calibration {path}: OpenCV cannot read it as FileStorage YAML")
        sizes = {key: storage.getNode(key) for key in ("image_width", "image_height")}
        K, D = storage.getNode("camera_matrix").mat(), storage.getNode("distortion_coefficients").mat()
        for key, node in sizes.items():
            if node.empty() or not node.isInt() or int(node.real()) <= 0:
                raise CalibrationError(f"calibration {path}: {key}: expected a positive integer")
        if K is None or K.shape != (3, 3):
            raise CalibrationError(
                f"calibration {path}: camera_matrix: expected a 3 x 3 opencv-matrix, "
                f"found {None if K is None else K.shape}"
            )
        width, height = (int(node.real()) for node in sizes.values())
    finally:
        storage.release()
    D = np.zeros(5) if D is None else np.asarray(D, np.float64).reshape(-1)
    model = "plumb_bob" if D.size <= 5 else "rational_polynomial"
    return _checked(path, width, height, np.asarray(K, np.float64), D, model, "")


def _from_kalibr(path: Path, doc: dict[str, Any]) -> Calibration:
    """A Kalibr camchain (or a single camera's `camera.yaml`) holding one pinhole camera."""
    cameras = [key for key, value in doc.items() if isinstance(value, dict) and "intrinsics" in value]
    if len(cameras) != 1:
        raise CalibrationError(
            f"calibration {path}: a Kalibr camchain of {len(cameras)} cameras ({', '.join(cameras)}): "
            "expected one; keep that camera's entry alone in a file of its own"
        )
    camera = doc[cameras[0]]
    if camera.get("camera_model", "pinhole") != "pinhole":
        raise CalibrationError(
            f"calibration {path}: {cameras[0]}.camera_model: expected pinhole, found {camera['camera_model']!r}"
        )
    model = KALIBR_MODELS.get(camera.get("distortion_model", "radtan"))
    if model is None:
        raise CalibrationError(
            f"calibration {path}: {cameras[0]}.distortion_model: expected one of {', '.join(KALIBR_MODELS)}, "
            f"found {camera.get('distortion_model')!r}"
        )
    try:
        fu, fv, pu, pv = (float(v) for v in camera["intrinsics"])
        width, height = (int(v) for v in camera["resolution"])
        D = np.array(camera.get("distortion_coeffs", [0, 0, 0, 0]), np.float64)
    except (KeyError, TypeError, ValueError):
        raise CalibrationError(
            f"calibration {path}: {cameras[0]}: expected intrinsics [fu, fv, pu, pv], resolution [w, h] "
            "and distortion_coeffs"
        ) from None
    K = np.array([[fu, 0, pu], [0, fv, pv], [0, 0, 1.0]])
    return _checked(path, width, height, K, D, model, "")


def _checked(
    path: Path, width: int, height: int, K: np.ndarray, D: np.ndarray, model: Any, name: str
) -> Calibration:
    """What every format must give: a size, finite positive focal lengths, a known model and as many
    finite coefficients as it takes (a short vector fails every frame's undistortion; a NaN makes
    every undistorted frame black)."""
    if width <= 0 or height <= 0:
        raise CalibrationError(f"calibration {path}: expected a positive image size, found {width}x{height}")
    if not np.isfinite(K).all():
        raise CalibrationError(
            f"calibration {path}: camera_matrix: expected finite numbers, found {K.reshape(-1).tolist()}"
        )
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CalibrationError(
            f"calibration {path}: camera_matrix: expected positive fx and fy, found {K[0, 0]}, {K[1, 1]}"
        )
    if model not in DISTORTION_MODELS:
        raise CalibrationError(
            f"calibration {path}: distortion_model: expected one of {', '.join(DISTORTION_MODELS)}, found {model!r}"
        )
    if D.size not in DISTORTION_SIZES[model]:
        sizes = " or ".join(str(n) for n in DISTORTION_SIZES[model])
        raise CalibrationError(
            f"calibration {path}: distortion_coefficients: expected {sizes} values for {model}, found {D.size}"
        )
    if not np.isfinite(D).all():
        raise CalibrationError(
            f"calibration {path}: distortion_coefficients: expected finite numbers, found {D.tolist()}"
        )
    return Calibration(width, height, K, D, model, name, str(path))
