"""`percept bench detect`: detectors side by side on the same frames: latency per stage, frames/s and,
with a scene, COCO mAP against the simulator's ground truth (pycocotools, the reference implementation).

Models run one after the other on each frame (interleaved), so drift in machine load hits all alike.
Predictions are matched to ground truth by class name, so a model with other names (a COCO export)
scores only on the classes whose names it shares (rename them with a class map).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from perception.detector.defaults import DEFAULT_CONFIDENCE
from perception.detector.vocabulary import SHIPPED_CLASSES
from perception.installed import require


@dataclass
class Row:
    model: str
    layout: str
    input_size: str
    latency_p50_ms: float  # the whole detection call
    latency_p95_ms: float
    preprocess_p50_ms: float
    inference_p50_ms: float
    postprocess_p50_ms: float
    fps: float
    map50: float | None = None
    map50_95: float | None = None


def run(
    models: list[str],
    scene: str | None,
    frames: int,
    seed: int,
    threads: int = 2,
    confidence: float = DEFAULT_CONFIDENCE,
    map_confidence: float = 0.001,
    min_pixels: int = 16,
    small_object_zoom: float = 0.0,
    small_object_rows: tuple[int, int] | None = None,
) -> tuple[list[Row], int]:
    """Rows per model, and the number of ground-truth boxes scored against. With `small_object_zoom`,
    each model whose input size is free gets a second row: the same model with a small-object pass.

    Timing runs at `confidence`, the threshold a deployed node uses; mAP is scored on a second pass at
    `map_confidence`, because a high threshold cuts the precision-recall curve short and understates it."""
    from perception.detector import Detector
    from sim.camera import CameraSpec
    from sim.dataset import frame_boxes, rendered_frames

    labels, detectors = [], []
    for model in models:
        labels.append(model)
        detectors.append(Detector(model, threads=threads, confidence=confidence))
        if small_object_zoom and detectors[-1].dynamic_size:
            labels.append(f"{model} +small")
            detectors.append(
                Detector(
                    model,
                    threads=threads,
                    confidence=confidence,
                    small_object_zoom=small_object_zoom,
                    small_object_rows=small_object_rows,
                )
            )
    images: list[np.ndarray] = []
    truth: list[list[dict[str, Any]]] = []
    if scene:
        for _, frame in rendered_frames(scene, seed, list(range(frames)), CameraSpec(width=640, height=480)):
            images.append(frame.rgb)
            # Objects in view but under the labelling threshold are "don't care" regions (COCO's
            # iscrowd, KITTI's DontCare): finding them is no error, missing them no miss.
            truth.append(
                [
                    box if box["pixels"] >= min_pixels else dict(box, ignore=True)
                    for box in frame_boxes(frame, 1)
                ]
            )
    else:
        rng = np.random.default_rng(seed)
        images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(frames)]
    for detector in detectors:  # warm-up: allocations, caches
        detector(images[0])
    timings: list[list[dict[str, float]]] = [[] for _ in detectors]
    for image in images:
        for i, detector in enumerate(detectors):
            detector(image)
            timings[i].append(detector.timings_ms)
    predictions: list[list[Any]] = [[] for _ in detectors]
    if scene:
        for detector, preds in zip(detectors, predictions, strict=True):
            detector.retune(confidence=map_confidence)
            preds.extend(detector(image) for image in images)
    rows = []
    for label, detector, times, preds in zip(labels, detectors, timings, predictions, strict=True):
        total = np.array([sum(t.values()) for t in times])
        size = "x".join(map(str, detector.input_hw))
        row = Row(
            model=label,
            layout=detector.layout,
            input_size=size + (f" +x{detector.small_object_zoom:g}" if detector.small_object_zoom else ""),
            latency_p50_ms=round(float(np.percentile(total, 50)), 2),
            latency_p95_ms=round(float(np.percentile(total, 95)), 2),
            preprocess_p50_ms=round(float(np.median([t["preprocess"] for t in times])), 2),
            inference_p50_ms=round(float(np.median([t["inference"] for t in times])), 2),
            postprocess_p50_ms=round(float(np.median([t["postprocess"] for t in times])), 2),
            fps=round(1000.0 / float(total.mean()), 1),
        )
        if scene:
            row.map50, row.map50_95 = coco_map(truth, preds)
        rows.append(row)
    return rows, sum(1 for boxes in truth for box in boxes if not box.get("ignore"))


def coco_map(truth: list[list[dict[str, Any]]], predictions: list[Any]) -> tuple[float, float]:
    """(mAP@0.5, mAP@0.5:0.95) with pycocotools; 0 when the model predicts nothing it can be scored on.
    Truth boxes marked `ignore` become crowd regions: detections on them count neither way."""
    require("pycocotools", "percept bench detect --scene")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ground = COCO()
    annotations: list[dict[str, Any]] = []
    for image_id, boxes in enumerate(truth):
        for box in boxes:
            x1, y1, x2, y2 = box["xyxy"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": box["class_id"],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(bool(box.get("ignore"))),
                }
            )
    ground.dataset = {
        "images": [{"id": i} for i in range(len(truth))],
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for i, n in enumerate(SHIPPED_CLASSES)],
    }
    results = []
    for image_id, result in enumerate(predictions):
        for box, score, name in zip(result.xyxy, result.scores, result.class_names, strict=True):
            if name in SHIPPED_CLASSES:
                x1, y1, x2, y2 = (float(v) for v in box)
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": SHIPPED_CLASSES.index(name),
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": float(score),
                    }
                )
    if not results or not any(not a["iscrowd"] for a in annotations):
        return 0.0, 0.0  # pycocotools' loadRes([]) raises: nothing to score is a score of 0
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
        ground.createIndex()
        evaluation = COCOeval(ground, ground.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return round(float(evaluation.stats[1]), 4), round(float(evaluation.stats[0]), 4)


def table(rows: list[Row]) -> str:
    head = (
        f"{'model':<32} {'layout':<13} {'input':>16} {'p50 ms':>7} {'p95 ms':>7} {'pre':>6} {'infer':>6} "
        f"{'post':>6} {'fps':>6} {'mAP50':>6} {'mAP50-95':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        scores = (
            f"{r.map50:>6.3f} {r.map50_95:>8.3f}"
            if r.map50 is not None and r.map50_95 is not None
            else f"{'-':>6} {'-':>8}"
        )
        lines.append(
            f"{r.model[-32:]:<32} {r.layout:<13} {r.input_size:>16} {r.latency_p50_ms:>7.2f} {r.latency_p95_ms:>7.2f} "
            f"{r.preprocess_p50_ms:>6.2f} {r.inference_p50_ms:>6.2f} {r.postprocess_p50_ms:>6.2f} {r.fps:>6.1f} {scores}"
        )
    return "\n".join(lines)
