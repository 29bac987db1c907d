"""MOTChallenge text files: detections in, tracks out, so the tracker can be scored on real datasets
with the usual tools (TrackEval, py-motmetrics).

Rows are `frame, id, left, top, width, height, score, x, y, z` (frames from 1, pixels; detection files
have id -1). A detection file's 8th column is read as a class id where it is a non-negative integer
(several detector exports write the class there); otherwise every detection is class 0.
"""

from __future__ import annotations

import configparser
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from perception.track.tracker import ByteTracker, TrackerParams

# People in MOTChallenge files, with the detectors those come with (YOLOX, Faster R-CNN, SDP), whose
# scores run higher than ours: ByteTrack's published settings for MOT17 (a detection of 0.6 or more is
# matched first, one of 0.7 or more starts a track, down to 0.1 extends one), its 30 frames (1 s) of
# lost tracks, and no gate widened by the track's uncertainty: in a crowd the next person stands
# within any widened gate, and a lost or young track took a neighbour's box as a perfect match (on the
# simulated crowd, 483 identity switches against 131). Tracks report the filter's box, as ByteTrack's
# do: public detections are jittered and often box only the visible part of a person. The driving
# scene's occlusion remedies are off (untested on people, whose width changes with each stride). `percept track run`, `percept bench mot
# --protocol mot17` and `percept bench track --scene crowd --truth` use these; docs/benchmarks.md,
# "Tracking people", has the figures.
PEDESTRIAN_PARAMS = TrackerParams(
    high_score=0.6,
    low_score=0.1,
    new_track_score=0.7,
    max_lost_s=1.0,
    gate_sigmas=0.0,
    occluded_width_ratio=0.0,
    reentry_gap_heights=0.0,
    filtered_boxes=True,
)


DEFAULT_FPS = 30.0  # frames/s of a sequence that does not say: most of MOT17's


def sequence_info(folder: str | Path) -> tuple[float | None, int | None]:
    """The frame rate and the length in frames that a MOTChallenge folder's seqinfo.ini gives, None for
    each it does not give (or when there is no seqinfo.ini); a value that is not a number is refused,
    naming the file."""
    path = Path(folder) / "seqinfo.ini"
    if not path.is_file():
        return None, None
    info = configparser.ConfigParser()
    try:
        info.read(path)
        rate = info.get("Sequence", "frameRate", fallback=None)
        length = info.get("Sequence", "seqLength", fallback=None)
        return (None if rate is None else float(rate)), (None if length is None else int(length))
    except (configparser.Error, ValueError) as exc:
        raise ValueError(
            f"{path}: expected frameRate and seqLength numbers under [Sequence] ({exc})"
        ) from None


def read_detections(path: str | Path) -> dict[int, np.ndarray]:
    """Rows per frame: N x 6 (x1, y1, x2, y2, score, class). A row that is not numbers, has a frame
    below 1, or a box that is not a finite, positive size is refused with its line number."""
    parsed = [_detection(path, number, row) for number, row in read_rows(path, "detections")]
    if not parsed:
        return {}
    width = min(len(row) for row in parsed)
    table = np.array([row[:width] for row in parsed])
    classes = np.zeros(len(table))
    if width >= 8 and np.all(table[:, 7] >= 0) and np.all(table[:, 7] == np.round(table[:, 7])):
        classes = table[:, 7]
    rows = np.c_[table[:, 2:4], table[:, 2:4] + table[:, 4:6], table[:, 6], classes]
    frames = table[:, 0].astype(int)
    return {int(f): rows[frames == f] for f in np.unique(frames)}


# Commas, as MOTChallenge writes them, with or without spaces around; or spaces and tabs alone, which
# py-motmetrics' reader takes too. Two commas in a row still leave an empty field, refused.
_SEPARATOR = re.compile(r"\s*,\s*|\s+")


def read_rows(path: str | Path, what: str) -> list[tuple[int, list[float]]]:
    """A MOTChallenge text file's rows of numbers with their line numbers; blank lines, # comments and a
    byte-order mark (an editor's) are passed over. A row that is not numbers is refused, naming the
    file (as `what`) and the line."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            rows.append((number, [float(v) for v in _SEPARATOR.split(line)]))
        except ValueError:
            raise ValueError(
                f"{what} {path}, line {number}: expected numbers separated by commas, found {line[:80]!r}"
            ) from None
    return rows


def _detection(path: str | Path, number: int, values: list[float]) -> list[float]:
    where = f"detections {path}, line {number}"
    if len(values) < 7:
        raise ValueError(
            f"{where}: expected at least 7 columns (frame, id, left, top, width, height, score), "
            f"found {len(values)}"
        )
    frame, _, left, top, box_width, box_height, score = values[:7]
    if not (frame >= 1 and frame == round(frame)):
        raise ValueError(f"{where}: expected a frame number of 1 or more, found {frame:g}")
    if not all(np.isfinite([left, top, box_width, box_height, score])):
        raise ValueError(f"{where}: expected finite numbers, found {','.join(f'{v:g}' for v in values[:7])}")
    if box_width <= 0 or box_height <= 0:
        raise ValueError(
            f"{where}: expected a box of positive width and height, found {box_width:g} x {box_height:g}"
        )
    return values


def track_file(
    detections: dict[int, np.ndarray], tracker: ByteTracker, fps: float
) -> Iterator[tuple[int, int, np.ndarray, float]]:
    """(frame, track id, xyxy, score) for every confirmed track of every frame, frames in order (empty
    frames included, so a gap in detections is a gap in time, not a skipped step)."""
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"track_file: expected a frame rate above 0, found {fps}")
    if not detections:
        return
    for frame in range(1, max(detections) + 1):
        rows = detections.get(frame, np.zeros((0, 6)))
        for track in tracker.update(rows[:, :4], rows[:, 4], rows[:, 5].astype(int), (frame - 1) / fps):
            yield frame, track.id, track.box, track.score


def write_tracks(rows: Iterator[tuple[int, int, np.ndarray, float]], out: TextIO) -> tuple[int, int]:
    """Write MOTChallenge result rows; the rows written and the identities in them."""
    count, identities = 0, set()
    for frame, track_id, (x1, y1, x2, y2), score in rows:
        out.write(f"{frame},{track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.4f},-1,-1,-1\n")
        count += 1
        identities.add(track_id)
    return count, len(identities)
