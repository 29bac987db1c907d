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
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from perception.bench.class_maps import covered
from perception.detector.defaults import DEFAULT_CONFIDENCE, DEFAULT_CROSS_CLASS_IOU
from perception.detector.vocabulary import SHIPPED_CLASSES
from perception.errors import PerceptError, did_you_mean


class LabelledSet(NamedTuple):
    """Frames with their truth boxes ({"xyxy", "name"}) from outside the simulator: a COCO set."""

    images: list[np.ndarray]
    truth: list[list[dict[str, Any]]]
    classes: list[str]  # its class names: those its boxes use and its categories (truth_vocabulary)
    source: str  # what the frames are, for the report


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
    preprocess_p95_ms: float = 0.0
    inference_p95_ms: float = 0.0
    postprocess_p95_ms: float = 0.0


@dataclass(frozen=True)
class ModelSpec:
    """What a worker needs to make one row's detector again: sessions never travel between processes."""

    path: str
    provider: str
    class_map: tuple[tuple[str, str | None], ...] = ()
    small_object_zoom: float = 0.0
    small_object_rows: tuple[int, int] | None = None
    cross_class_iou: float = DEFAULT_CROSS_CLASS_IOU

    def detector(self, threads: int, confidence: float) -> Any:
        from perception.detector import Detector

        detector = Detector(
            self.path,
            provider=self.provider,
            threads=threads,
            confidence=confidence,
            small_object_zoom=self.small_object_zoom,
            small_object_rows=self.small_object_rows,
            cross_class_iou=self.cross_class_iou,
        )
        # One scoring map serves every model of the run (`--class-map coco` beside ours): each takes the
        # names it has. The detector refuses a key that names none of its classes, a typo in a node's map.
        detector.class_map = {name: ours for name, ours in self.class_map if name in detector.class_names}
        return detector


def _check_map_keys(class_map: dict[str, str], source: str, model_names: list[list[str]]) -> None:
    """A user's map serves every model of the run, each taking the names it has, so a key that names
    no class of any of them (a typo) would only show as a class not covered: it is refused before any
    frame is made."""
    every_name = sorted({name for names in model_names for name in names})
    for key in class_map:
        if key not in every_name:
            raise PerceptError(
                f"class map {source}: {key!r} names no class of the models benchmarked"
                f"{did_you_mean(key, every_name)}"
            )


@dataclass(frozen=True)
class PredictJob:
    """Some frames of one variation (optionally corrupted) through every model, at the mAP threshold."""

    models: tuple[ModelSpec, ...]
    images: tuple[np.ndarray, ...]
    first_index: int  # of the frames in their variation: seeds the corruption's noise
    confidence: float
    corruption: str = ""
    severity: int = 0
    seed: int = 0


ACCURACY_THREADS = 1  # per worker: the same arithmetic wherever a job runs, so results are equal
_WORKER_DETECTORS: dict[tuple[ModelSpec, float], Any] = {}  # one session per model per worker process


def predict_job(job: PredictJob) -> list[list[tuple[np.ndarray, np.ndarray, list[str]]]]:
    """Per model, per frame: (xyxy, scores, class names). Runs in a worker."""
    from perception.bench.corruptions import corrupt

    images = [
        corrupt(image, job.corruption, job.severity, job.seed * 1000 + job.first_index + i)
        if job.corruption
        else image
        for i, image in enumerate(job.images)
    ]
    out = []
    for spec in job.models:
        key = (spec, job.confidence)
        if key not in _WORKER_DETECTORS:
            _WORKER_DETECTORS[key] = spec.detector(ACCURACY_THREADS, job.confidence)
        detector = _WORKER_DETECTORS[key]
        found = [detector(image) for image in images]
        out.append([(d.xyxy, d.scores, list(d.class_names)) for d in found])
    return out


@dataclass
class Outcome:
    rows: list[Row]
    boxes: int  # ground-truth boxes scored against (clean frames)
    frames_from: str = ""  # rendered by whom, or which cache
    phases: dict[str, float] = field(default_factory=dict)  # where the time went
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few clean frames for the report


PREDICT_CHUNK = 10  # frames per inference job


def run(
    models: list[str],
    suite: Any,
    frames: int,
    seed: int,
    threads: int = 2,
    confidence: float = DEFAULT_CONFIDENCE,
    map_confidence: float = 0.001,
    small_object_zoom: float = 0.0,
    small_object_rows: tuple[int, int] | None = None,
    class_map: dict[str, str] | None = None,
    class_map_file: str | None = None,
    corruptions: list[str] | None = None,
    severities: tuple[int, ...] = (1, 2, 3, 4, 5),
    progress: Callable[[str], Callable[[int, int, float], None] | None] = lambda stage: None,
    providers: tuple[str, ...] = ("cpu",),
    pool: Any = None,
    cache: Path | None = None,
    examples: int = 3,
    cross_class_iou: float = DEFAULT_CROSS_CLASS_IOU,
    data: LabelledSet | None = None,
) -> Outcome:
    """Rows per model (per provider), scored on `suite` (suites.Suite), or on `data` (a labelled set
    read by perception.labelled.open_split); neither: random frames, timing only. With
    `small_object_zoom`, each model whose input size is free gets a second row: the same model with a
    small-object pass.

    Timing runs here, models interleaved frame by frame, at `confidence` (a deployed node's threshold)
    with `threads`; the frames and the mAP predictions come from `pool` (fanout.Pool: this process,
    worker processes or a Dask cluster) at `map_confidence`, because a high threshold cuts the
    precision-recall curve short. `progress(stage)` gives a callback for each stage's jobs."""
    from perception.bench import fanout, suites

    pool = pool or fanout.Pool("this process", lambda function, jobs: (function(job) for job in jobs))
    phases: dict[str, float] = {}
    mapping = tuple(sorted((class_map or {}).items()))
    specs: list[ModelSpec] = []
    labels: list[str] = []
    detectors: list[Any] = []
    failed: list[Row] = []
    memory: dict[int, float] = {}
    for model in models:
        for provider in providers:
            label = model if len(providers) == 1 else f"{model} [{provider}]"
            spec = ModelSpec(model, provider, mapping, cross_class_iou=cross_class_iou)
            before = _resident_mb()
            try:
                detector = spec.detector(threads, confidence)
                detector(np.zeros((480, 640, 3), np.uint8))  # its arena grows on the first frame
            except PerceptError as exc:  # one bad model never stops the others: its row says why
                failed.append(Row(label, "-", "-", 0, 0, 0, 0, 0, 0, failed=str(exc)))
                continue
            memory[len(detectors)] = round(_resident_mb() - before, 1)
            specs.append(spec)
            labels.append(label)
            detectors.append(detector)
            if small_object_zoom and detector.dynamic_size:
                zoomed = ModelSpec(
                    model, provider, mapping, small_object_zoom, small_object_rows, cross_class_iou
                )
                specs.append(zoomed)
                labels.append(f"{label} +small")
                detectors.append(zoomed.detector(threads, confidence))
    if not detectors:
        return Outcome(failed, 0)
    if class_map_file:
        _check_map_keys(class_map or {}, class_map_file, [d.class_names for d in detectors])

    started = time.monotonic()
    rendered: dict[str, Any] = {}
    if data is not None:
        images, truth, source = data.images, data.truth, data.source
        rendered = {"clean": suites.Rendered("clean", images, truth)}
    elif suite is not None:
        rendered, source = suites.load_or_render(suite, pool, cache, progress("render"))
        images, truth = rendered["clean"].images, rendered["clean"].truth
    else:
        rng = np.random.default_rng(seed)
        images, truth, source = (
            [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(frames)],
            [],
            "",
        )
    phases["frames"] = round(time.monotonic() - started, 2)

    started = time.monotonic()
    for detector in detectors:  # warm-up: allocations, caches
        detector(images[0])
    timings: list[list[dict[str, float]]] = [[] for _ in detectors]
    tick = progress("timing")
    for index, image in enumerate(images):
        for i, detector in enumerate(detectors):
            detector(image)
            timings[i].append(detector.timings_ms)
        if tick:
            tick(index + 1, len(images), time.monotonic() - started)
    phases["timing"] = round(time.monotonic() - started, 2)

    rows = []
    for index, (label, detector, times) in enumerate(zip(labels, detectors, timings, strict=True)):
        total = np.array([sum(t.values()) for t in times])
        size = "x".join(map(str, detector.input_hw))
        rows.append(
            Row(
                model=label,
                layout=detector.layout,
                input_size=size
                + (f" +x{detector.small_object_zoom:g}" if detector.small_object_zoom else ""),
                file_mb=round(detector.path.stat().st_size / 2**20, 3),
                memory_mb=memory.get(index, 0.0),
                provider=detector.session.get_providers()[0],
                latency_p50_ms=round(float(np.percentile(total, 50)), 2),
                latency_p95_ms=round(float(np.percentile(total, 95)), 2),
                preprocess_p50_ms=round(float(np.median([t["preprocess"] for t in times])), 2),
                inference_p50_ms=round(float(np.median([t["inference"] for t in times])), 2),
                postprocess_p50_ms=round(float(np.median([t["postprocess"] for t in times])), 2),
                preprocess_p95_ms=round(float(np.percentile([t["preprocess"] for t in times], 95)), 2),
                inference_p95_ms=round(float(np.percentile([t["inference"] for t in times], 95)), 2),
                postprocess_p95_ms=round(float(np.percentile([t["postprocess"] for t in times], 95)), 2),
                fps=round(1000.0 / float(total.mean()), 1),
            )
        )
    if suite is None and data is None:
        return Outcome(rows + failed, 0, source, phases)

    # Every set of frames to score: each variation the suite rendered, and each image corruption of
    # the clean frames at each severity.
    sets: list[tuple[str, str, int, list[np.ndarray]]] = [
        (label, "", 0, r.images) for label, r in rendered.items()
    ]
    for name in corruptions or []:
        for severity in severities:
            sets.append((f"{name}-{severity}", name, severity, images))
    keyed = [  # (the set's key, one of its jobs): the key says where the job's predictions go
        (
            key,
            PredictJob(
                tuple(specs),
                tuple(frames_[start : start + PREDICT_CHUNK]),
                start,
                map_confidence,
                name,
                severity,
                seed,
            ),
        )
        for key, name, severity, frames_ in sets
        for start in range(0, len(frames_), PREDICT_CHUNK)
    ]
    started = time.monotonic()
    results = pool.map(predict_job, [job for _, job in keyed], progress("inference"))
    phases["inference"] = round(time.monotonic() - started, 2)
    predictions: dict[str, list[list[Any]]] = {key: [[] for _ in specs] for key, *_ in sets}
    keys = [key for key, _ in keyed]
    for result, key in zip(results, keys, strict=True):
        for per_model, found in zip(predictions[key], result, strict=True):
            per_model.extend(found)

    started = time.monotonic()
    vocabulary = list(SHIPPED_CLASSES) if data is None else data.classes
    for index, (row, detector) in enumerate(zip(rows, detectors, strict=True)):
        can_produce = covered(detector.class_names, class_map, vocabulary)
        result = evaluate(truth, predictions["clean"][index], confidence, can_produce, vocabulary)
        row.evaluation = asdict(result)
        if not result.classes:  # it covers none of the classes in these frames: no score, not zero
            continue
        row.map50, row.map50_95 = result.map50, result.map50_95
        robustness: dict[str, Any] = {}
        if suite is not None and suite.factors:
            factors = {
                factor: [
                    evaluate(
                        rendered[f"{factor}-{s}"].truth,
                        predictions[f"{factor}-{s}"][index],
                        confidence,
                        can_produce,
                    ).map50_95
                    for s in suite.severities
                ]
                for factor in suite.factors
            }
            robustness["factors"] = factors
            robustness["factor_severities"] = list(suite.severities)
            robustness["factor_mean"] = round(float(np.mean([m for v in factors.values() for m in v])), 4)
        if corruptions:
            sweep = {
                name: [
                    evaluate(
                        truth, predictions[f"{name}-{s}"][index], confidence, can_produce, vocabulary
                    ).map50_95
                    for s in severities
                ]
                for name in corruptions
            }
            mpc = float(np.mean([m for per_severity in sweep.values() for m in per_severity]))
            robustness.update(
                corruptions=sweep,
                severities=list(severities),
                mpc=round(mpc, 4),
                rpc=round(mpc / row.map50_95, 4) if row.map50_95 else 0.0,
            )
        if robustness:
            row.robustness = {
                "metric": "mAP@[.5:.95] (COCO); mPC and rPC as Michaelis et al. 2019",
                "clean": row.map50_95,
                **robustness,
            }
    phases["evaluation"] = round(time.monotonic() - started, 2)
    return Outcome(
        rows + failed,
        sum(1 for boxes in truth for box in boxes if not box.get("ignore")),
        source,
        phases,
        _examples(images, truth, predictions["clean"], labels, confidence, examples),
    )


def _examples(
    images: list[np.ndarray],
    truth: list[list[dict[str, Any]]],
    predictions: list[list[Any]],
    labels: list[str],
    confidence: float,
    count: int,
) -> list[dict[str, Any]]:
    """The frames with the most labelled objects, with each model's detections at the confidence."""
    order = sorted(range(len(images)), key=lambda i: (-len(truth[i]), i))[:count]
    out = []
    for i in sorted(order):
        per_model = {}
        for label, preds in zip(labels, predictions, strict=True):
            xyxy, scores, names = preds[i]
            keep = np.asarray(scores) >= confidence
            per_model[label] = (
                np.asarray(xyxy)[keep],
                np.asarray(scores)[keep],
                [n for n, k in zip(names, keep, strict=True) if k],
            )
        named = [_named(box) for box in truth[i]]
        out.append({"index": i, "image": images[i], "truth": named, "models": per_model})
    return out


def evaluate(
    truth: list[list[dict[str, Any]]],
    predictions: list[Any],
    confidence: float,
    can_produce: set[str],
    vocabulary: list[str] | None = None,
) -> Any:
    """One model's predictions (Detections per frame) against the truth, by detection_metrics. The
    truth's boxes carry a class `name` of `vocabulary` (a labelled set's), or the `class_id` of a
    shipped class (the simulator's; vocabulary None: the shipped classes)."""
    from perception.bench.detection_metrics import evaluate as evaluate_arrays

    named = [[_named(box) for box in boxes] for boxes in truth]
    arrays = [p if isinstance(p, tuple) else (p.xyxy, p.scores, list(p.class_names)) for p in predictions]
    return evaluate_arrays(named, arrays, vocabulary or list(SHIPPED_CLASSES), can_produce, confidence)


def truth_vocabulary(truth: list[list[dict[str, Any]]], declared: Iterable[str] = ()) -> list[str]:
    """The class names of a labelled set, those its boxes use and those it `declared` (a COCO set's
    categories): the shipped ones first, in their order, then its own."""
    names = {box["name"] for boxes in truth for box in boxes} | set(declared)
    return [c for c in SHIPPED_CLASSES if c in names] + sorted(names - set(SHIPPED_CLASSES))


def _named(box: dict[str, Any]) -> dict[str, Any]:
    return box if "name" in box else dict(box, name=SHIPPED_CLASSES[box["class_id"]])


def coco_map(truth: list[list[dict[str, Any]]], predictions: list[Any]) -> tuple[float, float]:
    """(mAP@0.5, mAP@0.5:0.95) by pycocotools over the shipped classes present; 0 when the model
    predicts nothing it can be scored on. Truth boxes marked `ignore` count neither way."""
    result = evaluate(truth, predictions, 0.0, set(SHIPPED_CLASSES))
    return result.map50, result.map50_95


def speedups(rows: list[Row]) -> tuple[str, list[tuple[str, float]]]:
    """The first timed model, and how many times as fast its whole call is (p50) as each other timed
    model's, measured side by side in the same run (Ultralytics' `yolo benchmark` leaves this sum to
    the reader); no ratios where fewer than two models were timed."""
    timed = [r for r in rows if not r.failed and r.latency_p50_ms > 0]
    if len(timed) < 2:
        return "", []
    first = timed[0]
    return first.model, [(r.model, round(r.latency_p50_ms / first.latency_p50_ms, 2)) for r in timed[1:]]


def table(rows: list[Row]) -> str:
    head = (
        f"{'model':<32} {'layout':<13} {'input':>16} {'MB':>6} {'mem MB':>7} {'p50 ms':>7} {'p95 ms':>7} {'pre p50/95':>11} {'infer p50/95':>13} "
        f"{'post p50/95':>11} {'fps':>6} {'mAP50':>6} {'mAP50-95':>8}"
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
            f"{f'{r.preprocess_p50_ms:.2f}/{r.preprocess_p95_ms:.2f}':>11} "
            f"{f'{r.inference_p50_ms:.2f}/{r.inference_p95_ms:.2f}':>13} "
            f"{f'{r.postprocess_p50_ms:.2f}/{r.postprocess_p95_ms:.2f}':>11} {r.fps:>6.1f} {scores}"
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
        if not e["classes"]:
            lines.append("  covers none of the classes in these frames: not scored")
        else:
            lines.append(
                f"  {'all':<12} {sum(c['instances'] for c in e['classes']):>9} {'':>6} {'':>6} "
                f"{e['map50']:>6.3f} {e['map50_95']:>8.3f}"
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
        lines.append(  # in points of 100, as TIDE's dAP: they add up to about 100 x (1 - mAP50)
            f"  AP50 points (of 100) lost to each error over the whole curve (count at the confidence): {errors}"
        )
        lines.append(
            "  one object under two names at the confidence (cross-class duplicates): "
            f"{e['cross_class_duplicates']}"
        )
    return "\n".join(lines)


def robustness_table(rows: list[Row]) -> str:
    """Per model: mAP50-95 per sim factor and per corruption at each severity; P (clean), the mean
    under the sim factors, and mPC and rPC over the corruptions."""
    lines = []
    for r in rows:
        if not r.robustness:
            continue
        rb = r.robustness
        for kind, key, severities in (
            ("simulator factors", "factors", rb.get("factor_severities")),
            ("image corruptions", "corruptions", rb.get("severities")),
        ):
            if key not in rb:
                continue
            lines += [
                "",
                f"{r.model}: {kind}, mAP50-95 at severity " + ", ".join(map(str, severities or [])),
            ]
            for name, values in rb[key].items():
                lines.append(f"  {name:<15} " + " ".join(f"{v:>6.3f}" for v in values))
        summary = f"  P (clean) {rb['clean']:.3f}"
        if "factor_mean" in rb:
            summary += f"   mean under simulator factors {rb['factor_mean']:.3f}"
        if "mpc" in rb:
            summary += f"   mPC {rb['mpc']:.3f}   rPC {rb['rpc']:.1%}"
        lines.append(summary)
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
