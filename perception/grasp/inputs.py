"""What the grasp planner takes and refuses: the gripper's and the workspace's settings, and the checks
of GraspPlanner.plan's arguments (depth in metres, pinhole intrinsics of the depth image, a rigid camera
pose, N x 4 boxes, one name per box). Each refusal is a GraspInputError naming the thing, what was
expected and what was found."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields

import numpy as np

from perception.errors import PerceptError
from perception.msgs import is_number


class GraspInputError(PerceptError, ValueError):
    """An argument of GraspPlanner.plan or a planner setting that cannot be right: names it, what was
    expected and what was found. A ValueError, as the planner's refusals of wrong shapes always were."""


def refuse_unless(ok: bool, setting: str, expected: str, value: object) -> None:
    if not ok:
        raise GraspInputError(f"{setting}: expected {expected}, found {value!r}")


# The widest parallel-jaw hands open about 0.3 m (long-stroke industrial grippers; the Panda's 0.08, a
# Robotiq 2F-140's 0.14): a gripper dimension over this is in millimetres, not metres.
GRIPPER_MAX_SIZE = 0.5


@dataclass(frozen=True)
class Gripper:
    """A parallel-jaw gripper, in metres: the Panda hand by default (measured in PyBullet, field notes).

    max_opening: between the pads, fully open. pad_width: a pad's extent across the closing direction;
    pad_thickness: along it. finger_length: how deep the fingers reach below the grasp point's top.
    clearance: free space wanted each side of the object at the opening. palm_height, hand_length,
    hand_width: the hand's body above the fingers (the Panda's collision mesh): its underside's height
    above the grasp point, its extent along the closing direction and across it; nothing may stand
    higher than its underside within its footprint, or the hand comes down on it before the fingers
    reach the grasp. Each is refused outside (0, GRIPPER_MAX_SIZE] metres (clearance and palm_height
    may be 0)."""

    max_opening: float = 0.078
    pad_width: float = 0.022
    pad_thickness: float = 0.012
    finger_length: float = 0.045
    clearance: float = 0.008
    palm_height: float = 0.039
    hand_length: float = 0.208
    hand_width: float = 0.064

    def __post_init__(self) -> None:
        for setting in fields(self):
            value = getattr(self, setting.name)
            may_be_zero = setting.name in ("clearance", "palm_height")
            ok = is_number(value) and (value >= 0 if may_be_zero else value > 0) and value <= GRIPPER_MAX_SIZE
            expected = f"metres in {'[' if may_be_zero else '('}0, {GRIPPER_MAX_SIZE:g}]"
            refuse_unless(ok, f"Gripper.{setting.name}", expected, value)


@dataclass(frozen=True)
class Workspace:
    """Where objects may be picked from, in the world frame, metres.

    x, y: (least, most) bounds of an object's footprint centre. max_height: the most an object may
    stand above the plane (taller things are the arm, or not on the table). reach: how far from the
    arm's base (the world origin) in x and y the arm reaches down to the table. An object outside these
    is listed in Plan.outside, not picked. Unbounded by default but for max_height."""

    x: tuple[float, float] = (-math.inf, math.inf)
    y: tuple[float, float] = (-math.inf, math.inf)
    max_height: float = 0.30
    reach: float = math.inf

    def __post_init__(self) -> None:
        for name in ("x", "y"):
            bounds = getattr(self, name)
            if not (isinstance(bounds, tuple | list) and len(bounds) == 2 and bounds[0] <= bounds[1]):
                raise GraspInputError(f"Workspace.{name}: expected (least, most) metres, found {bounds!r}")
        for name in ("max_height", "reach"):
            value = getattr(self, name)
            refuse_unless(is_number(value) and value > 0, f"Workspace.{name}", "metres over 0", value)

    def refuses(self, point: np.ndarray, top: float) -> str:
        """Why an object centred at `point` (world) with this top height is not to be picked; "" if it is."""
        x, y = float(point[0]), float(point[1])
        if not (self.x[0] <= x <= self.x[1] and self.y[0] <= y <= self.y[1]):
            return f"outside the workspace at ({x:.2f}, {y:.2f})"
        if math.hypot(x, y) > self.reach:
            return f"out of the arm's reach at ({x:.2f}, {y:.2f}): {math.hypot(x, y):.2f} m from its base, more than {self.reach:g} m"
        if top > self.max_height:
            return f"{top * 100:.0f} cm tall: more than the workspace's {self.max_height * 100:.0f} cm"
        return ""


# A rotation from a quaternion or a calibration is orthonormal to 1e-6; one typed to three decimals, to
# about 3e-3. Further off (R^T R from the identity), it scales or shears the scene: a pose that is wrong.
ROTATION_TOLERANCE = 1e-2


def _as_array(name: str, value: object, expected: str, hint: str = "") -> np.ndarray:
    try:
        return np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise GraspInputError(f"{name}: expected {expected}, found {type(value).__name__}{hint}") from None


def checked_depth(depth: object) -> np.ndarray:
    """The depth image as an array, refused unless H x W metres in floats."""
    image = np.asarray(depth)
    if image.ndim != 2:
        raise GraspInputError(f"depth: expected an H x W image in metres, found shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        # Integers are a camera's raw units (millimetres from a RealSense or a 16UC1 image): planned as
        # metres they put the table hundreds of metres away, silently.
        how = (
            ": multiply by the camera's depth scale (usually 0.001) for metres"
            if np.issubdtype(image.dtype, np.integer)
            else ""
        )
        raise GraspInputError(f"depth: expected floats in metres, found {image.dtype}{how}")
    return image


def checked_intrinsics(K: object, image_shape: tuple[int, ...]) -> np.ndarray:
    """K as an array, refused unless the 3 x 3 pinhole intrinsics of an image of this shape."""
    matrix = _as_array("K", K, "the 3 x 3 intrinsics")
    if matrix.shape != (3, 3):
        raise GraspInputError(f"K: expected the 3 x 3 intrinsics, found shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise GraspInputError(f"K: expected finite numbers, found {np.round(matrix, 3).tolist()}")
    fx, fy = matrix[0, 0], matrix[1, 1]
    zeros_and_one = (matrix[1, 0], matrix[2, 0], matrix[2, 1], matrix[2, 2])
    if not (fx > 0 and fy > 0 and np.allclose(zeros_and_one, (0, 0, 0, 1), atol=1e-9)):
        transposed = " (transposed?)" if matrix[0, 2] == matrix[1, 2] == 0 else ""
        raise GraspInputError(
            "K: expected [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy over 0, found "
            f"{np.round(matrix, 3).tolist()}{transposed}"
        )
    # Pixel centres are whole numbers, so the image spans -0.5 to W - 0.5. The principal point of
    # another resolution's intrinsics (the colour stream's at twice the depth's) lands off the image.
    h, w = image_shape
    cx, cy = matrix[0, 2], matrix[1, 2]
    if not (-0.5 <= cx <= w - 0.5 and -0.5 <= cy <= h - 0.5):
        raise GraspInputError(
            f"K: expected its principal point within the {w}x{h} depth image, found ({cx:g}, {cy:g}): "
            "intrinsics of another resolution? (scale fx, fy, cx, cy by the depth image's size over theirs)"
        )
    # A depth array transposed (W x H: a library that indexes images (x, y), a column-major buffer)
    # still holds the principal point, but far from its centre, where the image the right way round
    # has it near its own: planned on, every object lies elsewhere, silently.
    if h != w and _off_centre(cx, cy, w, h) > 0.15 and _off_centre(cx, cy, h, w) < 0.05:
        raise GraspInputError(
            f"depth: expected H x W rows and columns, found shape {image_shape}, which puts K's principal "
            f"point ({cx:g}, {cy:g}) far off its centre and the {h}x{w} image's at its centre: transposed? "
            "(give depth.T)"
        )
    return matrix


def _off_centre(cx: float, cy: float, w: int, h: int) -> float:
    """How far a principal point lies from the centre of a w x h image, as a fraction of its side."""
    return float(max(abs(cx - (w - 1) / 2) / w, abs(cy - (h - 1) / 2) / h))


def checked_pose(world_from_camera: object) -> np.ndarray:
    """The camera's pose as an array, refused unless a finite rigid 4 x 4 transform."""
    pose = _as_array("world_from_camera", world_from_camera, "a 4 x 4 pose")
    if pose.shape != (4, 4):
        raise GraspInputError(f"world_from_camera: expected a 4 x 4 pose, found shape {pose.shape}")
    if not np.isfinite(pose).all():
        raise GraspInputError(
            f"world_from_camera: expected finite numbers, found {np.round(pose, 4).tolist()}"
        )
    if not np.allclose(pose[3], (0, 0, 0, 1), atol=1e-9):
        raise GraspInputError(
            f"world_from_camera: expected the last row [0, 0, 0, 1], found {pose[3].tolist()}"
        )
    rotation = pose[:3, :3]
    off = float(np.abs(rotation.T @ rotation - np.eye(3)).max())
    determinant = float(np.linalg.det(rotation))
    if off > ROTATION_TOLERANCE or determinant <= 0:
        raise GraspInputError(
            "world_from_camera: expected a rotation in its top-left 3 x 3 (orthonormal, determinant +1), "
            f"found R^T R {off:.3g} off the identity and determinant {determinant:.3g} (scaled, sheared "
            "or mirrored)"
        )
    return pose


def checked_boxes(boxes: object) -> np.ndarray:
    """Boxes as an N x 4 array of pixels; a NaN or inverted one is left to its detection's reason."""
    hint = ": pass its .xyxy (and .class_names)" if hasattr(boxes, "xyxy") else ""  # a Detections message
    array = _as_array("boxes", boxes, "N x 4 numbers (x1, y1, x2, y2 pixels)", hint)
    if array.size % 4 or (array.ndim > 1 and array.shape[-1] != 4):
        raise GraspInputError(f"boxes: expected N x 4 (x1, y1, x2, y2 pixels), found shape {array.shape}")
    return array.reshape(-1, 4)


def checked_names(class_names: object, count: int) -> list[str]:
    """One name per box ("" each without names)."""
    if class_names is None:
        return [""] * count
    # A str is a sequence of characters: "cube" for one box counted four names.
    if isinstance(class_names, str) or not isinstance(class_names, Iterable):
        raise GraspInputError(
            f"class_names: expected one name per box, found a {type(class_names).__name__} ({class_names!r})"
        )
    names = list(class_names)
    if len(names) != count:
        raise GraspInputError(f"class_names: expected one per box ({count}), found {len(names)}")
    for index, name in enumerate(names):
        if not isinstance(name, str):
            raise GraspInputError(
                f"class_names: expected a str per box, found {type(name).__name__} {name!r} at {index}"
            )
    return [str(name) for name in names]  # numpy's str_ as plain str, as Grasp.class_name is typed
