"""MOTChallenge text files: detections in, tracks out, so the tracker can be scored on real datasets
with the usual tools (TrackEval, py-motmetrics).

Rows are `frame, id, left, top, width, height, score, x, y, z` (frames from 1, pixels; detection files
have id -1). A detection file's 8th column is read as a class id where it is a non-negative integer
(several detector exports write the class there); otherwise every detection is class 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from perception.track.tracker import ByteTracker, TrackerParams

# MOTChallenge's pedestrians come with detectors like YOLOX, whose scores run higher than ours:
# ByteTrack's thresholds, and the driving scene's occlusion remedies off (untested on people, whose
# width changes with each stride). `percept track run` and `percept bench mot --protocol mot17` use these.
PEDESTRIAN_PARAMS = TrackerParams(
    high_score=0.5,
    low_score=0.1,
    new_track_score=0.6,
    max_lost_s=1.0,
    occluded_width_ratio=0.0,
    reentry_gap_heights=0.0,
)


def read_detections(path: str | Path) -> dict[int, np.ndarray]:
    """Rows per frame: N x 6 (x1, y1, x2, y2, score, class)."""
    try:
        table = np.loadtxt(path, delimiter=",", ndmin=2)
    except (OSError, ValueError) as exc:
        raise ValueError(f"detections {path}: cannot read it as MOTChallenge rows: {exc}") from None
    if table.size == 0:
        return {}
    if table.shape[1] < 7:
        raise ValueError(
            f"detections {path}: expected at least 7 comma-separated columns (frame, id, left, top, width, "
            f"height, score), found {table.shape[1]}"
        )
    classes = np.zeros(len(table))
    if table.shape[1] >= 8 and np.all(table[:, 7] >= 0) and np.all(table[:, 7] == np.round(table[:, 7])):
        classes = table[:, 7]
    rows = np.c_[table[:, 2:4], table[:, 2:4] + table[:, 4:6], table[:, 6], classes]
    frames = table[:, 0].astype(int)
    return {int(f): rows[frames == f] for f in np.unique(frames)}


def track_file(
    detections: dict[int, np.ndarray], tracker: ByteTracker, fps: float
) -> Iterator[tuple[int, int, np.ndarray, float]]:
    """(frame, track id, xyxy, score) for every confirmed track of every frame, frames in order (empty
    frames included, so a gap in detections is a gap in time, not a skipped step)."""
    if not detections:
        return
    for frame in range(1, max(detections) + 1):
        rows = detections.get(frame, np.zeros((0, 6)))
        for track in tracker.update(rows[:, :4], rows[:, 4], rows[:, 5].astype(int), (frame - 1) / fps):
            yield frame, track.id, track.box, track.score


def write_tracks(rows: Iterator[tuple[int, int, np.ndarray, float]], path: str | Path) -> int:
    """Write MOTChallenge result rows; the number written."""
    count = 0
    with open(path, "w") as out:
        for frame, track_id, (x1, y1, x2, y2), score in rows:
            out.write(
                f"{frame},{track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.4f},-1,-1,-1\n"
            )
            count += 1
    return count
