"""`ByteTracker`: multi-object tracking by detection, in ByteTrack's manner (a library, no ZeroMQ).

    tracker = ByteTracker()
    for frame in frames:
        tracks = tracker.update(xyxy, scores, class_ids, stamp_s)   # confirmed tracks seen this frame

Each update, in order: (1) predict every track to this frame's time with its Kalman filter; (2) match
high-score detections to confirmed and lost tracks by IoU with optimal assignment (scipy); (3) match
low-score detections to the confirmed tracks still unmatched, which keeps tracks alive through
occlusion and blur without letting weak detections start tracks; (4) match the remaining high-score
detections to tentative tracks; (5) let lost tracks take back leftovers level with and beside their
last box (an object hidden by one passing in front comes out on its other side); (6) start tentative
tracks from high-score leftovers; (7) confirm, lose and remove tracks by their parameters. Matched
tracks are corrected together; a detection that looks like the visible part of a partly hidden object
corrects its track as the whole object. Matching is class-consistent: a car never continues a cone.
Detections may come in any order, a frame may be empty, and a gap in stamps is one longer prediction.
The state of every track lives in one table of arrays, a row per track, so each step is a few numpy
operations whatever the number of tracks; a `Track` is a view of its row.
"""

from __future__ import annotations

import enum
import itertools
import math
from dataclasses import dataclass

import numpy as np

from perception.track import kalman


class TrackState(enum.Enum):
    TENTATIVE = "tentative"  # seen, not yet confirmed
    CONFIRMED = "confirmed"
    LOST = "lost"  # confirmed, missed since; may come back
    REMOVED = "removed"


@dataclass(frozen=True)
class TrackerParams:
    """The tracker's settings (each field's comment says what it does and why its default). Scores are
    compared as the detector gives them; IoUs and shares are 0 to 1; times are seconds; box sizes and
    distances are in box sizes or heights, so the settings hold at any image size."""

    # The defaults are for the shipped detector on the driving scenes (10 frames/s); people in
    # MOTChallenge files take `perception.track.mot.PEDESTRIAN_PARAMS` (ByteTrack's published settings,
    # no widened gate, the filter's boxes). Score thresholds for the shipped detector, whose scores run
    # lower than YOLOX's (ByteTrack's 0.6 / 0.7 are for those). Tuned on the driving scenes; see
    # docs/benchmarks.md, "Tracker tuning history".
    high_score: float = 0.4  # detections at least this sure are matched first and may start tracks
    # Weaker ones are ignored; between the two they only extend tracks. Higher than ByteTrack's 0.1,
    # which let the detector's loosest boxes (a pixel or two off distant objects) extend tracks as
    # false positives; tuned on the driving scenes (docs/benchmarks.md, "Tracker tuning history").
    low_score: float = 0.3
    new_track_score: float = 0.45  # a track starts from a detection at least this sure
    match_iou: float = 0.2  # least IoU of a first-stage match
    low_match_iou: float = 0.5  # least IoU of a low-score match (stricter: weak evidence)
    confirm_hits: int = 2  # matched frames before a track is confirmed
    # A lost track is removed after this long unseen: long enough for the re-entry beside the last box
    # (below) to bring back objects hidden for a while, short enough not to add ID switches; tuned on
    # the driving scenes (docs/benchmarks.md, "Tracker tuning history").
    max_lost_s: float = 2.0
    # How much a track's velocity may change per 0.1 s, relative to its box's size (SORT's and
    # ByteTrack's 1/160, which they count per frame; spread over time here, see kalman). Objects that
    # speed up in the image faster than that (road users passing a moving camera) need more, or a track
    # lags and lands on the object just behind; a larger value did not carry over to held-out driving
    # scenes, so it stays 1/160 (docs/benchmarks.md, "Tracker tuning history").
    velocity_noise: float = 1 / 160
    class_aware: bool = True  # match detections only to tracks of their class
    buffer: float = 0.3  # boxes grow by this share of their size each side before IoU (C-BIoU) when
    # frames are 0.1 s apart, in proportion at other rates (a third at 30 frames/s): small, fast objects
    # whose boxes no longer overlap from one frame to the next still match
    gate_sigmas: float = 2.0  # track boxes also grow by this many standard deviations of their predicted
    # centre: young tracks, whose velocity is barely known, and lost ones reach further than settled
    # ones. Both boxes of a pair grow, so an uncertain track takes whatever stands within its gate as a
    # near-perfect match: right for road users far apart, wrong in a crowd (PEDESTRIAN_PARAMS: 0)
    # Far road users hidden for a second by one passing in front were the first cause of identity loss
    # on the driving scenes: the visible part of the hidden object narrows from one side, the filter
    # reads that as motion, and the object comes back on the occluder's other side, away from where the
    # track has drifted. Two remedies, each 0 to turn it off, tuned on the driving scenes
    # (docs/benchmarks.md, "Tracker tuning history"):
    occluded_width_ratio: float = 0.8  # a detection narrower than this share of its track's box, and as
    # tall, is a partly hidden object: the filter sees it widened to the track's width from its edge
    # nearer the track's own (the edge that stayed), so the track keeps the whole object, and its speed
    reentry_gap_heights: float = 1.0  # a lost track takes back a high-score detection no track matched
    # when the two are level (vertical extents overlapping by half or more) and side by side, at most
    # this many box heights apart: the last box seen against the new one, whatever the track predicted
    # What a track reports as its box: the newest detection matched to it (False), or the filter's estimate
    # of the whole object after that detection (True), as SORT and ByteTrack report. The shipped
    # detector's boxes are tight and the filter lags road users that speed up in the image; public
    # pedestrian detections are jittered and often box only the visible part of a person, which the
    # filter's estimate smooths out (docs/benchmarks.md, "Tracking people").
    filtered_boxes: bool = False

    def __post_init__(self) -> None:
        ranges = {
            "high_score": (0, 1), "low_score": (0, 1), "new_track_score": (0, 1), "match_iou": (0, 1),
            "low_match_iou": (0, 1), "occluded_width_ratio": (0, 1), "confirm_hits": (1, math.inf),
            "max_lost_s": (0, math.inf), "velocity_noise": (0, math.inf), "buffer": (0, math.inf),
            "gate_sigmas": (0, math.inf), "reentry_gap_heights": (0, math.inf),
        }  # fmt: skip
        positive = ("velocity_noise",)  # a zero would freeze the filter
        for name, (least, most) in ranges.items():
            value = getattr(self, name)
            above = value > least if name in positive else value >= least
            if not (above and value <= most):
                lower = f"{'>' if name in positive else '>='} {least}"
                expected = lower if most == math.inf else f"in [{least}, {most}]"
                raise ValueError(f"tracker parameter {name}: expected {expected}, found {value}")
        if self.low_score > self.high_score:
            raise ValueError(
                f"tracker parameter low_score: expected at most high_score ({self.high_score}), "
                f"found {self.low_score}"
            )


# Track states as the tracker stores them, one int8 per track: the index into TrackState's members.
_STATES = list(TrackState)
_TENTATIVE, _CONFIRMED, _LOST, _REMOVED = range(4)


class _Table:
    """Every track's state, a row each, so that each step of an update is one numpy operation over all
    tracks: per-track Python objects cost more than the filter's arithmetic at 50 tracks."""

    COLUMNS = ("means", "covariances", "class_ids", "states", "hits", "scores", "last_seen_s", "boxes")

    def __init__(self, rows: int = 0) -> None:
        self.means = np.zeros((rows, 8))  # Kalman state: cx, cy, w, h, and their velocities (px, px/s)
        self.covariances = np.zeros((rows, 3, 4))  # 3 x 4 blocks (see kalman)
        self.class_ids = np.zeros(rows, np.int64)
        self.states = np.zeros(rows, np.int8)
        self.hits = np.zeros(rows, np.int64)
        self.scores = np.zeros(rows)
        self.last_seen_s = np.zeros(rows)
        self.boxes = np.zeros((rows, 4))  # xyxy reported as of the newest frame that matched (filtered_boxes)

    def keep(self, rows: np.ndarray) -> None:
        for name in self.COLUMNS:
            setattr(self, name, getattr(self, name)[rows])

    def extend(self, other: _Table) -> None:
        for name in self.COLUMNS:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))

    def row(self, index: int) -> _Table:
        single = _Table()
        for name in self.COLUMNS:
            setattr(single, name, getattr(self, name)[index : index + 1].copy())
        return single


class Track:
    """One track: its id, class and birth, and a view of its row in the tracker's state. A track the
    tracker removes keeps a copy of its last row, so a consumer holding it still reads what it was."""

    __slots__ = ("_row", "_table", "born_s", "class_id", "id")

    def __init__(self, id: int, class_id: int, born_s: float, table: _Table, row: int) -> None:
        self.id, self.class_id, self.born_s = id, class_id, born_s
        self._table, self._row = table, row

    def __repr__(self) -> str:
        return f"Track(id={self.id}, class_id={self.class_id}, state={self.state.value}, box={self.box.tolist()})"

    @property
    def state(self) -> TrackState:
        """Tentative (not yet confirmed), confirmed, lost (missed since; may come back) or removed."""
        return _STATES[int(self._table.states[self._row])]

    @property
    def hits(self) -> int:
        """Frames in which a detection matched this track."""
        return int(self._table.hits[self._row])

    @property
    def score(self) -> float:
        """The score of the detection that matched last."""
        return float(self._table.scores[self._row])

    @property
    def last_seen_s(self) -> float:
        """The stamp (s) of the newest frame in which a detection matched this track."""
        return float(self._table.last_seen_s[self._row])

    @property
    def mean(self) -> np.ndarray:
        """Kalman state: cx, cy, w, h, and their velocities (px, px/s)."""
        return np.array(self._table.means[self._row])

    @property
    def covariance(self) -> np.ndarray:
        """The state's covariance as 3 x 4 blocks (see kalman)."""
        return np.array(self._table.covariances[self._row])

    @property
    def box(self) -> np.ndarray:
        """The box as of the newest frame that matched (what a consumer reports): the detection matched
        then, or with `filtered_boxes` the filter's estimate after it."""
        return np.array(self._table.boxes[self._row])

    @property
    def xyxy(self) -> np.ndarray:
        """The filter's box, predicted to the newest frame's time (what matching uses)."""
        cx, cy, w, h = self._table.means[self._row, :4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    @property
    def velocity(self) -> np.ndarray:
        """Image-space velocity of the box centre, pixels per second."""
        return np.array(self._table.means[self._row, 4:6])

    def age_s(self, now_s: float) -> float:
        """Seconds since the track was started, as of `now_s` (a stamp in seconds)."""
        return now_s - self.born_s


# Seconds since the epoch stay below 1e11 until the year 5138; a stamp above it is one in milli-, micro-
# or nanoseconds, which the filter would read as a gap of years between frames and so lose every track.
_MOST_SECONDS = 1e11


def check_seconds(what: str, stamp_s: float) -> float:
    """The stamp as a float, once it is a finite number of seconds (a Header's `stamp` is nanoseconds)."""
    # A number: Python's or numpy's, a 0-d array too; not a flag, text or a list
    if isinstance(stamp_s, bool) or np.ndim(stamp_s) != 0 or np.asarray(stamp_s).dtype.kind not in "iuf":
        raise TypeError(f"{what}: expected a stamp in seconds, found {type(stamp_s).__name__} {stamp_s!r}")
    seconds = float(stamp_s)
    if not math.isfinite(seconds):
        raise ValueError(f"{what}: expected a finite stamp in seconds, found {seconds}")
    if abs(seconds) >= _MOST_SECONDS:
        raise ValueError(
            f"{what}: expected seconds, found {seconds:.4g}, which is milli-, micro- or nanoseconds "
            "(a Header's stamp is nanoseconds: pass its stamp_s)"
        )
    return seconds


def as_boxes(xyxy: np.ndarray, what: str) -> np.ndarray:
    """N x 4 boxes as floats; an empty input is 0 x 4, one box of 4 numbers is 1 x 4; another shape is
    refused, `what` naming the caller."""
    boxes = np.asarray(xyxy, np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.shape == (4,):
        return boxes.reshape(1, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"{what}: expected N x 4 boxes (x1 y1 x2 y2), found shape {boxes.shape}"
            + (" (scores go in their own argument)" if boxes.ndim == 2 and boxes.shape[1] in (5, 6) else "")
        )
    return boxes


def _class_ids(class_ids: np.ndarray) -> np.ndarray:
    """N class ids as int64: integers, or floats holding whole numbers (a detections array's column)."""
    values = np.asarray(class_ids).reshape(-1)
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    if values.dtype.kind == "f" and np.isfinite(values).all() and (values == np.round(values)).all():
        return values.astype(np.int64)
    found = next((v for v in values.tolist() if not (isinstance(v, float) and v.is_integer())), values.dtype)
    raise ValueError(f"update: expected integer class ids (or None for one class), found {found!r}")


def xyxy_to_cxcywh(xyxy: np.ndarray) -> np.ndarray:
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)


def _grown(xyxy: np.ndarray, share: float) -> np.ndarray:
    margin = share * (xyxy[:, 2:] - xyxy[:, :2])
    return np.concatenate([xyxy[:, :2] - margin, xyxy[:, 2:] + margin], axis=1)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a and b (xyxy in the last axis), broadcast against each other."""
    # Written out per coordinate: np.prod and np.clip cost more than the arithmetic on small matrices.
    ax1, ay1, ax2, ay2 = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bx1, by1, bx2, by2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    inter = np.maximum(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0) * np.maximum(
        np.minimum(ay2, by2) - np.maximum(ay1, by1), 0
    )
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    iou: np.ndarray = inter / np.maximum(union, 1e-9)
    return iou


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a (N x 4 xyxy) with every box of b (M x 4)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    return pairwise_iou(a[:, None, :], b[None, :, :])


def side_by_side(a: np.ndarray, b: np.ndarray, gap_heights: float) -> np.ndarray:
    """How well each box of b (M x 4 xyxy) continues each box of a (N x 4) beside it, 0-1: N x M. Pairs
    must be level, their vertical extents overlapping by half or more; the score falls from that
    overlap to 0 as the gap between them grows to `gap_heights` times the taller one's height."""
    a, b = np.asarray(a, np.float64)[:, None, :], np.asarray(b, np.float64)[None, :, :]
    overlap = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    span = np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])
    level = np.maximum(overlap, 0) / np.maximum(span, 1e-9)
    gap = np.maximum(np.maximum(a[..., 0], b[..., 0]) - np.minimum(a[..., 2], b[..., 2]), 0)
    height = np.maximum(a[..., 3] - a[..., 1], b[..., 3] - b[..., 1])
    score: np.ndarray = level * np.clip(1 - gap / np.maximum(gap_heights * height, 1e-9), 0, 1)
    score[level < 0.5] = 0.0
    return score


def widen_occluded(detected: np.ndarray, predicted: np.ndarray, ratio: float) -> np.ndarray:
    """Filter measurements (N x 4 cx, cy, w, h) for detections (N x 4 xyxy) matched to tracks whose
    predicted boxes are `predicted` (N x 4 cx, cy, w, h). A detection narrower than `ratio` times its
    track's width and of its height (within 15%) is taken for the visible part of a partly hidden
    object and widened to the track's width, keeping the edge nearer the track's own (the one that
    stayed put while the other was covered)."""
    measured = xyxy_to_cxcywh(detected)
    width, height = predicted[:, 2], predicted[:, 3]
    hidden = (measured[:, 2] < ratio * width) & (np.abs(measured[:, 3] - height) < 0.15 * height)
    if hidden.any():
        left_stayed = np.abs(detected[:, 0] - (predicted[:, 0] - width / 2)) < np.abs(
            detected[:, 2] - (predicted[:, 0] + width / 2)
        )
        centre = np.where(left_stayed, detected[:, 0] + width / 2, detected[:, 2] - width / 2)
        measured[hidden, 0] = centre[hidden]
        measured[hidden, 2] = width[hidden]
    return measured


_NO_ROWS = np.zeros(0, np.int64)
_MOST_BUFFER_INTERVALS = 3.0  # a longer gap between frames grows the buffer no further
_ANY_OVERLAP = 0.01  # least side-by-side score of a re-entry: any level pair within the gap
# Tracks matched fewer times than this have no settled width to compare a detection with.
_SETTLED_HITS = 3


def assign(iou: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Optimal one-to-one matches of rows to columns with IoU >= threshold: the matched rows, their
    columns, then the unmatched rows and the unmatched columns (each in increasing order)."""
    # scipy is imported here, not with the module: half a second the command line's start need not pay.
    from scipy.optimize import linear_sum_assignment

    rows, cols = iou.shape
    if rows == 0 or cols == 0:
        return _NO_ROWS, _NO_ROWS, np.arange(rows), np.arange(cols)
    r, c = linear_sum_assignment(-iou)
    good = iou[r, c] >= threshold
    r, c = r[good], c[good]
    free_rows, free_cols = np.ones(rows, bool), np.ones(cols, bool)
    free_rows[r], free_cols[c] = False, False
    return r, c, np.flatnonzero(free_rows), np.flatnonzero(free_cols)


class ByteTracker:
    def __init__(self, params: TrackerParams | None = None) -> None:
        self.params = params or TrackerParams()
        self._ids = itertools.count(1)
        self.ids_issued = 0
        # Detections left out for a NaN or infinite number or a box of no size: one such row used to
        # enter the Kalman state and make every later update fail.
        self.invalid_detections = 0
        self.reset()

    def reset(self, *, restart_ids: bool = True) -> None:
        """Forget every track; ids start again from 1 unless `restart_ids` is false (a node that starts
        over mid-stream keeps its ids unique, so that nothing downstream mixes an old track with a new)."""
        self.tracks: list[Track] = []  # alive (tentative, confirmed or lost); track i is row i of _table
        self._table = _Table()
        if restart_ids:
            self._ids = itertools.count(1)
            self.ids_issued = 0
        self._last_stamp_s: float | None = None

    @property
    def last_stamp_s(self) -> float | None:
        """The stamp of the newest frame fed to `update`, None before the first."""
        return self._last_stamp_s

    def update(
        self, xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray | None, stamp_s: float
    ) -> list[Track]:
        """Feed one frame's detections and get the confirmed tracks matched in it.

        `xyxy`: N x 4 boxes, x1 y1 x2 y2 in pixels (not x y w h); `scores`: N, compared with the
        params' thresholds as they are (0 to 1 for the defaults); `class_ids`: N integers, or None for
        one class; N may be 0. `stamp_s`: when the frame was taken, in seconds (a `Header`'s `stamp_s`,
        not its `stamp` in nanoseconds), never before the last frame's; time, not frame count, drives
        the filter and `max_lost_s`. A row with a NaN or infinite number or a box of no size is left
        out and counted in `invalid_detections`. The tracks returned are views that the next update
        moves on (copy `box` to keep it)."""
        p = self.params
        boxes = as_boxes(xyxy, "update")
        scores = np.asarray(scores, np.float64).reshape(-1)
        class_ids = np.zeros(len(boxes), np.int64) if class_ids is None else _class_ids(class_ids)
        if not len(boxes) == len(scores) == len(class_ids):
            raise ValueError(
                f"update: expected as many scores and class ids as boxes ({len(boxes)}), "
                f"found {len(scores)} and {len(class_ids)}"
            )
        stamp_s = check_seconds("update: stamp_s", stamp_s)
        valid = (
            np.isfinite(boxes).all(axis=1)
            & np.isfinite(scores)
            & (boxes[:, 2] > boxes[:, 0])
            & (boxes[:, 3] > boxes[:, 1])
        )
        if not valid.all():
            self.invalid_detections += int((~valid).sum())
            boxes, scores, class_ids = boxes[valid], scores[valid], class_ids[valid]
        dt = 0.0 if self._last_stamp_s is None else stamp_s - self._last_stamp_s  # no track to predict yet
        if dt < 0:
            raise ValueError(f"update: stamps must not go back in time ({self._last_stamp_s} -> {stamp_s})")
        first_frame = self._last_stamp_s is None
        self._last_stamp_s = stamp_s
        table = self._table
        # 1. Predict, and the gate each track matches through.
        table.means, table.covariances = kalman.predict_many(
            table.means, table.covariances, max(dt, 1e-3), p.velocity_noise
        )
        centres, sizes = table.means[:, :2], table.means[:, 2:4]
        # The buffer covers motion the prediction misses, which grows with the time between frames.
        buffer = p.buffer * min(max(dt, 1e-3) / kalman.NOISE_INTERVAL_S, _MOST_BUFFER_INTERVALS)
        gates = _grown(np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1), buffer)
        # Both boxes of a pair grow by the track's uncertainty, so the IoU measures overlap, not size.
        sigma = p.gate_sigmas * np.sqrt(table.covariances[:, 0, :2])  # of the centre's x and y
        margins = np.concatenate([-sigma, sigma], axis=1)
        gates += margins
        states = table.states
        high = np.flatnonzero(scores >= p.high_score)
        low = np.flatnonzero((scores >= p.low_score) & (scores < p.high_score))
        # A track unseen for longer than max_lost_s (lost, or seen before a gap in the stamps) is gone
        # before it can match: its grown gate would take anything, as ByteTrack's.
        expired = stamp_s - table.last_seen_s > p.max_lost_s
        pool = np.flatnonzero((states != _TENTATIVE) & ~expired)  # confirmed and lost
        tentative = np.flatnonzero((states == _TENTATIVE) & ~expired)
        grown = _grown(boxes, buffer)

        def similarity(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
            """IoU of tracks (rows of the table) and detections, 0 across classes."""
            if not len(rows) or not len(columns):
                return np.zeros((len(rows), len(columns)))
            iou = pairwise_iou(
                gates[rows][:, None, :], grown[columns][None, :, :] + margins[rows][:, None, :]
            )
            if p.class_aware:
                iou[table.class_ids[rows][:, None] != class_ids[columns][None, :]] = 0.0
            return iou

        # 2. High-score detections against confirmed and lost tracks.
        rows, columns, unmatched_tracks, unmatched_high = assign(similarity(pool, high), p.match_iou)
        matched_rows, matched_detections = [pool[rows]], [high[columns]]
        # 3. Low-score detections against confirmed tracks still unmatched (not lost ones).
        unmatched = pool[unmatched_tracks]
        remaining = unmatched[states[unmatched] == _CONFIRMED]
        rows, columns, _, _ = assign(similarity(remaining, low), p.low_match_iou)
        matched_rows.append(remaining[rows])
        matched_detections.append(low[columns])
        # 4. Leftover high-score detections against tentative tracks.
        left = high[unmatched_high]
        rows, columns, _, unmatched_left = assign(similarity(tentative, left), p.match_iou)
        matched_rows.append(tentative[rows])
        matched_detections.append(left[columns])
        # 5. Lost tracks still unmatched against leftover high-score detections side by side with
        # their last box (see `reentry_gap_heights`).
        left = left[unmatched_left]
        lost = unmatched[states[unmatched] == _LOST]
        if p.reentry_gap_heights > 0 and len(lost) and len(left):
            beside = side_by_side(table.boxes[lost], boxes[left], p.reentry_gap_heights)
            if p.class_aware:
                beside[table.class_ids[lost][:, None] != class_ids[left][None, :]] = 0.0
            rows, columns, _, unmatched_left = assign(beside, _ANY_OVERLAP)
            matched_rows.append(lost[rows])
            matched_detections.append(left[columns])
            left = left[unmatched_left]
        matched = np.concatenate(matched_rows)
        self._correct(matched, np.concatenate(matched_detections), boxes, scores, stamp_s)
        seen = np.zeros(len(self.tracks), bool)
        seen[matched] = True
        # 6. New tracks.
        born = left[scores[left] >= p.new_track_score]
        if len(born):
            self._start(born, boxes, scores, class_ids, stamp_s, _CONFIRMED if first_frame else _TENTATIVE)
            # (as ByteTrack: on the very first frame there is nothing to confirm against)
            seen = np.concatenate([seen, np.ones(len(born), bool)])
        # 7. Life cycle.
        states = table.states
        confirm = (states == _LOST) | ((states == _TENTATIVE) & (table.hits >= p.confirm_hits))
        states[seen & confirm] = _CONFIRMED
        states[~seen & (states == _CONFIRMED)] = _LOST
        removed = (~seen & (states == _TENTATIVE)) | (
            (states == _LOST) & (stamp_s - table.last_seen_s > p.max_lost_s)
        )
        reported = [self.tracks[i] for i in np.flatnonzero(seen & (states == _CONFIRMED)).tolist()]
        if removed.any():
            self._remove(removed)
        return reported

    def _correct(
        self, rows: np.ndarray, detections: np.ndarray, boxes: np.ndarray, scores: np.ndarray, stamp_s: float
    ) -> None:
        """Kalman corrections of the tracks in `rows` by the detections matched to them, in one batch."""
        table, p = self._table, self.params
        measured = xyxy_to_cxcywh(boxes[detections])
        if p.occluded_width_ratio > 0:
            settled = table.hits[rows] >= _SETTLED_HITS
            measured[settled] = widen_occluded(
                boxes[detections[settled]], table.means[rows[settled], :4], p.occluded_width_ratio
            )
        table.means[rows], table.covariances[rows] = kalman.update_many(
            table.means[rows], table.covariances[rows], measured
        )
        table.hits[rows] += 1
        table.scores[rows] = scores[detections]
        table.last_seen_s[rows] = stamp_s
        if p.filtered_boxes:
            centres, sizes = table.means[rows, :2], table.means[rows, 2:4]
            table.boxes[rows] = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
        else:
            table.boxes[rows] = boxes[detections]

    def _start(
        self,
        detections: np.ndarray,
        boxes: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        stamp_s: float,
        state: int,
    ) -> None:
        p, first_row = self.params, len(self.tracks)
        new = _Table(len(detections))
        for row, d in enumerate(detections):
            new.means[row], new.covariances[row] = kalman.initiate(
                xyxy_to_cxcywh(boxes[d])[0], p.velocity_noise
            )
        new.class_ids[:] = class_ids[detections]
        new.states[:] = state
        new.hits[:] = 1
        new.scores[:] = scores[detections]
        new.last_seen_s[:] = stamp_s
        new.boxes[:] = boxes[detections]
        self._table.extend(new)
        for row, d in enumerate(detections, start=first_row):
            self.tracks.append(Track(next(self._ids), int(class_ids[d]), stamp_s, self._table, row))
        self.ids_issued += len(detections)

    def _remove(self, removed: np.ndarray) -> None:
        table = self._table
        table.states[removed] = _REMOVED
        for row in np.flatnonzero(removed).tolist():
            gone = self.tracks[row]
            gone._table, gone._row = table.row(row), 0
        kept = np.flatnonzero(~removed)
        table.keep(kept)
        self.tracks = [self.tracks[i] for i in kept.tolist()]
        for row, track in enumerate(self.tracks):
            track._row = row
