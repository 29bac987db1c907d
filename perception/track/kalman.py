"""A constant-velocity Kalman filter for image boxes, stateless like ByteTrack's: tracks hold the arrays.

State: (cx, cy, w, h, vx, vy, vw, vh) in pixels and pixels per second; measurement: (cx, cy, w, h).
Noise scales with the box's size, as in SORT and ByteTrack (1/20 of it for positions, 1/160 per frame
for velocities), so a far, small car and a near, large one are filtered alike. Time steps are explicit:
a dropped frame is one longer step. `predict_many` and `update_many` work on every track at once (batched, not a loop).
"""

from __future__ import annotations

import numpy as np

POSITION_NOISE = 1 / 20  # standard deviations, relative to the box's size
VELOCITY_NOISE = 1 / 160  # per frame
_DIAGONAL = np.arange(8)


def _size(state: np.ndarray) -> float:
    return max(float(state[2]), float(state[3]), 1.0)


def initiate(box: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a new track from its first box (cx, cy, w, h); velocity unknown."""
    size = _size(box)
    mean = np.zeros(8)
    mean[:4] = box
    covariance = np.zeros((8, 8))
    covariance[_DIAGONAL[:4], _DIAGONAL[:4]] = (2 * POSITION_NOISE * size) ** 2
    covariance[_DIAGONAL[4:], _DIAGONAL[4:]] = (10 * VELOCITY_NOISE * size / dt) ** 2
    return mean, covariance


def predict_many(means: np.ndarray, covariances: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Every state (N x 8, N x 8 x 8) dt seconds later."""
    motion = np.eye(8)
    motion[:4, 4:] = np.eye(4) * dt
    sizes = np.maximum(np.maximum(means[:, 2], means[:, 3]), 1.0)
    new_means = means @ motion.T
    new_means[:, 2:4] = np.maximum(new_means[:, 2:4], 1.0)  # a box never shrinks to nothing between frames
    new_covariances = (
        motion @ covariances @ motion.T
    )  # batched matmul: einsum's three-operand loop is 10x slower
    new_covariances[:, _DIAGONAL[:4], _DIAGONAL[:4]] += ((POSITION_NOISE * sizes) ** 2)[:, None]
    new_covariances[:, _DIAGONAL[4:], _DIAGONAL[4:]] += ((VELOCITY_NOISE * sizes / max(dt, 1e-3)) ** 2)[
        :, None
    ]
    return new_means, new_covariances


def update_many(
    means: np.ndarray, covariances: np.ndarray, boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """States (N x 8, N x 8 x 8) corrected by measured boxes (N x 4: cx, cy, w, h)."""
    sizes = np.maximum(np.maximum(means[:, 2], means[:, 3]), 1.0)
    projected = covariances[:, :4, :4].copy()
    projected[:, _DIAGONAL[:4], _DIAGONAL[:4]] += ((POSITION_NOISE * sizes) ** 2)[:, None]
    gains = np.linalg.solve(projected, covariances[:, :4, :]).transpose(0, 2, 1)  # P H^T S^-1 (S symmetric)
    innovation = boxes - means[:, :4]
    new_means = means + (gains @ innovation[:, :, None])[:, :, 0]
    new_covariances = covariances - gains @ projected @ gains.transpose(0, 2, 1)
    return new_means, new_covariances
