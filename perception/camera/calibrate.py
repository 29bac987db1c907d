"""Camera intrinsics from views of a chessboard or ChArUco board (OpenCV's calibrateCamera, or its
fisheye model), written as the ROS camera_info YAML the camera node reads. Plain arrays: the CLI feeds
it images from a folder, a video or a live topic.

    board = Board.parse("chessboard:10x7:0.03")      # squares across x down, square side in metres
    views = [v for image in images if (v := find_board(gray(image), board)) is not None]
    result = calibrate(views, (width, height))        # K, D, RMS reprojection error, coverage
    Path("camera.yaml").write_text(result.ros_yaml("front"))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import yaml

from perception.errors import PerceptError

KINDS = ("chessboard", "charuco")
MIN_VIEWS = 6  # fewer leave the intrinsics poorly constrained


@dataclass(frozen=True)
class Board:
    kind: str
    columns: int  # squares across
    rows: int  # squares down
    square_m: float
    marker_m: float = 0.0  # ChArUco: the side of the ArUco markers
    dictionary: str = "DICT_5X5_100"  # ChArUco's marker dictionary

    @classmethod
    def parse(cls, text: str) -> Board:
        """`chessboard:COLSxROWS:SQUARE` or `charuco:COLSxROWS:SQUARE:MARKER` (squares; metres)."""
        parts = text.split(":")
        try:
            kind, size = parts[0], parts[1]
            columns, rows = (int(v) for v in size.lower().split("x"))
            square = float(parts[2])
            marker = float(parts[3]) if kind == "charuco" else 0.0
        except (IndexError, ValueError):
            raise PerceptError(
                f"--board {text!r}: expected chessboard:COLSxROWS:SQUARE_M or charuco:COLSxROWS:SQUARE_M:MARKER_M "
                "(squares across and down, sides in metres), e.g. chessboard:10x7:0.025"
            ) from None
        if (
            kind not in KINDS
            or columns < 3
            or rows < 3
            or square <= 0
            or (kind == "charuco" and not 0 < marker < square)
        ):
            raise PerceptError(
                f"--board {text!r}: expected a {' or '.join(KINDS)} of at least 3x3 squares, a square side above 0"
                " and (ChArUco) a marker smaller than the square"
            )
        return cls(kind, columns, rows, square, marker)

    @property
    def inner(self) -> tuple[int, int]:
        """Inner corners across and down: what the chessboard detector looks for."""
        return self.columns - 1, self.rows - 1

    def corners_3d(self) -> np.ndarray:
        """The inner corners on the board's plane (z = 0), row by row, in metres."""
        cols, rows = self.inner
        grid = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2).astype(np.float32) * self.square_m
        return np.hstack([grid, np.zeros((len(grid), 1), np.float32)])

    def image(self, pixels_per_square: int = 40) -> tuple[np.ndarray, tuple[float, float]]:
        """The board to print (grey, with a white margin of one square), and its size in metres."""
        margin = pixels_per_square
        if self.kind == "charuco":
            inner = self.charuco().generateImage(
                (self.columns * pixels_per_square, self.rows * pixels_per_square)
            )
        else:
            squares = (np.indices((self.rows, self.columns)).sum(axis=0) % 2 == 0).astype(np.uint8) * 255
            inner = np.kron(squares, np.ones((pixels_per_square, pixels_per_square), np.uint8))
        image = cv2.copyMakeBorder(inner, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255)
        size = ((self.columns + 2) * self.square_m, (self.rows + 2) * self.square_m)
        return image, size

    def charuco(self) -> cv2.aruco.CharucoBoard:
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        return cv2.aruco.CharucoBoard((self.columns, self.rows), self.square_m, self.marker_m, dictionary)


@dataclass
class View:
    image_points: np.ndarray  # N x 1 x 2 float32
    object_points: np.ndarray  # N x 1 x 3 float32


def find_board(gray: np.ndarray, board: Board) -> View | None:
    """The board's corners in one grey image, refined to sub-pixel; None where it is not (all) seen."""
    if board.kind == "charuco":
        detector = cv2.aruco.CharucoDetector(board.charuco())
        corners, ids, _, _ = detector.detectBoard(gray)
        if ids is None or len(ids) < 6:
            return None
        objects = np.asarray(board.charuco().getChessboardCorners())[ids.reshape(-1)]
        return View(
            corners.reshape(-1, 1, 2).astype(np.float32), objects.reshape(-1, 1, 3).astype(np.float32)
        )
    found, corners = cv2.findChessboardCorners(
        gray, board.inner, flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    )
    if not found:
        return None
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)
    corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), criteria)
    return View(corners.astype(np.float32), board.corners_3d().reshape(-1, 1, 3))


def corner_shift_px(a: View, b: View) -> float:
    """How far the board's corners lie apart in two views, in pixels: the mean over the corners both
    saw (matched by their place on the board, since a ChArUco view may show some); inf with fewer than 4
    in common."""
    places_b = {tuple(p): i for i, p in enumerate(b.object_points.reshape(-1, 3).round(6).tolist())}
    pairs = [
        (i, places_b[tuple(p)])
        for i, p in enumerate(a.object_points.reshape(-1, 3).round(6).tolist())
        if tuple(p) in places_b
    ]
    if len(pairs) < 4:
        return float("inf")
    ia, ib = (list(v) for v in zip(*pairs, strict=True))
    shift = a.image_points.reshape(-1, 2)[ia] - b.image_points.reshape(-1, 2)[ib]
    return float(np.linalg.norm(shift, axis=1).mean())


@dataclass
class Result:
    width: int
    height: int
    K: np.ndarray
    D: np.ndarray
    model: str  # plumb_bob or equidistant (fisheye)
    rms_px: float  # RMS reprojection error over every corner of every view
    views: int
    per_view_rms_px: list[float] = field(default_factory=list)
    coverage: float = 0.0  # share of a 6 x 4 grid over the image where some view put corners

    def ros_yaml(self, camera_name: str) -> str:
        """The ROS camera_info YAML (camera_calibration's layout) that `load_calibration` reads."""
        P = np.hstack([self.K, np.zeros((3, 1))])
        document = {
            "image_width": self.width,
            "image_height": self.height,
            "camera_name": camera_name,
            "camera_matrix": {"rows": 3, "cols": 3, "data": [round(float(v), 6) for v in self.K.reshape(-1)]},
            "distortion_model": self.model,
            "distortion_coefficients": {
                "rows": 1,
                "cols": len(self.D),
                "data": [round(float(v), 8) for v in self.D.reshape(-1)],
            },
            "rectification_matrix": {
                "rows": 3,
                "cols": 3,
                "data": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            },
            "projection_matrix": {"rows": 3, "cols": 4, "data": [round(float(v), 6) for v in P.reshape(-1)]},
        }
        return (
            f"# percept calibrate camera: RMS {self.rms_px:.3f} px over {self.views} views\n"
            + yaml.safe_dump(document, sort_keys=False)
        )


def coverage(views: list[View], size: tuple[int, int], grid: tuple[int, int] = (6, 4)) -> float:
    """The share of the image's grid cells with a corner in them: calibration extrapolates poorly to
    where the board never went (the edges, where distortion is strongest)."""
    width, height = size
    seen = np.zeros(grid[::-1], bool)
    for view in views:
        points = view.image_points.reshape(-1, 2)
        cx = np.clip((points[:, 0] / width * grid[0]).astype(int), 0, grid[0] - 1)
        cy = np.clip((points[:, 1] / height * grid[1]).astype(int), 0, grid[1] - 1)
        seen[cy, cx] = True
    return float(seen.mean())


def calibrate(views: list[View], size: tuple[int, int], fisheye: bool = False) -> Result:
    """Intrinsics and distortion from the views (at least MIN_VIEWS), with the reprojection error."""
    if len(views) < MIN_VIEWS:
        raise PerceptError(
            f"calibration: expected the board in at least {MIN_VIEWS} views, found {len(views)}"
        )
    objects = [v.object_points for v in views]
    images = [v.image_points for v in views]
    K: Any
    D: Any
    if fisheye:
        # The fisheye functions take each view as one row of points (1 x N, 3 and 2 channels).
        objects = [o.reshape(1, -1, 3).astype(np.float64) for o in objects]
        images = [i.reshape(1, -1, 2).astype(np.float64) for i in images]
        K, D = np.zeros((3, 3)), np.zeros((4, 1))
        flags = cv2.fisheye.CALIB_RECOMPUTE_EXTRINSIC | cv2.fisheye.CALIB_FIX_SKEW
        try:
            rms, K, D, rvecs, tvecs = cv2.fisheye.calibrate(
                objects,
                images,
                size,
                K,
                D,
                flags=flags,
                criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-7),
            )
        except cv2.error as exc:
            raise PerceptError(
                f"fisheye calibration did not converge ({str(exc).splitlines()[-1].strip()})"
            ) from None
        model = "equidistant"
    else:
        rms, K, D, rvecs, tvecs = cv2.calibrateCamera(objects, images, size, None, None)
        model = "plumb_bob"
    per_view = []
    for view, rvec, tvec in zip(views, rvecs, tvecs, strict=True):
        if fisheye:
            projected, _ = cv2.fisheye.projectPoints(
                view.object_points.reshape(1, -1, 3).astype(np.float64), rvec, tvec, K, D
            )
        else:
            projected, _ = cv2.projectPoints(view.object_points, rvec, tvec, K, D)
        error = projected.reshape(-1, 2) - view.image_points.reshape(-1, 2)
        per_view.append(round(float(np.sqrt((error**2).sum(axis=1).mean())), 4))
    return Result(
        size[0],
        size[1],
        np.asarray(K, np.float64),
        np.asarray(D, np.float64).reshape(-1),
        model,
        round(float(rms), 4),
        len(views),
        per_view,
        round(coverage(views, size), 3),
    )
