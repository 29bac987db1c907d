"""`percept bench mot`: our tracker beside SORT, ByteTrack and OC-SORT on MOTChallenge sequences, the
same detections for all, scored with TrackEval.

A sequence is a MOTChallenge folder: `det/det.txt` (the detections every tracker gets), `gt/gt.txt`
(frame, id, left, top, width, height, flag, class, visibility) and `seqinfo.ini` (frameRate). Two ways
to read the ground truth:

- `flags` (default; what `percept bench track --write-mot DIR` writes from the simulator): rows with
  flag 1 are scored, rows with flag 0 are ignore regions (a track on one is neither a false positive
  nor, when absent, a miss), whatever their class.
- `mot17` (MOT16/17/20 folders, as TrackEval reads them): pedestrians (class 1) with flag 1 are scored;
  the distractor classes (2 person on vehicle, 7 static person, 8 distractor, 12 reflection) are ignore
  regions; every other row (a car, a pedestrian with flag 0) is not scored but still takes part in the
  matching that finds the boxes on distractors, as in TrackEval: a box that fits a car better than the
  static person beside it stays a false positive.

The peers are the clean-room implementations of the `trackers` package (Roboflow, Apache-2.0), each
with its published defaults; ours runs with its defaults too (with `mot17`, the pedestrian settings
of `percept track run`). Each tracker's update time is measured
around its update call, with the conversion of the detections into its input.

`oracle` is no tracker: it keeps the detections ours trusts (score at least its `high_score`) and gives
each the identity of the ground-truth object it overlaps best at IoU 0.5 or more (optimal assignment
per frame; others get identities of their own). It scores what these detections allow with perfect
association, frame by frame: a tracker below it loses identities or boxes, one near it is held by
the detector.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from perception.track.evaluate import SEQUENCE_IDS, Frame, mot_metrics, without_ignored
from perception.track.mot import DEFAULT_FPS, PEDESTRIAN_PARAMS, read_detections, read_rows, sequence_info
from perception.track.tracker import ByteTracker, TrackerParams, iou_matrix

PEERS = ("sort", "bytetrack", "ocsort")
TRACKERS = ("ours", *PEERS, "oracle")
PROTOCOLS = ("flags", "mot17")
MOT17_PEDESTRIAN, MOT17_DISTRACTORS = 1, (2, 7, 8, 12)


class Truth(NamedTuple):
    """One frame's ground truth (boxes x1, y1, x2, y2)."""

    ids: np.ndarray  # of the scored objects
    boxes: np.ndarray  # scored
    ignored: np.ndarray  # ignore regions: a box on one is removed before scoring
    unscored: np.ndarray  # neither: they only take part in finding the boxes on ignore regions


@dataclass
class Sequence:
    name: str
    fps: float
    length: int
    detections: dict[int, np.ndarray]  # frame -> N x 6 (x1, y1, x2, y2, score, class)
    truth: dict[int, Truth]


@dataclass
class Row:
    tracker: str
    mota: float
    idf1: float
    hota: float
    id_switches: int
    false_positives: int
    misses: int
    update_p50_ms: float


def read_sequence(folder: str | Path, protocol: str = "flags") -> Sequence:
    folder = Path(folder)
    for needed in ("det/det.txt", "gt/gt.txt"):
        if not (folder / needed).is_file():
            raise FileNotFoundError(
                f"sequence {folder}: no {needed} (expected a MOTChallenge sequence folder)"
            )
    rate, frames = sequence_info(folder)
    detections = read_detections(folder / "det/det.txt")
    gt_rows = read_rows(folder / "gt/gt.txt", "ground truth")
    short = next(((number, len(row)) for number, row in gt_rows if len(row) < 7), None)
    if short:
        raise ValueError(
            f"ground truth {folder / 'gt/gt.txt'}, line {short[0]}: expected at least 7 columns "
            f"(frame, id, left, top, width, height, flag), found {short[1]}"
        )
    width = min((len(row) for _, row in gt_rows), default=7)
    table = np.array([row[:width] for _, row in gt_rows]).reshape(-1, width)
    length = frames or int(max([*detections, *(table[:, 0].astype(int) if table.size else [])], default=0))
    truth = {}
    for frame in range(1, length + 1):
        rows = table[table[:, 0] == frame] if table.size else np.zeros((0, 7))
        boxes = np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]]
        if protocol == "mot17":
            if rows.shape[1] < 8:
                raise ValueError(f"sequence {folder}: the mot17 protocol needs gt.txt's class column (8th)")
            scored = (rows[:, 6] != 0) & (rows[:, 7] == MOT17_PEDESTRIAN)
            ignored = np.isin(rows[:, 7], MOT17_DISTRACTORS)
        else:
            scored = rows[:, 6] != 0
            ignored = ~scored
        unscored = ~scored & ~ignored
        truth[frame] = Truth(rows[scored, 1].astype(np.int64), boxes[scored], boxes[ignored], boxes[unscored])
    return Sequence(folder.name, rate or DEFAULT_FPS, length, detections, truth)


def _our_params(protocol: str) -> TrackerParams:
    return PEDESTRIAN_PARAMS if protocol == "mot17" else TrackerParams()


def _ours(fps: float, protocol: str) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    tracker, frame = ByteTracker(_our_params(protocol)), [0]

    def update(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tracks = tracker.update(rows[:, :4], rows[:, 4], rows[:, 5].astype(int), frame[0] / fps)
        frame[0] += 1
        return np.array([t.id for t in tracks], np.int64), np.array([t.box for t in tracks]).reshape(-1, 4)

    return update


def _oracle(sequence: Sequence, protocol: str) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    from scipy.optimize import linear_sum_assignment

    trusted, frame, unmatched_ids = (
        _our_params(protocol).high_score,
        [0],
        itertools.count(SEQUENCE_IDS // 2),
    )  # below the next sequence's offset

    def update(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frame[0] += 1
        boxes = rows[rows[:, 4] >= trusted, :4]
        truth = sequence.truth[frame[0]]
        ids = np.array([next(unmatched_ids) for _ in range(len(boxes))], np.int64)
        if len(boxes) and len(truth.ids):
            iou = iou_matrix(truth.boxes, boxes)
            objects, detection = linear_sum_assignment(-iou)
            good = iou[objects, detection] >= 0.5
            ids[detection[good]] = truth.ids[objects[good]]
        return ids, boxes

    return update


def _peer(name: str, fps: float) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    import supervision as sv
    from trackers import ByteTrackTracker, OCSORTTracker, SORTTracker

    kind = {"sort": SORTTracker, "bytetrack": ByteTrackTracker, "ocsort": OCSORTTracker}[name]
    tracker = kind(frame_rate=fps)

    def update(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        detections = sv.Detections(
            xyxy=rows[:, :4].astype(np.float32),
            confidence=rows[:, 4].astype(np.float32),
            class_id=rows[:, 5].astype(int),
        )
        out = tracker.update(detections)
        ids = np.asarray(out.tracker_id if out.tracker_id is not None else [], np.int64)
        confirmed = ids >= 0  # -1: not yet confirmed
        return ids[confirmed], np.asarray(out.xyxy).reshape(-1, 4)[confirmed]

    return update


def run(
    folders: list[str | Path], trackers: list[str], protocol: str = "flags"
) -> tuple[list[Row], list[dict[str, Any]]]:
    """Rows per tracker over all sequences, and per-sequence scores."""
    sequences = [read_sequence(f, protocol) for f in folders]
    rows, per_sequence = [], []
    for name in trackers:
        every: list[Frame] = []
        times: list[float] = []
        for number, sequence in enumerate(sequences):
            if name == "ours":
                update = _ours(sequence.fps, protocol)
            elif name == "oracle":
                update = _oracle(sequence, protocol)
            else:
                update = _peer(name, sequence.fps)
            frames: list[Frame] = []
            for frame in range(1, sequence.length + 1):
                rows_in = sequence.detections.get(frame, np.zeros((0, 6)))
                start = time.perf_counter()
                ids, boxes = update(rows_in)
                times.append((time.perf_counter() - start) * 1000)
                truth = sequence.truth[frame]
                offset = SEQUENCE_IDS * number
                scored = (truth.ids + offset, truth.boxes, ids + offset, boxes)
                frames.append(without_ignored(scored, truth.ignored, unscored_xyxy=truth.unscored))
            scores = mot_metrics(frames)
            per_sequence.append({"tracker": name, "sequence": sequence.name, **scores})
            every += frames
        total = mot_metrics(every)
        rows.append(
            Row(
                tracker=name,
                mota=round(total["mota"], 4),
                idf1=round(total["idf1"], 4),
                hota=round(total["hota"], 4),
                id_switches=total["id_switches"],
                false_positives=total["false_positives"],
                misses=total["misses"],
                update_p50_ms=round(float(np.percentile(times, 50)), 3),
            )
        )
    return rows, per_sequence


def table(rows: list[Row]) -> str:
    lines = [
        "| tracker | MOTA | IDF1 | HOTA | ID switches | false positives | misses | update p50 (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.tracker} | {r.mota:.3f} | {r.idf1:.3f} | {r.hota:.3f} | {r.id_switches} | "
            f"{r.false_positives} | {r.misses} | {r.update_p50_ms:.3f} |"
        )
    return "\n".join(lines)
