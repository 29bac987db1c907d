"""Hand-eye calibration: where the camera is on the robot, from robot poses paired with views of a
calibration board (OpenCV's calibrateHandEye, which solves AX = XB).

  eye-in-hand  the camera rides on the gripper, the board lies still: the result is the camera's pose
               in the gripper frame (gripper_T_camera)
  eye-to-hand  the camera stands still, the gripper holds the board: the result is the camera's pose
               in the robot's base frame (base_T_camera), which the grasp planner applies so that
               grasps come out in the base frame

Poses are 4 x 4 matrices; a robot pose is the gripper's in the base frame (base_T_gripper, what the
arm's forward kinematics or its driver reports); a board pose is the board's in the camera frame, from
its corners and the camera's intrinsics (solvePnP). Views need rotations about at least two different
axes; the residual (how far AX and XB still disagree over the pairs) says how well it went.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import yaml

from perception.camera.calibrate import View
from perception.errors import PerceptError

MODES = ("eye-in-hand", "eye-to-hand")
METHODS = {
    "tsai": cv2.CALIB_HAND_EYE_TSAI,
    "park": cv2.CALIB_HAND_EYE_PARK,
    "horaud": cv2.CALIB_HAND_EYE_HORAUD,
    "andreff": cv2.CALIB_HAND_EYE_ANDREFF,
    "daniilidis": cv2.CALIB_HAND_EYE_DANIILIDIS,
}
MIN_PAIRS = 3
ENOUGH_PAIRS = 20  # below, the result is printed with a warning (see DEFAULT_METHOD)


def board_pose(view: View, K: np.ndarray, D: np.ndarray, distortion_model: str = "plumb_bob") -> np.ndarray:
    """camera_T_board from one view of the board (a fisheye camera's corners undistorted first: solvePnP
    knows only the plumb_bob model)."""
    points = view.image_points
    if distortion_model == "equidistant":
        points = cv2.fisheye.undistortPoints(points.astype(np.float64), K, D[:4], P=K).astype(np.float32)
        D = np.zeros(5)
    elif distortion_model not in ("plumb_bob", "rational_polynomial"):
        raise PerceptError(f"distortion model {distortion_model!r}: expected plumb_bob or equidistant")
    ok, rvec, tvec = cv2.solvePnP(view.object_points, points, K, D, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise PerceptError("solvePnP found no board pose")
    pose = np.eye(4)
    pose[:3, :3] = cv2.Rodrigues(rvec)[0]
    pose[:3, 3] = tvec.reshape(3)
    return pose


@dataclass
class HandEye:
    mode: str
    transform: np.ndarray  # 4 x 4: gripper_T_camera (eye-in-hand) or base_T_camera (eye-to-hand)
    pairs: int
    translation_residual_m: float  # RMS over pairs of how far AX and XB disagree
    rotation_residual_deg: float
    method: str

    @property
    def parent_frame(self) -> str:
        return "gripper" if self.mode == "eye-in-hand" else "base"

    def to_yaml(
        self, base_frame: str = "base", gripper_frame: str = "gripper", camera_frame: str = "camera"
    ) -> str:
        from perception.geometry import quaternion_from_matrix

        parent = gripper_frame if self.mode == "eye-in-hand" else base_frame
        q = quaternion_from_matrix(self.transform[:3, :3])
        doc = {
            "mode": self.mode,
            "parent_frame": parent,
            "child_frame": camera_frame,
            "translation": [round(float(v), 6) for v in self.transform[:3, 3]],
            "rotation_xyzw": [round(float(v), 8) for v in q],
            "pairs": self.pairs,
            "method": self.method,
            "residual_translation_mm": round(self.translation_residual_m * 1000, 3),
            "residual_rotation_deg": round(self.rotation_residual_deg, 4),
        }
        return (
            f"# percept calibrate handeye: the camera's pose ({camera_frame}) in {parent}, as a transform\n"
            + yaml.safe_dump(doc, sort_keys=False)
        )


# Daniilidis (dual quaternions: rotation and translation together) by default: on the simulator's
# Panda views (6 seeds, 30 arm poses each) it erred least in both modes, 0.69 and 1.10 mm on average
# against Park's 0.91 and 1.12, and under 1.4 mm at worst; with 16 poses every method erred up to 2.8 mm
# in eye-in-hand, so use 20 or more.
DEFAULT_METHOD = "daniilidis"


def solve(
    robot_poses: list[np.ndarray], board_poses: list[np.ndarray], mode: str, method: str = DEFAULT_METHOD
) -> HandEye:
    """The camera's pose on or beside the robot from pairs (base_T_gripper, camera_T_board)."""
    if mode not in MODES:
        raise PerceptError(f"mode: expected one of {', '.join(MODES)}, found {mode!r}")
    if method not in METHODS:
        raise PerceptError(f"method: expected one of {', '.join(METHODS)}, found {method!r}")
    if len(robot_poses) != len(board_poses):
        raise PerceptError(
            f"expected as many robot poses as board views, found {len(robot_poses)} and {len(board_poses)}"
        )
    if len(robot_poses) < MIN_PAIRS:
        raise PerceptError(f"expected at least {MIN_PAIRS} pose and view pairs, found {len(robot_poses)}")
    # OpenCV's eye-in-hand form; eye-to-hand is the same with the robot poses inverted (base in gripper)
    moves = [pose if mode == "eye-in-hand" else np.linalg.inv(pose) for pose in robot_poses]
    rotation, translation = cv2.calibrateHandEye(
        [m[:3, :3] for m in moves],
        [m[:3, 3] for m in moves],
        [b[:3, :3] for b in board_poses],
        [b[:3, 3] for b in board_poses],
        method=METHODS[method],
    )
    X = np.eye(4)
    X[:3, :3], X[:3, 3] = rotation, translation.reshape(3)
    t_res, r_res = _residuals(moves, board_poses, X)
    return HandEye(mode, X, len(moves), t_res, r_res, method)


def _residuals(moves: list[np.ndarray], boards: list[np.ndarray], X: np.ndarray) -> tuple[float, float]:
    """For consecutive pairs, A X and X B with A the gripper's motion and B the board's seen motion."""
    t_errors, r_errors = [], []
    for i in range(len(moves) - 1):
        A = np.linalg.inv(moves[i + 1]) @ moves[i]
        B = boards[i + 1] @ np.linalg.inv(boards[i])
        left, right = A @ X, X @ B
        t_errors.append(float(np.linalg.norm(left[:3, 3] - right[:3, 3])))
        r_errors.append(rotation_angle_deg(left[:3, :3].T @ right[:3, :3]))
    return float(np.sqrt(np.mean(np.square(t_errors)))), float(np.sqrt(np.mean(np.square(r_errors))))


def rotation_angle_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))


def load_handeye(path: str) -> HandEye:
    """A file `percept calibrate handeye` wrote."""
    from perception.geometry import matrix_from_quaternion

    try:
        with open(path) as stream:
            doc = yaml.safe_load(stream)
        X = np.eye(4)
        X[:3, :3] = matrix_from_quaternion(np.asarray(doc["rotation_xyzw"], float))
        X[:3, 3] = np.asarray(doc["translation"], float)
        return HandEye(
            doc["mode"],
            X,
            int(doc.get("pairs", 0)),
            float(doc.get("residual_translation_mm", 0)) / 1000,
            float(doc.get("residual_rotation_deg", 0)),
            str(doc.get("method", "")),
        )
    except OSError as exc:
        raise PerceptError(f"hand-eye file {path}: cannot read it ({exc.strerror})") from None
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise PerceptError(
            f"hand-eye file {path}: expected mode, translation and rotation_xyzw ({exc})"
        ) from None
