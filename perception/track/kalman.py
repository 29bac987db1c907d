"""A constant-velocity Kalman filter for image boxes, stateless like ByteTrack's: tracks hold the arrays.

State: (cx, cy, w, h, vx, vy, vw, vh) in pixels and pixels per second; measurement: (cx, cy, w, h).
Noise scales with the box's size, as in SORT and ByteTrack (1/20 of it for positions, 1/160 per frame
for velocities), so a far, small car and a near, large one are filtered alike. Time steps are explicit:
a dropped frame is one longer step.
"""

from __future__ import annotations

import numpy as np

POSITION_NOISE = 1 / 20  # standard deviations, relative to the box's size
VELOCITY_NOISE = 1 / 160  # per frame


def _size(state: np.ndarray) -> float:
    return max(float(state[2]), float(state[3]), 1.0)


def initiate(box: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a new track from its first box (cx, cy, w, h); velocity unknown."""
    size = _size(box)
    std = np.r_[np.full(4, 2 * POSITION_NOISE * size), np.full(4, 10 * VELOCITY_NOISE * size / dt)]
    return np.r_[box, np.zeros(4)].astype(np.float64), np.diag(std**2)


def predict(mean: np.ndarray, covariance: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """The state dt seconds later."""
    motion = np.eye(8)
    motion[:4, 4:] = np.eye(4) * dt
    size = _size(mean)
    std = np.r_[np.full(4, POSITION_NOISE * size), np.full(4, VELOCITY_NOISE * size / max(dt, 1e-3))]
    new_mean = motion @ mean
    new_mean[2:4] = np.maximum(new_mean[2:4], 1.0)  # a box never shrinks to nothing between frames
    return new_mean, motion @ covariance @ motion.T + np.diag(std**2)


def update(mean: np.ndarray, covariance: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The state corrected by a measured box (cx, cy, w, h)."""
    noise = np.diag(np.full(4, POSITION_NOISE * _size(mean)) ** 2)
    projected = covariance[:4, :4] + noise
    gain = np.linalg.solve(projected, covariance[:4, :]).T  # P H^T S^-1 (S symmetric)
    return mean + gain @ (box - mean[:4]), covariance - gain @ projected @ gain.T
