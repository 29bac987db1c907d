"""Detection metrics on arrays, for `percept bench detect`: per class what `yolo val` reports (instances,
precision and recall at the chosen confidence, AP@0.5 and AP@0.5:0.95), COCO's size buckets, and an
error breakdown in the manner of TIDE (Bolya et al., ECCV 2020).

mAP comes from pycocotools (the reference COCO evaluation, 101 recall points). The error breakdown is
ours, at IoU 0.5 with TIDE's thresholds (foreground 0.5, background 0.1): every false positive gets one
error, in this order of precedence:
- duplicate: it overlaps (IoU >= 0.5) a box of its class that a higher-scoring detection already took;
- classification: it overlaps (IoU >= 0.5) a box of another class; a "cross-class duplicate" when that
  box was also found under its own class (one object reported twice, under two names);
- localisation: it overlaps a box of its class, but 0.1 <= IoU < 0.5;
- both: it overlaps a box of another class, 0.1 <= IoU < 0.5;
- background: it overlaps nothing (IoU < 0.1);
and a ground-truth box that no detection found nor came near (no classification or localisation error
aims at it) is missed. Each error is reported as the AP@0.5 it costs: the mean AP over the covered
classes with that one kind of error fixed (a wrong class or box corrected where its object was not
found otherwise, the detection removed where it was; missed boxes taken out of the count), minus the
mean AP as it is. Classes a model cannot produce (not covered by its names or class map) are left out
of its means.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from perception.installed import require

FOREGROUND_IOU, BACKGROUND_IOU = 0.5, 0.1
ERRORS = ("classification", "localisation", "both", "duplicate", "background", "missed")
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's


@dataclass
class ClassResult:
    name: str
    instances: int  # ground-truth boxes (not counting don't-care regions)
    precision: float  # at the chosen confidence, IoU 0.5
    recall: float
    ap50: float
    ap50_95: float


@dataclass
class Evaluation:
    classes: list[ClassResult]  # the covered classes with instances
    not_covered: list[str]  # classes with instances that the model cannot produce
    map50: float
    map50_95: float
    size_map50_95: dict[str, float]  # COCO's small / medium / large buckets (-1: no box of that size)
    errors_dap: dict[str, float]  # AP@0.5 points (0-100) each kind of error costs, over the whole curve
    error_counts: dict[str, int]  # at the chosen confidence: what a deployed node would show
    cross_class_duplicates: int  # at the chosen confidence
    by_visible_fraction: dict[str, float | None]  # mAP50 of the boxes in each band (None: none there)
    by_distance: dict[str, float | None]  # mAP50 by the object's distance from the camera, in metres
    pr_curves50: dict[str, list[float]]  # per class: precision at COCO's 101 recall points, IoU 0.5
    confusion: dict[str, Any]  # labels and matrix[truth][predicted] at the confidence, IoU 0.5


# -- one frame's boxes -------------------------------------------------------------------------------


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N x 4 xyxy) with every box in `b` (M x 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return np.asarray(inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9))


@dataclass
class _Detection:
    image: int
    score: float
    name: str
    matched: int = -1  # the ground-truth box it found (image-local index), or -1
    error: str = ""  # for a false positive: which kind
    target: int = -1  # the ground-truth box its error points at
    target_name: str = ""
    ignored: bool = False  # on a don't-care region: counts neither way


def match_frame(
    image: int, truth: list[dict[str, Any]], boxes: np.ndarray, scores: np.ndarray, names: list[str]
) -> tuple[list[_Detection], list[bool], list[bool]]:
    """Greedy matching by score (as COCO does at one threshold), then one error per false positive.
    Returns the detections, which truth boxes were found, and which are don't-care regions."""
    gt_boxes = np.array([t["xyxy"] for t in truth], np.float64).reshape(-1, 4)
    gt_names = [t["name"] for t in truth]
    ignore = [bool(t.get("ignore")) for t in truth]
    overlaps = iou(np.asarray(boxes, np.float64).reshape(-1, 4), gt_boxes)
    found = [False] * len(truth)
    detections = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        d = _Detection(image, float(scores[i]), names[i])
        row = overlaps[i] if len(truth) else np.zeros(0)
        same = np.array([n == d.name for n in gt_names], bool)
        free = same & ~np.array(found, bool) & ~np.array(ignore, bool)
        if free.any() and row[free].max() >= FOREGROUND_IOU:
            d.matched = int(np.flatnonzero(free)[np.argmax(row[free])])
            found[d.matched] = True
        elif any(ignore) and row[np.array(ignore)].max() >= FOREGROUND_IOU:
            d.ignored = True
        else:
            _classify(d, row, same, np.array(ignore, bool), found, gt_names)
        detections.append(d)
    return detections, found, ignore


def _classify(
    d: _Detection,
    row: np.ndarray,
    same: np.ndarray,
    ignore: np.ndarray,
    found: list[bool],
    gt_names: list[str],
) -> None:
    real = ~ignore
    other = ~same & real
    same_real = same & real

    def best(mask: np.ndarray) -> tuple[int, float]:
        if not mask.any():
            return -1, 0.0
        index = int(np.flatnonzero(mask)[np.argmax(row[mask])])
        return index, float(row[index])

    same_best, same_iou = best(same_real)
    other_best, other_iou = best(other)
    if same_iou >= FOREGROUND_IOU:  # its object was already taken by a better detection
        d.error, d.target = "duplicate", same_best
    elif other_iou >= FOREGROUND_IOU:
        d.error, d.target = "classification", other_best
    elif same_iou >= BACKGROUND_IOU:
        d.error, d.target = "localisation", same_best
    elif other_iou >= BACKGROUND_IOU:
        d.error, d.target = "both", other_best
    else:
        d.error = "background"
    if d.target >= 0:
        d.target_name = gt_names[d.target]


# -- AP ----------------------------------------------------------------------------------------------


def average_precision(scores: list[float], true_positive: list[bool], instances: int) -> float:
    """AP of one class as COCO computes it: precision made monotone, sampled at 101 recall points."""
    if instances == 0:
        return float("nan")
    if not scores:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    tp = np.asarray(true_positive, bool)[order]
    tps, fps = np.cumsum(tp), np.cumsum(~tp)
    recall = tps / instances
    precision = tps / np.maximum(tps + fps, 1e-9)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    indices = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(indices < len(precision), precision[np.minimum(indices, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def _mean_ap(
    detections: list[_Detection],
    instances: dict[str, int],
    missed: dict[str, int],
    classes: list[str],
    fix: str = "",
) -> float:
    """Mean AP@0.5 over `classes`, with one kind of error fixed."""
    per_class: dict[str, tuple[list[float], list[bool]]] = {c: ([], []) for c in classes}
    counts = dict(instances)
    taken: set[tuple[int, int]] = {(d.image, d.matched) for d in detections if d.matched >= 0}
    for d in detections:
        if d.ignored:
            continue
        name, tp = d.name, d.matched >= 0
        if not tp and d.error == fix:
            if fix in ("classification", "localisation") and (d.image, d.target) not in taken:
                name, tp = d.target_name, True  # corrected: it found its object after all
                taken.add((d.image, d.target))
            else:
                continue  # fixed by removing it
        if name in per_class:
            per_class[name][0].append(d.score)
            per_class[name][1].append(tp)
    if fix == "missed":  # fixed by taking the missed boxes out of the count
        counts = {name: count - missed.get(name, 0) for name, count in counts.items()}
    values = [average_precision(*per_class[c], counts.get(c, 0)) for c in classes if counts.get(c, 0) > 0]
    return float(np.mean(values)) if values else 0.0


def _match_frames(
    truth: list[list[dict[str, Any]]],
    predictions: list[tuple[np.ndarray, np.ndarray, list[str]]],
    kept: set[str],
) -> list[tuple[list[_Detection], list[bool], list[bool]]]:
    """`match_frame` on every frame, with the detections of the classes in `kept` only."""
    matched = []
    for image, ((xyxy, scores, names), boxes) in enumerate(zip(predictions, truth, strict=True)):
        keep = [i for i, n in enumerate(names) if n in kept]
        matched.append(
            match_frame(
                image, boxes, np.asarray(xyxy)[keep], np.asarray(scores)[keep], [names[i] for i in keep]
            )
        )
    return matched


def _instances(truth: list[list[dict[str, Any]]], classes: list[str]) -> dict[str, int]:
    """Ground-truth boxes per class, don't-care regions left out."""
    instances = dict.fromkeys(classes, 0)
    for boxes in truth:
        for box in boxes:
            if not box.get("ignore") and box["name"] in instances:
                instances[box["name"]] += 1
    return instances


# -- the whole evaluation ----------------------------------------------------------------------------


def evaluate(
    truth: list[list[dict[str, Any]]],
    predictions: list[tuple[np.ndarray, np.ndarray, list[str]]],
    classes: list[str],
    covered: set[str],
    confidence: float,
) -> Evaluation:
    """`truth[i]`: frame i's boxes ({"xyxy", "name", "ignore"?}); `predictions[i]`: (xyxy, scores,
    class names) of one model on frame i, at a low threshold (mAP needs the whole curve); `classes`: the
    vocabulary scored; `covered`: those the model can produce; `confidence`: where precision and recall
    are read, as a deployed node would run."""
    instances = _instances(truth, classes)
    present = [c for c in classes if instances[c] > 0]
    scored = [c for c in present if c in covered]
    not_covered = [c for c in present if c not in covered]

    producible = {c for c in classes if c in covered}
    detections: list[_Detection] = []
    missed = dict.fromkeys(scored, 0)
    missed_at_confidence = 0
    matched = _match_frames(truth, predictions, producible)  # errors on any class count
    for frame_truth, (frame_detections, found, ignore) in zip(truth, matched, strict=True):
        aimed = {d.target for d in frame_detections if d.error in ("classification", "localisation")}
        sure = [d for d in frame_detections if d.score >= confidence]
        found_sure = {d.matched for d in sure} | {
            d.target for d in sure if d.error in ("classification", "localisation")
        }
        for index, box in enumerate(frame_truth):
            if ignore[index] or box["name"] not in scored:
                continue
            if not found[index] and index not in aimed:
                missed[box["name"]] += 1
            missed_at_confidence += index not in found_sure
        detections += frame_detections

    sure = [d for d in detections if d.score >= confidence]
    found_objects = {(d.image, d.matched) for d in sure if d.matched >= 0}
    cross = sum(1 for d in sure if d.error == "classification" and (d.image, d.target) in found_objects)
    counts = {e: sum(1 for d in sure if d.error == e) for e in ERRORS[:-1]}
    counts["missed"] = missed_at_confidence
    base = _mean_ap(detections, instances, missed, scored)
    dap = {e: round(100 * (_mean_ap(detections, instances, missed, scored, fix=e) - base), 2) for e in ERRORS}

    per_class_pr = _precision_recall(detections, instances, scored, confidence)
    ap50, ap50_95, sizes, curves = _coco(truth, predictions, classes, scored)
    results = [
        ClassResult(c, instances[c], *per_class_pr[c], ap50.get(c, 0.0), ap50_95.get(c, 0.0)) for c in scored
    ]
    mean = (
        (
            round(float(np.mean([r.ap50 for r in results])), 4),
            round(float(np.mean([r.ap50_95 for r in results])), 4),
        )
        if results
        else (0.0, 0.0)
    )
    by_visible = ap50_by_band(truth, predictions, classes, covered, "visible_fraction", VISIBLE_BANDS)
    by_distance = ap50_by_band(truth, predictions, classes, covered, "distance", DISTANCE_BANDS)
    return Evaluation(
        results,
        not_covered,
        mean[0],
        mean[1],
        sizes,
        dap,
        counts,
        cross,
        by_visible,
        by_distance,
        curves,
        confusion(truth, predictions, classes, confidence),
    )


def confusion(
    truth: list[list[dict[str, Any]]],
    predictions: list[tuple[np.ndarray, np.ndarray, list[str]]],
    classes: list[str],
    confidence: float,
) -> dict[str, Any]:
    """Which class each object was detected as, as `yolo val` draws it: detections at the confidence
    matched to objects of any class by IoU >= 0.5 (highest score first, each object once); an object
    nobody found counts under the predicted "background", a detection that found nothing under the
    true "background". Don't-care regions and names outside `classes` are left out."""
    labels = [*classes, "background"]
    index = {name: i for i, name in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), np.int64)
    for boxes, (xyxy, scores, names) in zip(truth, predictions, strict=True):
        scores = np.asarray(scores)
        keep = [
            i for i in np.argsort(-scores, kind="stable") if scores[i] >= confidence and names[i] in index
        ]
        gt = np.array([b["xyxy"] for b in boxes], np.float64).reshape(-1, 4)
        overlaps = iou(np.asarray(xyxy, np.float64).reshape(-1, 4), gt)
        taken = np.array([bool(b.get("ignore")) or b["name"] not in index for b in boxes], bool)
        for i in keep:
            row = np.where(taken, -1.0, overlaps[i]) if len(boxes) else np.zeros(0)
            if len(row) and row.max() >= FOREGROUND_IOU:
                j = int(np.argmax(row))
                taken[j] = True
                matrix[index[boxes[j]["name"]], index[names[i]]] += 1
            elif not (len(boxes) and any(b.get("ignore") for b in boxes) and _on_ignored(overlaps[i], boxes)):
                matrix[index["background"], index[names[i]]] += 1
        for j, box in enumerate(boxes):
            if not taken[j]:
                matrix[index[box["name"]], index["background"]] += 1
    return {"labels": labels, "matrix": matrix.tolist()}


def _on_ignored(row: np.ndarray, boxes: list[dict[str, Any]]) -> bool:
    return any(b.get("ignore") and row[j] >= FOREGROUND_IOU for j, b in enumerate(boxes))


# What the simulator knows and `yolo val` cannot: how much of each object shows (its visible pixels
# over its pixels rendered alone) and how far it is. KITTI's difficulty levels are the template.
VISIBLE_BANDS = {
    "hidden (< 0.5)": (0.0, 0.5),
    "partly (0.5-0.9)": (0.5, 0.9),
    "visible (>= 0.9)": (0.9, 1.01),
}
DISTANCE_BANDS = {"< 2 m": (0.0, 2.0), "2-15 m": (2.0, 15.0), "15-30 m": (15.0, 30.0), ">= 30 m": (30.0, 1e9)}


def ap50_by_band(
    truth: list[list[dict[str, Any]]],
    predictions: list[tuple[np.ndarray, np.ndarray, list[str]]],
    classes: list[str],
    covered: set[str],
    key: str,
    bands: dict[str, tuple[float, float]],
) -> dict[str, float | None]:
    """Mean AP50 of the boxes whose `key` lies in each band. The boxes outside a band become don't-care
    regions for it (finding them is no error); a detection that matches nothing stays a false positive
    in every band, since nothing tells which band it would belong to. None for a band without boxes,
    or where the truth has no `key`."""
    out: dict[str, float | None] = {}
    scored = [c for c in classes if c in covered]
    for label, (low, high) in bands.items():
        banded = [
            [
                dict(box, ignore=bool(box.get("ignore")) or not (key in box and low <= box[key] < high))
                for box in boxes
            ]
            for boxes in truth
        ]
        instances = _instances(banded, scored)
        present = [c for c in scored if instances[c]]
        if not present:
            out[label] = None
            continue
        detections = [d for frame in _match_frames(banded, predictions, set(scored)) for d in frame[0]]
        out[label] = round(_mean_ap(detections, instances, {}, present), 4)
    return out


def _precision_recall(
    detections: list[_Detection], instances: dict[str, int], classes: list[str], confidence: float
) -> dict[str, tuple[float, float]]:
    out = {}
    for c in classes:
        kept = [d for d in detections if d.name == c and not d.ignored and d.score >= confidence]
        tp = sum(1 for d in kept if d.matched >= 0)
        out[c] = (
            round(tp / len(kept), 4) if kept else 0.0,
            round(tp / instances[c], 4) if instances[c] else 0.0,
        )
    return out


def require_pycocotools() -> None:
    """The one-line error naming the extra, where pycocotools (which every mAP here needs) is missing."""
    require("pycocotools", "percept bench detect's mAP (--scene, --suite, --data)")


def _coco(
    truth: list[list[dict[str, Any]]],
    predictions: list[tuple[np.ndarray, np.ndarray, list[str]]],
    classes: list[str],
    scored: list[str],
) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, list[float]]]:
    """Per-class AP@0.5 and AP@0.5:0.95, the size buckets' mAP@0.5:0.95 and per-class precision at
    the 101 recall points at IoU 0.5, from pycocotools, over the scored classes only."""
    require_pycocotools()
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ids = {name: i for i, name in enumerate(classes)}
    annotations: list[dict[str, Any]] = []
    for image_id, boxes in enumerate(truth):
        for box in boxes:
            if box["name"] not in ids:
                continue
            x1, y1, x2, y2 = box["xyxy"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": ids[box["name"]],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(bool(box.get("ignore"))),
                }
            )
    results = []
    for image_id, (xyxy, scores, names) in enumerate(predictions):
        for box, score, name in zip(xyxy, scores, names, strict=True):
            if name in scored:
                x1, y1, x2, y2 = (float(v) for v in box)
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": ids[name],
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": float(score),
                    }
                )
    empty = {"small": -1.0, "medium": -1.0, "large": -1.0}
    if not results or not scored:
        return {}, {}, empty, {}
    ground = COCO()
    ground.dataset = {
        "images": [{"id": i} for i in range(len(truth))],
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for n, i in ids.items()],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
        ground.createIndex()
        evaluation = COCOeval(ground, ground.loadRes(results), "bbox")
        evaluation.params.catIds = [ids[c] for c in scored]  # uncovered classes are no zeros
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"]  # [IoU, recall, class, area, max detections]
    ap50, ap50_95, curves = {}, {}, {}
    for k, name in enumerate(scored):
        curve = precision[:, :, k, 0, -1]
        curves[name] = [round(max(float(v), 0.0), 3) for v in curve[0]]
        ap50[name] = round(float(np.mean(curve[0][curve[0] > -1])) if (curve[0] > -1).any() else 0.0, 4)
        ap50_95[name] = round(float(np.mean(curve[curve > -1])) if (curve > -1).any() else 0.0, 4)
    sizes = {
        name: round(float(evaluation.stats[i]), 4) for i, name in ((3, "small"), (4, "medium"), (5, "large"))
    }
    return ap50, ap50_95, sizes, curves
