"""`percept bench track`: the tracker on simulated driving sequences, scored with TrackEval against the
simulator's ground-truth identities.

Boxes come from the shipped detector (the real pipeline), or with `--truth` from the ground truth with
noise (dropped boxes, jitter, false positives) to separate tracking errors from detection errors. Each
sequence is one 10-second driving episode, rendered fresh from its seed at the camera rate the launched
graph runs (10 frames/s, as KITTI's sequences; `rate` changes it); objects with at
least 16 visible pixels are the ground truth, and smaller ones don't-care regions, as in `percept bench
detect`. Beside those figures come the same tracks scored by KITTI's tracking protocol, the one behind
the KITTI anchors: objects under 25 px tall are don't-care too, and so are tracks that short which
match no scored object. The update time is measured around
`ByteTracker.update` alone, and on a synthetic frame of 50 moving objects (the issue's load).

`write_mot` also writes each sequence as a MOTChallenge folder (det/det.txt with the detector's boxes,
gt/gt.txt with don't-care objects flagged 0, seqinfo.ini) for `percept bench mot` and other tools.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # perception.track loads scipy; `percept` reads the constants below at every start
    from perception.track.evaluate import Frame

TARGETS = {"mota": 0.90, "idf1": 0.90, "update_p50_ms_50_objects": 1.0}

# The driving graph's detector runs a second pass for small objects on these rows of the frame (around
# the simulated camera's horizon), scaled by this (launch/driving_tracking.yaml's small_object_zoom and
# small_object_rows); this benchmark runs the same detector (`percept bench track`'s defaults).
SMALL_OBJECT_ZOOM = 1.25
SMALL_OBJECT_ROWS = (192, 336)


@dataclass
class Summary:
    source: str
    sequences: int
    frames: int
    mota: float
    idf1: float
    hota: float
    id_switches: int
    fragmentations: int
    precision: float
    recall: float
    update_p50_ms: float
    update_p95_ms: float
    update_p50_ms_50_objects: float
    update_p50_ms_50_objects_rounds: tuple[float, float]  # the lowest and highest round's median
    kitti_mota: float  # KITTI's protocol: objects under 25 px tall are don't-care as well
    kitti_idf1: float
    kitti_hota: float


KITTI_MIN_HEIGHT = 25.0  # px: KITTI tracking's smallest evaluated object (its "moderate" and "hard")


def run(
    sequences: int,
    seed: int,
    model: str | None,
    noise: dict[str, float],
    rate: float = 10.0,
    min_pixels: int = 16,
    write_mot: Path | None = None,
    small_object_zoom: float = 0.0,
    small_object_rows: tuple[int, int] | None = None,
) -> tuple[Summary, list[dict[str, Any]]]:
    from perception.detector import Detector
    from perception.track import ByteTracker
    from perception.track.evaluate import mot_metrics, without_ignored
    from sim.camera import CameraSpec
    from sim.dataset import EPISODE_S, frame_boxes, rendered_frames

    detector = (
        Detector(
            model, confidence=0.1, small_object_zoom=small_object_zoom, small_object_rows=small_object_rows
        )
        if model
        else None
    )
    rng = np.random.default_rng(seed)
    update_ms: list[float] = []
    per_sequence: list[dict[str, Any]] = []
    all_frames: list[Frame] = []
    kitti_frames: list[Frame] = []
    per_sequence_frames = round(EPISODE_S * rate)
    for number in range(sequences):
        tracker = ByteTracker()
        frames: list[Frame] = []
        mot_rows: dict[str, list[str]] = {"det": [], "gt": []}
        indices = list(range(number * per_sequence_frames, (number + 1) * per_sequence_frames))
        camera = CameraSpec(width=640, height=480)
        for index, frame in rendered_frames("driving", seed, indices, camera, rate=rate):
            visible = frame_boxes(frame, 1)
            every_id = np.array([b["track_id"] for b in visible], np.int64) + 100_000 * number
            every_box = np.array([b["xyxy"] for b in visible], np.float64).reshape(-1, 4)
            scored = np.array([b["pixels"] >= min_pixels for b in visible], bool)
            gt_boxes = every_box[scored]
            if detector is not None:
                result = detector(frame.rgb)
                boxes, scores, classes = result.xyxy, result.scores, result.class_ids
            else:
                truth_classes = [b["class_id"] for b, s in zip(visible, scored, strict=True) if s]
                boxes, scores, classes = _noisy(gt_boxes, truth_classes, noise, rng)
            start = time.perf_counter()
            tracks = tracker.update(boxes, scores, classes, (index % per_sequence_frames) / rate)
            update_ms.append((time.perf_counter() - start) * 1000)
            track_ids = np.array([t.id + 100_000 * number for t in tracks], np.int64)
            track_boxes = np.array([t.box for t in tracks]).reshape(-1, 4)
            raw = (every_id[scored], gt_boxes, track_ids, track_boxes)
            frames.append(without_ignored(raw, every_box[~scored]))
            tall = scored & (every_box[:, 3] - every_box[:, 1] >= KITTI_MIN_HEIGHT)
            kitti_frames.append(
                without_ignored(
                    (every_id[tall], every_box[tall], track_ids, track_boxes),
                    every_box[~tall],
                    min_height=KITTI_MIN_HEIGHT,
                )
            )
            if write_mot is not None:
                step = index % per_sequence_frames + 1
                mot_rows["det"] += [
                    f"{step},-1,{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.4f},{int(c)},-1,-1"
                    for (x1, y1, x2, y2), score, c in zip(boxes, scores, classes, strict=True)
                ]
                mot_rows["gt"] += [
                    f"{step},{b['track_id']},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{int(s)},"
                    f"{b['class_id']},{b['visible_fraction']}"
                    for b, (x1, y1, x2, y2), s in zip(visible, every_box, scored, strict=True)
                ]
        if write_mot is not None:
            _write_sequence(
                write_mot / f"sim-driving-{seed}-{number:02d}", mot_rows, rate, per_sequence_frames
            )
        scores_one = mot_metrics(frames)
        per_sequence.append({"sequence": number, **scores_one})
        all_frames += frames
    overall = mot_metrics(all_frames)
    fifty = _fifty_objects()
    kitti = mot_metrics(kitti_frames)
    summary = Summary(
        source=model or f"ground truth with noise {noise}",
        sequences=sequences,
        frames=len(all_frames),
        mota=round(overall["mota"], 4),
        idf1=round(overall["idf1"], 4),
        hota=round(overall["hota"], 4),
        id_switches=overall["id_switches"],
        fragmentations=overall["fragmentations"],
        precision=round(overall["precision"], 4),
        recall=round(overall["recall"], 4),
        update_p50_ms=round(float(np.percentile(update_ms, 50)), 3),
        update_p95_ms=round(float(np.percentile(update_ms, 95)), 3),
        update_p50_ms_50_objects=round(fifty[0], 3),
        update_p50_ms_50_objects_rounds=(round(fifty[1], 3), round(fifty[2], 3)),
        kitti_mota=round(kitti["mota"], 4),
        kitti_idf1=round(kitti["idf1"], 4),
        kitti_hota=round(kitti["hota"], 4),
    )
    return summary, per_sequence


def _write_sequence(folder: Path, rows: dict[str, list[str]], rate: float, frames: int) -> None:
    for kind in ("det", "gt"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        (folder / kind / f"{kind}.txt").write_text("".join(line + "\n" for line in rows[kind]))
    (folder / "seqinfo.ini").write_text(
        f"[Sequence]\nname={folder.name}\nframeRate={rate:g}\nseqLength={frames}\nimWidth=640\nimHeight=480\n"
    )


def _noisy(
    boxes: np.ndarray, classes: list[int], noise: dict[str, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth as a detector with known faults: drop (share), jitter (of the box's size), false
    positives (per frame, on average)."""
    keep = rng.random(len(boxes)) >= noise.get("drop", 0.0)
    kept = boxes[keep]
    wh = kept[:, 2:] - kept[:, :2]
    kept = kept + rng.normal(0, noise.get("jitter", 0.0), kept.shape) * np.c_[wh, wh]
    cls = np.array(classes, np.int64)[keep]
    false = rng.poisson(noise.get("false_positives", 0.0))
    corners = rng.uniform([0, 180], [600, 440], (false, 2))
    fakes = np.c_[corners, corners + rng.uniform(8, 40, (false, 2))]
    all_boxes = np.r_[kept, fakes]
    scores = np.r_[rng.uniform(0.5, 1.0, len(kept)), rng.uniform(0.1, 0.7, false)]
    return all_boxes, scores, np.r_[cls, rng.integers(8, 11, false)]


def _fifty_objects(frames: int = 200, rounds: int = 5) -> tuple[float, float, float]:
    """Median update time (ms) with 50 objects moving in a frame, once the tracks are established: the
    median of `rounds` rounds' medians, and the lowest and highest of them (a shared machine's speed
    drifts from one second to the next; one round can land in a slow stretch)."""
    from perception.track import ByteTracker

    medians = []
    for _ in range(rounds):
        rng = np.random.default_rng(0)
        start = rng.uniform([0, 0], [1200, 600], (50, 2))
        velocity = rng.uniform(-3, 3, (50, 2))
        tracker = ByteTracker()
        times = []
        for i in range(frames):
            centres = start + velocity * i
            boxes = np.concatenate([centres - 15, centres + 15], axis=1)
            began = time.perf_counter()
            tracker.update(boxes, np.full(50, 0.9), np.full(50, 8), i * 0.1)
            times.append((time.perf_counter() - began) * 1000)
        medians.append(float(np.median(times[10:])))
    return float(np.median(medians)), min(medians), max(medians)


def table(summary: Summary, per_sequence: list[dict[str, Any]]) -> str:
    head = f"{'sequence':>8} {'MOTA':>7} {'IDF1':>7} {'HOTA':>7} {'IDsw':>5} {'Frag':>5} {'prec':>6} {'recall':>7} {'GT':>6}"
    lines = [head, "-" * len(head)]
    for q in per_sequence:
        lines.append(
            f"{q['sequence']:>8} {q['mota']:>7.3f} {q['idf1']:>7.3f} {q['hota']:>7.3f} {q['id_switches']:>5} "
            f"{q['fragmentations']:>5} {q['precision']:>6.3f} {q['recall']:>7.3f} {q['ground_truth']:>6}"
        )
    s = summary
    lines += [
        "",
        f"{'measure':<28} {'value':>9} {'target':>8}",
        f"{'MOTA':<28} {s.mota:>9.3f} {'>= 0.90':>8}",
        f"{'IDF1':<28} {s.idf1:>9.3f} {'>= 0.90':>8}",
        f"{'HOTA':<28} {s.hota:>9.3f} {'':>8}",
        f"{'ID switches / fragmentations':<28} {f'{s.id_switches} / {s.fragmentations}':>9}",
        f"{'update p50 / p95 (ms)':<28} {f'{s.update_p50_ms:.3f} / {s.update_p95_ms:.3f}':>9}",
        f"{'update p50, 50 objects (ms)':<28} {s.update_p50_ms_50_objects:>9.3f} {'<= 1':>8}"
        f"  (median of 5 rounds; rounds {s.update_p50_ms_50_objects_rounds[0]:.3f}-{s.update_p50_ms_50_objects_rounds[1]:.3f})",
        f"{'KITTI protocol: MOTA / IDF1':<28} {f'{s.kitti_mota:.3f} / {s.kitti_idf1:.3f}':>9}  (under 25 px tall: don't care)",
        "anchors: ByteTrack 80.3 MOTA / 77.3 IDF1, OC-SORT 78.0 / 77.5 on MOT17; OC-SORT 90.3 MOTA on KITTI cars",
        f"{s.sequences} sequences, {s.frames} frames, boxes from {s.source} (TrackEval)",
    ]
    return "\n".join(lines)
