"""`percept bench detect`: detectors side by side on the same frames: latency per stage, frames/s and,
with a scene, COCO mAP against the simulator's ground truth (pycocotools, the reference implementation).

Models run one after the other on each frame (interleaved), so drift in machine load hits all alike.
Predictions are matched to ground truth by class name, so a model with other names (a COCO export)
scores on the classes its names cover through a class map (class_maps.py, `--class-map coco`); the
classes it cannot produce are reported as not covered and left out of its means. With a scene, each
model also gets per-class figures, COCO's size buckets and a TIDE-style error breakdown
(detection_metrics.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from perception.bench.class_maps import covered
from perception.detector.defaults import DEFAULT_CONFIDENCE
from perception.detector.vocabulary import SHIPPED_CLASSES
from perception.errors import PerceptError


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
    map50: float | None = None  # over the classes the model covers
    map50_95: float | None = None
    evaluation: dict[str, Any] | None = None  # per class, sizes, errors (detection_metrics.Evaluation)
    robustness: dict[str, Any] | None = None  # corruption: mAP50-95 per severity; mPC, rPC
    failed: str = ""  # why this model could not be benchmarked; the others still are
    file_mb: float = 0.0  # the ONNX file, as `yolo benchmark` lists it
    provider: str = ""  # the onnxruntime execution provider it ran on
    memory_mb: float = 0.0  # resident memory the process grew by, loading it and running one frame


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
    class_map: dict[str, str] | None = None,
    corruptions: list[str] | None = None,
    severities: tuple[int, ...] = (1, 2, 3, 4, 5),
    progress: Callable[[str], None] = lambda line: None,
    providers: tuple[str, ...] = ("cpu",),
) -> tuple[list[Row], int]:
    """Rows per model, and the number of ground-truth boxes scored against. With `small_object_zoom`,
    each model whose input size is free gets a second row: the same model with a small-object pass.

    Timing runs at `confidence`, the threshold a deployed node uses; mAP is scored on a second pass at
    `map_confidence`, because a high threshold cuts the precision-recall curve short and understates it."""
    from perception.detector import Detector
    from sim.camera import CameraSpec
    from sim.dataset import frame_boxes, rendered_frames

    labels: list[str] = []
    detectors: list[Any] = []
    failed: list[Row] = []
    memory: dict[int, float] = {}
    for model in models:
        for provider in providers:
            label = model if len(providers) == 1 else f"{model} [{provider}]"
            before = _resident_mb()
            try:
                detector = Detector(
                    model,
                    provider=provider,
                    threads=threads,
                    confidence=confidence,
                    class_map=dict(class_map or {}),
                )
                detector(np.zeros((480, 640, 3), np.uint8))  # its arena grows on the first frame
            except PerceptError as exc:  # one bad model never stops the others: its row says why
                failed.append(Row(label, "-", "-", 0, 0, 0, 0, 0, 0, failed=str(exc)))
                continue
            memory[len(detectors)] = round(_resident_mb() - before, 1)
            labels.append(label)
            detectors.append(detector)
            if small_object_zoom and detector.dynamic_size:
                labels.append(f"{label} +small")
                detectors.append(
                    Detector(
                        model,
                        provider=provider,
                        threads=threads,
                        confidence=confidence,
                        small_object_zoom=small_object_zoom,
                        small_object_rows=small_object_rows,
                        class_map=dict(class_map or {}),
                    )
                )
    if not detectors:
        return failed, 0
    images: list[np.ndarray] = []
    truth: list[list[dict[str, Any]]] = []
    if scene:
        for _, frame in rendered_frames(scene, seed, list(range(frames)), CameraSpec(width=640, height=480)):
            images.append(frame.rgb)
            # Objects in view but under the labelling threshold are "don't care" regions (COCO's
            # iscrowd, KITTI's DontCare): finding them is no error, missing them no miss.
            # How far each labelled object is from the camera (frame_boxes keeps those with a pixel).
            distances = np.linalg.norm(frame.positions - frame.pose[:3, 3], axis=1)[frame.pixels >= 1]
            truth.append(
                [
                    dict(
                        box,
                        distance=round(float(d), 2),
                        **({} if box["pixels"] >= min_pixels else {"ignore": True}),
                    )
                    for box, d in zip(frame_boxes(frame, 1), distances, strict=True)
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
    for index, (label, detector, times, preds) in enumerate(
        zip(labels, detectors, timings, predictions, strict=True)
    ):
        total = np.array([sum(t.values()) for t in times])
        size = "x".join(map(str, detector.input_hw))
        row = Row(
            model=label,
            layout=detector.layout,
            input_size=size + (f" +x{detector.small_object_zoom:g}" if detector.small_object_zoom else ""),
            file_mb=round(detector.path.stat().st_size / 2**20, 3),
            memory_mb=memory.get(index, 0.0),
            provider=detector.session.get_providers()[0],
            latency_p50_ms=round(float(np.percentile(total, 50)), 2),
            latency_p95_ms=round(float(np.percentile(total, 95)), 2),
            preprocess_p50_ms=round(float(np.median([t["preprocess"] for t in times])), 2),
            inference_p50_ms=round(float(np.median([t["inference"] for t in times])), 2),
            postprocess_p50_ms=round(float(np.median([t["postprocess"] for t in times])), 2),
            fps=round(1000.0 / float(total.mean()), 1),
        )
        if scene:
            result = evaluate(truth, preds, confidence, covered(detector.class_names, class_map))
            row.map50, row.map50_95 = result.map50, result.map50_95
            row.evaluation = asdict(result)
        rows.append(row)
    if scene and corruptions:
        sweeps = _corruption_sweep(
            detectors, images, truth, corruptions, severities, seed, confidence, class_map, progress
        )
        for row, sweep in zip(rows, sweeps, strict=True):
            mpc = float(np.mean([m for per_severity in sweep.values() for m in per_severity]))
            clean = row.map50_95 or 0.0
            row.robustness = {
                "metric": "mAP@[.5:.95] (COCO), as Michaelis et al. 2019",
                "clean": clean,
                "severities": list(severities),
                "corruptions": sweep,
                "mpc": round(mpc, 4),
                "rpc": round(mpc / clean, 4) if clean else 0.0,
            }
    return rows + failed, sum(1 for boxes in truth for box in boxes if not box.get("ignore"))


def _corruption_sweep(
    detectors: list[Any],
    images: list[np.ndarray],
    truth: list[list[dict[str, Any]]],
    corruptions: list[str],
    severities: tuple[int, ...],
    seed: int,
    confidence: float,
    class_map: dict[str, str] | None,
    progress: Callable[[str], None],
) -> list[dict[str, list[float]]]:
    """Per detector: corruption -> mAP50-95 at each severity, on the same frames corrupted alike for
    every model (the corruption's noise is seeded by the frame)."""
    from perception.bench.corruptions import corrupt

    sweeps: list[dict[str, list[float]]] = [{} for _ in detectors]
    start, steps = time.monotonic(), len(corruptions) * len(severities)
    for c_index, name in enumerate(corruptions):
        for s_index, severity in enumerate(severities):
            frames = [corrupt(image, name, severity, seed * 1000 + i) for i, image in enumerate(images)]
            for detector, sweep in zip(detectors, sweeps, strict=True):
                predictions = [detector(frame) for frame in frames]  # the low mAP threshold is still set
                result = evaluate(truth, predictions, confidence, covered(detector.class_names, class_map))
                sweep.setdefault(name, []).append(result.map50_95)
            done = c_index * len(severities) + s_index + 1
            elapsed = time.monotonic() - start
            progress(
                f"corruptions {done}/{steps} ({name} {severity}): {elapsed:.0f} s, "
                f"about {elapsed / done * (steps - done):.0f} s left"
            )
    return sweeps


def evaluate(
    truth: list[list[dict[str, Any]]], predictions: list[Any], confidence: float, can_produce: set[str]
) -> Any:
    """One model's predictions (Detections per frame) against the scene's truth (class ids of the
    shipped vocabulary), by detection_metrics."""
    from perception.bench.detection_metrics import evaluate as evaluate_arrays

    named = [[dict(box, name=SHIPPED_CLASSES[box["class_id"]]) for box in boxes] for boxes in truth]
    arrays = [(p.xyxy, p.scores, list(p.class_names)) for p in predictions]
    return evaluate_arrays(named, arrays, list(SHIPPED_CLASSES), can_produce, confidence)


def coco_map(truth: list[list[dict[str, Any]]], predictions: list[Any]) -> tuple[float, float]:
    """(mAP@0.5, mAP@0.5:0.95) by pycocotools over the shipped classes present; 0 when the model
    predicts nothing it can be scored on. Truth boxes marked `ignore` count neither way."""
    result = evaluate(truth, predictions, 0.0, set(SHIPPED_CLASSES))
    return result.map50, result.map50_95


def table(rows: list[Row]) -> str:
    head = (
        f"{'model':<32} {'layout':<13} {'input':>16} {'MB':>6} {'mem MB':>7} {'p50 ms':>7} {'p95 ms':>7} {'pre':>6} {'infer':>6} "
        f"{'post':>6} {'fps':>6} {'mAP50':>6} {'mAP50-95':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.failed:
            lines.append(f"{r.model[-32:]:<32} failed: {r.failed}")
            continue
        scores = (
            f"{r.map50:>6.3f} {r.map50_95:>8.3f}"
            if r.map50 is not None and r.map50_95 is not None
            else f"{'-':>6} {'-':>8}"
        )
        lines.append(
            f"{r.model[-32:]:<32} {r.layout:<13} {r.input_size:>16} {r.file_mb:>6.1f} {r.memory_mb:>7.1f} {r.latency_p50_ms:>7.2f} "
            f"{r.latency_p95_ms:>7.2f} "
            f"{r.preprocess_p50_ms:>6.2f} {r.inference_p50_ms:>6.2f} {r.postprocess_p50_ms:>6.2f} {r.fps:>6.1f} {scores}"
        )
    return "\n".join(lines)


def class_table(rows: list[Row]) -> str:
    """Per model: what `yolo val` prints per class, the size buckets, and the errors as AP lost."""
    lines = []
    for r in rows:
        if not r.evaluation:
            continue
        e = r.evaluation
        lines += ["", f"{r.model}: per class (precision and recall at the timing confidence, IoU 0.5)"]
        head = f"  {'class':<12} {'instances':>9} {'P':>6} {'R':>6} {'AP50':>6} {'AP50-95':>8}"
        lines += [head, "  " + "-" * (len(head) - 2)]
        for c in e["classes"]:
            lines.append(
                f"  {c['name']:<12} {c['instances']:>9} {c['precision']:>6.3f} {c['recall']:>6.3f} "
                f"{c['ap50']:>6.3f} {c['ap50_95']:>8.3f}"
            )
        lines.append(
            f"  {'all':<12} {sum(c['instances'] for c in e['classes']):>9} {'':>6} {'':>6} {e['map50']:>6.3f} {e['map50_95']:>8.3f}"
        )
        if e["not_covered"]:
            lines.append(f"  not covered (left out of the means): {', '.join(e['not_covered'])}")
        sizes = ", ".join(f"{k} {v:.3f}" if v >= 0 else f"{k} -" for k, v in e["size_map50_95"].items())
        lines.append(f"  mAP50-95 by size (COCO buckets): {sizes}")
        for what, key in (("visible fraction", "by_visible_fraction"), ("distance", "by_distance")):
            bands = ", ".join(f"{k} {v:.3f}" for k, v in e[key].items() if v is not None)
            if bands:
                lines.append(f"  mAP50 by {what}: {bands}")
        errors = ", ".join(f"{k} {e['errors_dap'][k]:.2f} ({e['error_counts'][k]})" for k in e["errors_dap"])
        lines.append(f"  AP50 lost to each error over the whole curve (count at the confidence): {errors}")
        lines.append(
            "  one object under two names at the confidence (cross-class duplicates): "
            f"{e['cross_class_duplicates']}"
        )
    return "\n".join(lines)


def robustness_table(rows: list[Row]) -> str:
    """Per model: mAP50-95 per corruption and severity, and P (clean), mPC and rPC."""
    lines = []
    for r in rows:
        if not r.robustness:
            continue
        rb = r.robustness
        severities = rb["severities"]
        lines += [
            "",
            f"{r.model}: robustness to corruptions, mAP50-95 at severity " + ", ".join(map(str, severities)),
        ]
        for name, values in rb["corruptions"].items():
            lines.append(f"  {name:<15} " + " ".join(f"{v:>6.3f}" for v in values))
        lines.append(f"  P (clean) {rb['clean']:.3f}   mPC {rb['mpc']:.3f}   rPC {rb['rpc']:.1%}")
    return "\n".join(lines)


def _resident_mb() -> float:
    """This process's resident memory (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
