"""The colours every display uses (the viewer's overlays and the Foxglove views in recordings), so an
object looks alike wherever it is shown."""

from __future__ import annotations

import zlib

import cv2
import numpy as np

WHITE = (255, 255, 255)
GRASP_BEST, GRASP_OTHER = (60, 230, 30), (30, 160, 240)  # BGR: green, orange
PUSH = (230, 60, 200)  # BGR: violet, a push's line from where the fingers come down to where they stop


def colour(key: int) -> tuple[int, int, int]:
    """A stable, saturated BGR colour per class or track id."""
    hue = zlib.crc32(key.to_bytes(8, "little", signed=True)) % 180
    bgr = cv2.cvtColor(np.array([[[hue, 220, 255]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def rgba(key: int, alpha: float = 1.0) -> tuple[float, float, float, float]:
    """`colour(key)` as red, green, blue and alpha from 0 to 1 (Foxglove's order)."""
    b, g, r = colour(key)
    return r / 255, g / 255, b / 255, alpha
