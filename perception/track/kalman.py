"""A constant-velocity Kalman filter for image boxes, stateless like ByteTrack's: the tracker holds the arrays.

State: (cx, cy, w, h, vx, vy, vw, vh) in pixels and pixels per second; measurement: (cx, cy, w, h).
Noise scales with the box's size, as in SORT and ByteTrack (1/20 of it for positions, by default 1/160
for velocities), so a far, small car and a near, large one are filtered alike. Time steps are explicit:
a dropped frame is one longer step. `predict_many` and `update_many` work on every track at once.

The noise is spread over time, not counted per frame: SORT's and ByteTrack's figures are per frame,
so their uncertainty grows three times faster per second at 30 frames/s than at 10 (and the velocity's
27 times), and a tracker tuned at one rate behaves differently at another. Here the figures are per
NOISE_INTERVAL_S (the driving scenes' 10 frames/s, where they were tuned) and each step adds its share
of them, so a track's uncertainty after a second unseen is the same at 14, 25 or 30 frames/s.

The motion, the noise and the measurement treat each of the four quantities apart, and a new track's
covariance is diagonal, so the 8 x 8 covariance only ever couples a quantity with its own velocity. It
is kept as those four 2 x 2 blocks, a 3 x 4 array per track: row 0 the quantities' variances, row 1
their covariances with their velocities, row 2 the velocities' variances. The filter is then
element-wise arithmetic on N x 4 arrays, the same numbers as the matrix form at a tenth of the time
(stacked 8 x 8 products and solves cost tens of microseconds each in numpy).
"""

from __future__ import annotations

import numpy as np

POSITION_NOISE = 1 / 20  # standard deviations, relative to the box's size, per NOISE_INTERVAL_S
VELOCITY_NOISE = 1 / 160  # SORT's and ByteTrack's figure, here per NOISE_INTERVAL_S
NOISE_INTERVAL_S = 0.1  # the time the noise figures are for


def _sizes(means: np.ndarray) -> np.ndarray:
    sizes: np.ndarray = np.maximum(np.maximum(means[..., 2], means[..., 3]), 1.0)
    return sizes


def initiate(box: np.ndarray, velocity_noise: float = VELOCITY_NOISE) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance blocks of a new track from its first box (cx, cy, w, h); velocity unknown."""
    size = float(_sizes(np.asarray(box)))
    mean = np.zeros(8)
    mean[:4] = box
    covariance = np.zeros((3, 4))
    covariance[0] = (2 * POSITION_NOISE * size) ** 2
    covariance[2] = (10 * velocity_noise * size / NOISE_INTERVAL_S) ** 2
    return mean, covariance


def predict_many(
    means: np.ndarray, covariances: np.ndarray, dt: float, velocity_noise: float = VELOCITY_NOISE
) -> tuple[np.ndarray, np.ndarray]:
    """Every state (N x 8 means, N x 3 x 4 covariance blocks) dt seconds later."""
    sizes = _sizes(means)[:, None]
    share = dt / NOISE_INTERVAL_S  # of the noise figures, which are per NOISE_INTERVAL_S
    position_variance = share * (POSITION_NOISE * sizes) ** 2
    velocity_variance = share * (velocity_noise * sizes / NOISE_INTERVAL_S) ** 2
    new_means = means.copy()
    new_means[:, :4] += dt * means[:, 4:]
    new_means[:, 2:4] = np.maximum(new_means[:, 2:4], 1.0)  # a box never shrinks to nothing between frames
    variance, cross, velocity = covariances[:, 0], covariances[:, 1], covariances[:, 2]
    new_covariances = np.empty_like(covariances)
    new_covariances[:, 0] = variance + 2 * dt * cross + dt * dt * velocity + position_variance
    new_covariances[:, 1] = cross + dt * velocity
    new_covariances[:, 2] = velocity + velocity_variance
    return new_means, new_covariances


def update_many(
    means: np.ndarray, covariances: np.ndarray, boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """States (N x 8, N x 3 x 4) corrected by measured boxes (N x 4: cx, cy, w, h)."""
    variance, cross, velocity = covariances[:, 0], covariances[:, 1], covariances[:, 2]
    innovation_variance = variance + (POSITION_NOISE * _sizes(means)[:, None]) ** 2
    gain, velocity_gain = variance / innovation_variance, cross / innovation_variance
    innovation = boxes - means[:, :4]
    new_means = means.copy()
    new_means[:, :4] += gain * innovation
    new_means[:, 4:] += velocity_gain * innovation
    new_covariances = np.empty_like(covariances)
    new_covariances[:, 0] = variance - gain * variance
    new_covariances[:, 1] = cross - gain * cross
    new_covariances[:, 2] = velocity - velocity_gain * cross
    return new_means, new_covariances
