"""Image corruptions at 5 severities, after Hendrycks and Dietterich (ICLR 2019) as Michaelis et al.
(2019) apply them to detection: each takes an RGB uint8 frame and returns one, deterministic for a seed.
The severity parameters are theirs (the `imagecorruptions` package's); the fog's plasma fractal, the
defocus disk and the motion-blur line are written here with numpy and OpenCV.

Robustness is then reported as they define it: P = mAP on clean frames, mPC = mAP averaged over every
corruption and severity, rPC = mPC / P; the mAP used is COCO's AP@[.5:.95].
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

SEVERITIES = (1, 2, 3, 4, 5)


def gaussian_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1]
    x = image / 255.0
    return _to_uint8(x + rng.normal(size=x.shape, scale=c))


def brightness(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hsv[..., 2] = np.clip(hsv[..., 2] + c * 255, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)


def contrast(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
    x = image / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return _to_uint8((x - means) * c + means)


def jpeg(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    quality = (25, 18, 15, 10, 7)[severity - 1]
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:
        raise ValueError("OpenCV could not encode or decode a JPEG of this frame")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def defocus_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, alias_blur = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))[severity - 1]
    size = np.arange(-max(8, radius), max(8, radius) + 1)
    xx, yy = np.meshgrid(size, size)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    kernel = cv2.GaussianBlur(disk / disk.sum(), (3, 3), alias_blur)  # anti-aliased, as theirs
    return _to_uint8(cv2.filter2D(image / 255.0, -1, kernel))


def motion_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A line of Gaussian-weighted taps at a random angle (ImageMagick's motion blur, which theirs calls)."""
    radius, sigma = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))[severity - 1]
    angle = rng.uniform(-45, 45)
    taps = np.exp(-(np.arange(radius + 1) ** 2) / (2 * sigma**2))
    kernel = np.zeros((2 * radius + 1, 2 * radius + 1), np.float32)
    dx, dy = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    for i, weight in enumerate(taps):  # one side: the object was there before
        kernel[round(radius + i * dy), round(radius + i * dx)] += weight
    kernel /= kernel.sum()
    return _to_uint8(cv2.filter2D(image / 255.0, -1, kernel))


def fog(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    strength, decay = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))[severity - 1]
    x = image / 255.0
    peak = x.max()
    height, width = image.shape[:2]
    size = 1 << int(np.ceil(np.log2(max(height, width))))
    cloud = plasma_fractal(size, decay, rng)[:height, :width, None]
    return _to_uint8((x + strength * cloud) * peak / (peak + strength))


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A square of side `size` (a power of two) of fractal noise in [0, 1], by diamond-square."""
    grid = np.zeros((size, size))
    step, scale = size, 100.0
    while step >= 2:
        half = step // 2
        # squares: each cell's centre is its corners' mean plus noise
        corners = grid[0:size:step, 0:size:step]
        mean = (
            corners
            + np.roll(corners, -1, 0)
            + np.roll(corners, -1, 1)
            + np.roll(np.roll(corners, -1, 0), -1, 1)
        ) / 4
        grid[half:size:step, half:size:step] = mean + rng.uniform(-scale, scale, mean.shape)
        # diamonds: each edge midpoint is the mean of its two corners and two centres, plus noise
        centres = grid[half:size:step, half:size:step]
        corners = grid[0:size:step, 0:size:step]
        left = (corners + np.roll(corners, -1, 0) + centres + np.roll(centres, 1, 1)) / 4
        top = (corners + np.roll(corners, -1, 1) + centres + np.roll(centres, 1, 0)) / 4
        grid[half:size:step, 0:size:step] = left + rng.uniform(-scale, scale, left.shape)
        grid[0:size:step, half:size:step] = top + rng.uniform(-scale, scale, top.shape)
        step, scale = half, scale / decay
    grid -= grid.min()
    return np.asarray(grid / max(float(grid.max()), 1e-9))


CORRUPTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": gaussian_noise,
    "motion_blur": motion_blur,
    "defocus_blur": defocus_blur,
    "jpeg": jpeg,
    "brightness": brightness,
    "contrast": contrast,
    "fog": fog,
}


def corrupt(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """`image` with one corruption at one severity (1-5), the same for the same seed."""
    if name not in CORRUPTIONS:
        raise ValueError(f"corruption {name!r}: expected one of {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"corruption severity: expected 1 to 5, found {severity}")
    return CORRUPTIONS[name](image, severity, np.random.default_rng(seed))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(x * 255, 0, 255).round(), np.uint8)
