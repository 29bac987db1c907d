"""Output decoders: raw network outputs -> candidate boxes (network-input pixels), scores, classes.

Layouts (batch 1):
  yolov8   1 x (4+nc) x N    cx, cy, w, h, class scores; no objectness (YOLOv8, YOLO11)
  yolov5   1 x N x (5+nc)    cx, cy, w, h, objectness, class scores (N = 3 anchors per cell)
  yolox    1 x N x (5+nc)    raw grid offsets at strides 8/16/32 (N = one per cell), then as yolov5
  yolox_decoded              the same, already decoded to pixels (exported with --decode_in_inference)
  end2end  1 x K x 6         x1, y1, x2, y2, score, class, NMS already inside (Ultralytics nms=True)
  rtdetr   1 x K x 6         cx, cy, w, h as fractions of the input, score, class (Ultralytics 8.4's
           or 1 x K x (4+nc) RT-DETR; before 8.4, class scores); one box per object by design, no NMS
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from perception.detector.defaults import DEFAULT_CONFIDENCE

LAYOUTS = ("yolov8", "yolov5", "yolox", "yolox_decoded", "end2end", "rtdetr")
NMS_INSIDE = ("end2end", "rtdetr")  # layouts whose boxes need no suppression after the model
STRIDES = (8, 16, 32)
Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]  # xyxy (N x 4), scores (N,), class ids (N,)


def cells(input_hw: tuple[int, int], strides: Sequence[int] = STRIDES) -> int:
    return sum((input_hw[0] // s) * (input_hw[1] // s) for s in strides)


def fits(layout: str, output: np.ndarray, input_hw: tuple[int, int]) -> bool:
    """Whether `output` can be of `layout`: its shape, and for rtdetr its boxes (sigmoids, so fractions
    of the input). Necessary, not sufficient: layouts that share a shape (end2end's and rtdetr's 1 x K x 6)
    are told apart by choose_layout, or by the user forcing one. A forced layout that fails this decodes
    garbage (YOLOv8's columns read from end2end's rows scored 640)."""
    if output.ndim != 3 or output.shape[0] != 1:
        return False
    _, a, b = (int(n) for n in output.shape)
    if layout == "yolov8":  # 4 + nc channels (one class at least), fewer than the anchors
        return 5 <= a < b
    if layout == "yolov5":  # 3 anchors per cell
        return b >= 6 and a == 3 * cells(input_hw)
    if layout in ("yolox", "yolox_decoded"):  # one row per cell
        return b >= 6 and a == cells(input_hw)
    if layout == "end2end":
        return b == 6
    if layout == "rtdetr":
        low, high = _box_range(output[0, :, :4])
        return b >= 5 and low >= 0 and high <= 1
    raise ValueError(f"unknown layout {layout!r}; layouts: {', '.join(LAYOUTS)}")


def supported(input_hw: tuple[int, int]) -> str:
    """The layouts' output shapes at this input, for an error about an output that fits none (or not
    the one forced)."""
    return (
        f"yolov8 1x(4+nc)xN, yolov5 1xNx(5+nc) with N={3 * cells(input_hw)}, yolox (raw or decoded) "
        f"1xNx(5+nc) with N={cells(input_hw)}, end2end 1xKx6, rtdetr 1xKx6 or 1xKx(4+nc) with boxes as "
        "fractions of the input"
    )


def class_count(layout: str, shape: Sequence[int]) -> int | None:
    """The number of classes an output of `layout` and this shape holds, where its shape tells it:
    end2end's rows hold a class id, not a score per class, and rtdetr's rows of 6 are either (score,
    class) or two class scores (told apart per frame, by _rtdetr)."""
    _, a, b = shape
    if layout == "yolov8":
        return a - 4
    if layout in ("yolov5", "yolox", "yolox_decoded"):
        return b - 5
    if layout == "rtdetr" and b != 6:
        return b - 4
    return None


def choose_layout(output: np.ndarray, input_hw: tuple[int, int]) -> str | None:
    """The layout of this output (of a blank image), or None when none fits."""
    if output.ndim != 3 or output.shape[0] != 1:
        return None
    _, a, b = output.shape
    # Cell counts first: a one-class YOLOX or YOLOv5 also has rows of 6, as end2end does.
    if fits("yolox", output, input_hw):
        # Decoded, a box's centre is its cell's (plus a small offset), so the centres span the width;
        # raw, they are offsets of a cell or two.
        return "yolox_decoded" if np.ptp(output[0, :, 0]) > input_hw[1] / 4 else "yolox"
    if fits("yolov5", output, input_hw):
        return "yolov5"
    # Rows are queries; YOLOv8's are channels. RT-DETR's boxes are sigmoids, never all 0 (a blank
    # image's included); an end2end model's are pixels, or all 0 where it found nothing.
    if b < a <= 1000 and fits("rtdetr", output, input_hw) and _box_range(output[0, :, :4])[1] > 0:
        return "rtdetr"
    if fits("end2end", output, input_hw) and a <= 1000:
        return "end2end"
    if fits("yolov8", output, input_hw):
        return "yolov8"
    return None


def shows_boxes(output: np.ndarray) -> bool:
    """Whether a 1 x K x (4+) output holds any box other than rows of 0 (a frame with nothing found)."""
    return _box_range(output[0, :, :4])[1] > 0


def _box_range(boxes: np.ndarray) -> tuple[float, float]:
    """The least and greatest coordinate of the finite boxes (a NaN row is dropped later and must not
    decide the layout); (0, 0) where there is none."""
    boxes = boxes[np.isfinite(boxes).all(axis=1)]
    return (float(boxes.min()), float(boxes.max())) if boxes.size else (0.0, 0.0)


def _xyxy(cxcywh: np.ndarray) -> np.ndarray:
    half = cxcywh[:, 2:4] / 2
    return np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)


def decode(layout: str, output: np.ndarray, input_hw: tuple[int, int], confidence: float) -> Candidates:
    if layout == "end2end":
        rows = output[0]
        rows = rows[(rows[:, 4] > confidence) & np.isfinite(rows[:, 5])]  # a NaN class names nothing
        return rows[:, :4].astype(np.float32), rows[:, 4].astype(np.float32), rows[:, 5].astype(np.int64)
    if layout == "rtdetr":
        return _rtdetr(output[0], input_hw, confidence)
    if layout == "yolov8":
        rows = output[0].T
        class_scores = rows[:, 4:]
    elif layout in ("yolov5", "yolox", "yolox_decoded"):
        rows = output[0]
        if layout == "yolox":
            rows = _yolox_grid(rows, input_hw)
        class_scores = rows[:, 5:] * rows[:, 4:5]
    else:
        raise ValueError(f"unknown layout {layout!r}; layouts: {', '.join(LAYOUTS)}")
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(rows)), class_ids]
    keep = scores > confidence
    return _xyxy(rows[keep, :4]).astype(np.float32), scores[keep].astype(np.float32), class_ids[keep]


def _rtdetr(rows: np.ndarray, input_hw: tuple[int, int], confidence: float) -> Candidates:
    """RT-DETR's queries, best first: Ultralytics 8.4 writes (score, class) after the box, earlier
    versions one score per class (told apart by whole-number classes: a 2-class model has 6 columns
    too)."""
    finite = rows[np.isfinite(rows).all(axis=1)]  # a NaN row (dropped later) must not decide the form
    if rows.shape[1] == 6 and np.array_equal(finite[:, 5], np.round(finite[:, 5])):
        named = np.isfinite(rows[:, 5])  # a NaN class names nothing: its row goes with the weak ones
        scores = np.where(named, rows[:, 4], -np.inf)
        class_ids = np.where(named, rows[:, 5], -1).astype(np.int64)
    else:
        class_ids = rows[:, 4:].argmax(axis=1)
        scores = rows[np.arange(len(rows)), 4 + class_ids]
    keep = np.flatnonzero(scores > confidence)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    height, width = input_hw
    boxes = _xyxy(rows[keep, :4] * np.array([width, height, width, height], np.float32))
    return boxes.astype(np.float32), scores[keep].astype(np.float32), class_ids[keep]


def _yolox_grid(rows: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """YOLOX's demo_postprocess: offsets + cell, times stride; exp(wh) times stride."""
    grids, strides = [], []
    for stride in STRIDES:
        h, w = input_hw[0] // stride, input_hw[1] // stride
        xv, yv = np.meshgrid(np.arange(w), np.arange(h))
        grids.append(np.stack([xv, yv], axis=2).reshape(-1, 2))
        strides.append(np.full((h * w, 1), stride))
    grid, stride_column = np.concatenate(grids), np.concatenate(strides)
    decoded = rows.astype(np.float32, copy=True)
    decoded[:, :2] = (decoded[:, :2] + grid) * stride_column
    decoded[:, 2:4] = np.exp(decoded[:, 2:4]) * stride_column
    return decoded


def nms(candidates: Candidates, iou: float, max_detections: int) -> Candidates:
    """Class-aware non-maximum suppression (OpenCV's batched NMS), best first, at most max_detections."""
    boxes, scores, class_ids = candidates
    if len(boxes) == 0:
        return candidates
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), class_ids.tolist(), 0.0, iou)
    indices = np.asarray(kept, np.int64).reshape(-1)
    keep = indices[np.argsort(-scores[indices], kind="stable")][:max_detections]
    return boxes[keep], scores[keep], class_ids[keep]


# Soft-NMS's Gaussian (Bodla et al., ICCV 2017; sigma 0.5 as theirs): a box under a better box of another
# class keeps exp(-IoU^2 / sigma) of its score, 0.14 of it on the same box.
SOFT_SIGMA = 0.5
# The most a demoted box may score: just under the default confidence. The Gaussian alone left 0.55 of a
# score at IoU 0.55, so a pedestrian at 0.49 under a car at 0.53 (one person, two names) was still
# reported at 0.27 (driving-standard, the model of 2026-12-06).
DEMOTED_CEILING = float(np.nextafter(np.float32(DEFAULT_CONFIDENCE), np.float32(0)))


def suppress_across_classes(candidates: Candidates, iou: float, confidence: float) -> Candidates:
    """One class per object: a box overlapping a better-scoring box of another class by more than `iou`
    is demoted, as Soft-NMS demotes (its score times exp(-IoU^2 / SOFT_SIGMA)) and to under the default
    confidence at most, and dropped if that leaves it below `confidence`. So at any confidence from the
    default (0.25) up an object has one name. Demoted rather than deleted: where the wrong class won, the
    right one stays in the ranking, low, which mAP counts and a deployed threshold removes. Best first."""
    boxes, scores, class_ids = candidates
    if len(boxes) < 2 or iou >= 1.0:
        return candidates
    order = np.argsort(-scores, kind="stable")
    boxes, scores, class_ids = boxes[order], scores[order], class_ids[order]
    overlap = iou_matrix(boxes, boxes)
    # Row i is demoted by the better boxes (earlier rows) of other classes it overlaps more than `iou`.
    better = np.tril(np.ones_like(overlap, bool), -1)
    demoting = better & (class_ids[:, None] != class_ids[None, :]) & (overlap > iou)
    worst = np.where(demoting, overlap, 0.0).max(axis=1)
    demoted = np.minimum(scores * np.exp(-(worst**2) / SOFT_SIGMA), DEMOTED_CEILING)
    scores = np.where(worst > 0, demoted, scores).astype(np.float32)
    keep = np.flatnonzero(scores >= confidence)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return boxes[keep], scores[keep], class_ids[keep]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (N x 4 xyxy) with every box of `b` (M x 4)."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return np.asarray(inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9))
