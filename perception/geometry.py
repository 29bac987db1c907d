"""Frames and cameras: quaternions and rotations, poses as 4 x 4 transforms, and back-projection of
pixels with metric depth to world points (OpenCV optical axes). Plain numpy, shared by the grasp
planner, the tracker, the camera node and the simulator."""

from __future__ import annotations

import math

import numpy as np

# Two pixel coordinates meet in a camera's pictures. K's are OpenCV's: pixel (u, v)'s centre at whole
# numbers. Boxes' are pixel edges, as COCO's, YOLO's and every detector's: pixel u spans u to u + 1, so
# a box's x2 is its last column + 1. A point K projects to x lies at x + PIXEL_CENTRE in box coordinates
# (half a pixel is 1.7% of a distance read off a road 20 m away).
PIXEL_CENTRE = 0.5


def matrix_from_quaternion(q: tuple[float, float, float, float] | np.ndarray) -> np.ndarray:
    """3 x 3 rotation of a quaternion (x, y, z, w), normalised first: a hand-typed or rounded one is
    rarely of unit length, and would otherwise scale as well as rotate."""
    x, y, z, w = (float(v) for v in q)
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if not norm > 1e-9:
        raise ValueError(f"quaternion (x, y, z, w): expected a rotation, found {tuple(q)} (length 0)")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def quaternion_from_matrix(m: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a 3 x 3 rotation matrix (Shepperd's method: stable for every rotation)."""
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = (0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s)
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = ((m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s)
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = ((m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s)
    return (float(q[0]), float(q[1]), float(q[2]), float(q[3]))


def pose_matrix(
    position: tuple[float, ...] | np.ndarray, orientation: tuple[float, ...] | np.ndarray
) -> np.ndarray:
    """4 x 4 transform of a position and a quaternion (x, y, z, w)."""
    m = np.eye(4)
    m[:3, :3] = matrix_from_quaternion(tuple(orientation))  # type: ignore[arg-type]
    m[:3, 3] = position
    return m


def back_project(
    u: np.ndarray, v: np.ndarray, depth: np.ndarray, K: np.ndarray, world_from_camera: np.ndarray
) -> np.ndarray:
    """World points (N x 3) of pixels (u, v) at metric depth (along the optical axis, OpenCV axes)."""
    slope_x = (np.asarray(u, np.float64).reshape(-1) - K[0, 2]) / K[0, 0]
    slope_y = (np.asarray(v, np.float64).reshape(-1) - K[1, 2]) / K[1, 1]
    return back_project_slopes(slope_x, slope_y, np.asarray(depth, np.float64).reshape(-1), world_from_camera)


def back_project_slopes(
    slope_x: np.ndarray, slope_y: np.ndarray, z: np.ndarray, pose: np.ndarray
) -> np.ndarray:
    """World points of rays (slope_x, slope_y, 1) at depth z: written out, as a 3 x 3 product of
    tens of thousands of rows is slower through BLAS than nine multiply-adds."""
    x, y = slope_x * z, slope_y * z
    r, t = pose[:3, :3], pose[:3, 3]
    return np.stack(
        [r[i, 0] * x + r[i, 1] * y + r[i, 2] * z + t[i] for i in range(3)],
        axis=1,
    )
