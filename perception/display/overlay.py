"""Drawing for the viewer, on arrays alone: any image encoding made displayable, then detection boxes,
track ids with their trails, and grasps (projected from the world through the camera) drawn on it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import cv2
import numpy as np

from perception import msgs
from perception.display.palette import GRASP_BEST, GRASP_OTHER, PUSH, WHITE, colour
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


LABEL_FONT, LABEL_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.45


def _label_size(text: str) -> tuple[int, int]:
    (w, h), base = cv2.getTextSize(text, LABEL_FONT, LABEL_SCALE, 1)
    return w + 4, h + base + 2


PlacedLabels = list[tuple[int, int, int, int]]  # the labels on a canvas so far (x1, y1, x2, y2)


def _place_labels(
    shape: tuple[int, ...],
    labels: list[tuple[str, tuple[int, int, int, int]]],
    placed: PlacedLabels | None = None,
) -> list[tuple[int, int]]:
    """Top-left corners for labels (text, box xyxy) given best first: each goes above its box, else
    inside its top edge, else below it, else stacked downwards, wherever it overlaps no label placed
    before it (so the best label keeps its place and the others make room). `placed` holds the labels
    drawn on the canvas already (another overlay's: a track's '#1 cube' beside a detection's 'cube
    0.92'), and gets these."""
    height, width = shape[0], shape[1]
    placed = [] if placed is None else placed
    corners = []
    for text, (x1, y1, _, y2) in labels:
        w, h = _label_size(text)
        x = int(np.clip(x1, 0, max(width - w, 0)))
        candidates = [y1 - h, y1, y2] + [y1 + k * h for k in range(1, 12)]
        spot = None
        for y in candidates:
            y = int(np.clip(y, 0, max(height - h, 0)))
            if not any(x < px2 and px1 < x + w and y < py2 and py1 < y + h for px1, py1, px2, py2 in placed):
                spot = (x, y)
                break
        spot = spot or (x, int(np.clip(y1 - h, 0, max(height - h, 0))))  # no room: above its box
        placed.append((spot[0], spot[1], spot[0] + w, spot[1] + h))
        corners.append(spot)
    return corners


def _draw_label(canvas: np.ndarray, text: str, corner: tuple[int, int], bgr: tuple[int, int, int]) -> None:
    w, h = _label_size(text)
    x, y = corner
    cv2.rectangle(canvas, (x, y), (x + w, y + h), bgr, -1)
    (_, text_h), _ = cv2.getTextSize(text, LABEL_FONT, LABEL_SCALE, 1)
    cv2.putText(canvas, text, (x + 2, y + text_h + 1), LABEL_FONT, LABEL_SCALE, WHITE, 1, cv2.LINE_AA)


def _boxes(
    canvas: np.ndarray,
    items: list[tuple[Sequence[float], tuple[int, int, int], str]],
    placed: PlacedLabels | None,
) -> None:
    """Boxes with labels, `items` best first: every box, then the labels placed so that none covers
    another, drawn worst first so that, where they must overlap, the best is on top."""
    boxes: list[tuple[int, int, int, int]] = []
    for xyxy, _, _ in items:
        x1, y1, x2, y2 = (round(float(v)) for v in xyxy)
        boxes.append((x1, y1, x2, y2))
    for (x1, y1, x2, y2), (_, bgr, _) in zip(boxes, items, strict=True):
        cv2.rectangle(canvas, (x1, y1), (x2, y2), bgr, 2)
    corners = _place_labels(
        canvas.shape, [(text, box) for box, (_, _, text) in zip(boxes, items, strict=True)], placed
    )  # type: ignore[misc]
    for corner, (_, bgr, text) in reversed(list(zip(corners, items, strict=True))):
        _draw_label(canvas, text, corner, bgr)


def draw_detections(
    canvas: np.ndarray, detections: msgs.Detections, placed: PlacedLabels | None = None
) -> None:
    """Boxes with 'class score', the best first; `placed`: labels on the canvas already (they stay)."""
    order = np.argsort(-np.asarray(detections.scores), kind="stable")  # best first
    _boxes(
        canvas,
        [
            (
                detections.xyxy[i],
                colour(int(detections.class_ids[i])),
                f"{detections.class_names[i] or detections.class_ids[i]} {detections.scores[i]:.2f}",
            )
            for i in order
        ],
        placed,
    )


def draw_tracks(
    canvas: np.ndarray,
    tracks: msgs.Tracks,
    trails: Mapping[int, Iterable[tuple[float, float]]],
    placed: PlacedLabels | None = None,
) -> None:
    """Boxes with '#id class' (and distance when known), each with its trail of past bottom centres;
    the nearest first, so that its label keeps its place; `placed` as draw_detections'."""
    items = []
    distances = (
        np.asarray(tracks.distances, np.float64)
        if len(tracks.distances)
        else np.full(len(tracks.ids), np.nan)
    )
    for i in np.argsort(np.where(np.isfinite(distances), distances, np.inf), kind="stable"):
        track_id, name, xyxy = tracks.ids[i], tracks.class_names[i], tracks.xyxy[i]
        bgr = colour(int(track_id))
        trail = np.array(list(trails.get(int(track_id), [])), np.float32).reshape(-1, 2)
        if len(trail) > 1:
            cv2.polylines(canvas, [np.round(trail).astype(np.int32)], False, bgr, 2, cv2.LINE_AA)
        distance = float(distances[i])
        items.append(
            (xyxy, bgr, f"#{int(track_id)} {name}" + (f" {distance:.1f} m" if np.isfinite(distance) else ""))
        )
    _boxes(canvas, items, placed)


def project(points: np.ndarray, info: msgs.CameraInfo) -> np.ndarray:
    """Pixels (N x 2) of world points (N x 3) seen by the camera of `info`; NaN behind the camera."""
    rotation = matrix_from_quaternion(info.pose.orientation)
    camera = (np.asarray(points, np.float64) - np.asarray(info.pose.position)) @ rotation
    z = camera[:, 2:3]
    pixels: np.ndarray = (camera @ info.K.T)[:, :2] / np.where(z > 1e-6, z, np.nan)
    return pixels


def draw_grasps(canvas: np.ndarray, grasps: msgs.Grasps, info: msgs.CameraInfo) -> None:
    """Each grasp as its closing line (finger to finger, as wide as the opening) with a dot at its
    centre, the best one green, the others orange; each push as a violet arrow along its line."""
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
    for start, end in zip(grasps.push_starts, grasps.push_ends, strict=True):  # pushes: an arrow each
        pixels = project(np.array([start, end]), info)
        if np.isfinite(pixels).all():
            a, b = (tuple(round(float(v)) for v in p) for p in pixels)
            cv2.arrowedLine(canvas, a, b, PUSH, 2, cv2.LINE_AA, tipLength=0.25)
