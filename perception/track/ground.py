"""Where tracked objects stand on a flat road, how fast they move, and when they would reach the camera.

A box's bottom edge is where the object meets the road; its middle pixel's ray, met with the plane
z = ground_z of the world (the flat-road assumption), gives the object's ground position. From the
camera's pose in the world (CameraInfo) come the distance, and from the positions over time the
object's velocity (in the world: a moving camera does not move the objects) and the time to collision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perception.geometry import PIXEL_CENTRE
from perception.track.tracker import as_boxes, check_seconds

HISTORY = 10  # ground positions kept per track for the velocity fit


def ground_points(
    xyxy: np.ndarray, K: np.ndarray, world_from_camera: np.ndarray, ground_z: float = 0.0
) -> np.ndarray:
    """World points (N x 3) where the boxes' bottom-centre rays meet the ground; NaN rows for boxes
    whose bottom lies at or above the horizon (the ray never meets the road ahead)."""
    boxes = as_boxes(xyxy, "ground_points")
    K = _matrix("K", K, (3, 3))
    world_from_camera = _matrix("world_from_camera", world_from_camera, (4, 4))
    # The bottom edge's middle, from the boxes' pixel edges into K's pixel centres.
    u, v = (boxes[:, 0] + boxes[:, 2]) / 2 - PIXEL_CENTRE, boxes[:, 3] - PIXEL_CENTRE
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=1)
    directions = rays @ world_from_camera[:3, :3].T
    origin = world_from_camera[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        reach = (ground_z - origin[2]) / directions[:, 2]
    points: np.ndarray = origin + reach[:, None] * directions
    points[~(reach > 0)] = np.nan
    return points


def road_unseen(world_from_camera: np.ndarray, ground_z: float = 0.0) -> str:
    """Why boxes seen from this camera pose meet no road, in words, or "" for a pose over the road that
    looks ahead or down (where a box meets no road only when its bottom lies above the horizon). A camera
    node given no pose stands at the world's origin with its optical axis along world z: on the road,
    looking straight up."""
    world_from_camera = _matrix("world_from_camera", world_from_camera, (4, 4))
    height = world_from_camera[2, 3] - ground_z
    axis = world_from_camera[:3, 2]  # the optical axis (OpenCV's z) in the world
    up = math.degrees(math.asin(float(np.clip(axis[2] / max(np.linalg.norm(axis), 1e-12), -1.0, 1.0))))
    if height > 0 and up <= 0:
        return ""
    return f"the camera is {height:.2f} m above the road, its optical axis {up:.0f}° above the horizon"


def _matrix(name: str, value: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    matrix = np.asarray(value, np.float64)
    if matrix.shape != shape:
        raise ValueError(f"ground_points: expected {name} of shape {shape}, found {matrix.shape}")
    return matrix


@dataclass
class GroundMotion:
    position: np.ndarray  # world x, y, z on the road
    distance: float  # metres from the camera, on the ground plane
    velocity: np.ndarray  # world x, y in m/s (zeros until two positions are known)
    speed: float
    time_to_collision: (
        float  # seconds until the distance reaches 0 at the current closing rate; inf if opening
    )


class GroundHistory:
    """One track's ground positions over time (keep one per track id); `update` returns the motion as of
    the newest one."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, np.ndarray, float]] = []  # (stamp, position, distance)

    def update(self, stamp_s: float, position: np.ndarray, camera_position: np.ndarray) -> GroundMotion:
        """Add the track's ground `position` (world x, y[, z], metres; `ground_points`) at `stamp_s`
        (seconds, never before the last update's) seen from `camera_position` (world, metres)."""
        stamp_s = check_seconds("GroundHistory.update: stamp_s", stamp_s)
        if self.samples and stamp_s < self.samples[-1][0]:
            raise ValueError(
                f"GroundHistory.update: stamps must not go back in time ({self.samples[-1][0]} -> {stamp_s})"
            )
        distance = float(np.hypot(*(position[:2] - camera_position[:2])))
        self.samples.append((stamp_s, position, distance))
        del self.samples[:-HISTORY]
        velocity, closing = np.zeros(2), 0.0
        if len(self.samples) >= 2:
            t = np.array([s[0] for s in self.samples])
            t = t - t.mean()
            if np.ptp(t) > 0:
                xy = np.array([s[1][:2] for s in self.samples])
                d = np.array([s[2] for s in self.samples])
                # Least-squares slopes: steadier than the last difference when boxes jitter.
                velocity = (t @ (xy - xy.mean(axis=0))) / (t @ t)
                closing = -float(t @ (d - d.mean()) / (t @ t))
        ttc = distance / closing if closing > 1e-3 else math.inf
        return GroundMotion(position, distance, velocity, float(np.hypot(*velocity)), ttc)
