"""Drawing for the viewer, on arrays alone: any image encoding made displayable, then detection boxes,
track ids with their trails, and grasps (projected from the world through the camera) drawn on it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import cv2
import numpy as np

from perception import msgs
from perception.display.palette import GRASP_BEST, GRASP_OTHER, WHITE, colour
from perception.geometry import matrix_from_quaternion


def displayable(image: msgs.Image) -> np.ndarray:
    """A BGR uint8 copy of any image encoding: depth and 16-bit images are spread over a colour map
    (near is warm), with invalid pixels (NaN, 0, inf) black."""
    data = image.data
    if image.encoding == "rgb8":
        return cv2.cvtColor(data, cv2.COLOR_RGB2BGR)
    if image.encoding == "rgba8":
        return cv2.cvtColor(data, cv2.COLOR_RGBA2BGR)
    if image.encoding == "bgr8":
        return data.copy()
    if image.encoding == "mono8":
        return cv2.cvtColor(data.reshape(data.shape[:2]), cv2.COLOR_GRAY2BGR)
    values = data.reshape(data.shape[:2]).astype(np.float32)
    valid = np.isfinite(values) & (values > 0)
    if not valid.any():
        return np.zeros((*values.shape, 3), np.uint8)
    low, high = np.percentile(values[valid], [1, 99])
    scaled = np.clip(np.where(valid, values - low, 0) / max(high - low, 1e-6), 0, 1)
    grey = ((1 - scaled) * 255).astype(np.uint8)
    coloured: np.ndarray = cv2.applyColorMap(grey, cv2.COLORMAP_TURBO)
    coloured[~valid] = 0
    return coloured


def _label(canvas: np.ndarray, text: str, x: int, y: int, bgr: tuple[int, int, int]) -> None:
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    top = max(y - h - base - 2, 0)
    cv2.rectangle(canvas, (x, top), (x + w + 4, top + h + base + 2), bgr, -1)
    cv2.putText(canvas, text, (x + 2, top + h + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45, WHITE, 1, cv2.LINE_AA)


def _box(canvas: np.ndarray, xyxy: Sequence[float], bgr: tuple[int, int, int], text: str) -> None:
    x1, y1, x2, y2 = (round(float(v)) for v in xyxy)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), bgr, 2)
    _label(canvas, text, x1, y1, bgr)


def draw_detections(canvas: np.ndarray, detections: msgs.Detections) -> None:
    for xyxy, score, class_id, name in zip(
        detections.xyxy, detections.scores, detections.class_ids, detections.class_names, strict=True
    ):
        _box(canvas, xyxy, colour(int(class_id)), f"{name or class_id} {score:.2f}")


def draw_tracks(
    canvas: np.ndarray, tracks: msgs.Tracks, trails: Mapping[int, Iterable[tuple[float, float]]]
) -> None:
    """Boxes with '#id class' (and distance when known), each with its trail of past bottom centres."""
    for i, (track_id, name, xyxy) in enumerate(zip(tracks.ids, tracks.class_names, tracks.xyxy, strict=True)):
        bgr = colour(int(track_id))
        trail = np.array(list(trails.get(int(track_id), [])), np.float32).reshape(-1, 2)
        if len(trail) > 1:
            cv2.polylines(canvas, [np.round(trail).astype(np.int32)], False, bgr, 2, cv2.LINE_AA)
        distance = float(tracks.distances[i]) if len(tracks.distances) else float("nan")
        text = f"#{int(track_id)} {name}" + (f" {distance:.1f} m" if np.isfinite(distance) else "")
        _box(canvas, xyxy, bgr, text)


def project(points: np.ndarray, info: msgs.CameraInfo) -> np.ndarray:
    """Pixels (N x 2) of world points (N x 3) seen by the camera of `info`; NaN behind the camera."""
    rotation = matrix_from_quaternion(info.pose.orientation)
    camera = (np.asarray(points, np.float64) - np.asarray(info.pose.position)) @ rotation
    z = camera[:, 2:3]
    pixels: np.ndarray = (camera @ info.K.T)[:, :2] / np.where(z > 1e-6, z, np.nan)
    return pixels


def draw_grasps(canvas: np.ndarray, grasps: msgs.Grasps, info: msgs.CameraInfo) -> None:
    """Each grasp as its closing line (finger to finger, as wide as the opening) with a dot at its
    centre; the best one green, the others orange."""
    for rank, (position, orientation, width) in enumerate(
        zip(grasps.positions, grasps.orientations, grasps.widths, strict=True)
    ):
        closing = matrix_from_quaternion(orientation)[:, 1]  # the hand's y axis
        ends = np.array([position - closing * width / 2, position + closing * width / 2, position])
        pixels = project(ends, info)
        if not np.isfinite(pixels).all():
            continue
        a, b, centre = (tuple(round(float(v)) for v in p) for p in pixels)
        bgr = GRASP_BEST if rank == 0 else GRASP_OTHER
        cv2.line(canvas, a, b, bgr, 3 if rank == 0 else 2, cv2.LINE_AA)
        for end in (a, b):
            cv2.circle(canvas, end, 4, bgr, -1, cv2.LINE_AA)
        cv2.circle(canvas, centre, 3, WHITE, -1, cv2.LINE_AA)
