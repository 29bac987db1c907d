"""`ByteTracker`: multi-object tracking by detection, in ByteTrack's manner (a library, no ZeroMQ).

    tracker = ByteTracker()
    for frame in frames:
        tracks = tracker.update(xyxy, scores, class_ids, stamp_s)   # confirmed tracks seen this frame

Each update, in order: (1) predict every track to this frame's time with its Kalman filter; (2) match
high-score detections to confirmed and lost tracks by IoU with optimal assignment (scipy); (3) match
low-score detections to the confirmed tracks still unmatched, which keeps tracks alive through
occlusion and blur without letting weak detections start tracks; (4) match the remaining high-score
detections to tentative tracks; (5) start tentative tracks from high-score leftovers; (6) confirm,
lose and remove tracks by their parameters. Matching is class-consistent: a car never continues a cone.
Detections may come in any order, a frame may be empty, and a gap in stamps is one longer prediction.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from perception.track import kalman


class TrackState(enum.Enum):
    TENTATIVE = "tentative"  # seen, not yet confirmed
    CONFIRMED = "confirmed"
    LOST = "lost"  # confirmed, missed since; may come back
    REMOVED = "removed"


@dataclass(frozen=True)
class TrackerParams:
    # Score thresholds for the shipped detector, whose scores run lower than YOLOX's (ByteTrack's 0.5 /
    # 0.6 are for those; `percept track run` keeps them for MOTChallenge files). Tuned on driving seed
    # 3000 at 10 frames/s (MOTA 0.897 -> 0.902 against 0.35 / 0.45); the benchmark scores seed 1000.
    high_score: float = 0.4  # detections at least this sure are matched first and may start tracks
    low_score: float = 0.1  # weaker ones are ignored; between the two they only extend tracks
    new_track_score: float = 0.45  # a track starts from a detection at least this sure
    match_iou: float = 0.2  # least IoU of a first-stage match
    low_match_iou: float = 0.5  # least IoU of a low-score match (stricter: weak evidence)
    confirm_hits: int = 2  # matched frames before a track is confirmed
    max_lost_s: float = 1.5  # a lost track is removed after this long unseen
    # How much a track's velocity may change per frame, relative to its box's size (SORT's and
    # ByteTrack's 1/160). Objects that speed up in the image faster than that (road users passing a
    # moving camera) need more, or a track lags and lands on the object just behind. 1/80 with
    # max_lost_s 2.5 cut ID switches on the tuning seeds (38 -> 27 in 12 sequences) but not on held-out
    # ones (seed 1000: 49 -> 34; seed 7000: 34 -> 39; MOTA and IDF1 within 0.003), so it stays 1/160.
    velocity_noise: float = 1 / 160
    class_aware: bool = True  # match detections only to tracks of their class
    buffer: float = 0.3  # boxes grow by this share of their size each side before IoU (C-BIoU): small,
    # fast objects whose boxes no longer overlap from one frame to the next still match
    gate_sigmas: float = 2.0  # track boxes also grow by this many standard deviations of their predicted
    # centre: young tracks, whose velocity is barely known, reach further than settled ones
    default_dt: float = 0.1  # seconds assumed between the first two frames


@dataclass
class Track:
    id: int
    class_id: int
    mean: np.ndarray  # Kalman state: cx, cy, w, h, and their velocities (px, px/s)
    covariance: np.ndarray  # 3 x 4 blocks (see kalman)
    score: float
    state: TrackState = TrackState.TENTATIVE
    hits: int = 1
    born_s: float = 0.0
    last_seen_s: float = 0.0
    # (stamp, xyxy) when matched; the last 30 are enough for speed estimates and bounded for long runs
    history: deque[tuple[float, np.ndarray]] = field(default_factory=lambda: deque(maxlen=30))

    @property
    def box(self) -> np.ndarray:
        """The box observed in the newest frame that matched (what a consumer reports): the filter's
        estimate lags a little behind objects that speed up or grow as they come closer."""
        return self.history[-1][1]

    @property
    def xyxy(self) -> np.ndarray:
        """The filter's box, predicted to the newest frame's time (what matching uses)."""
        cx, cy, w, h = self.mean[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    @property
    def velocity(self) -> np.ndarray:
        """Image-space velocity of the box centre, pixels per second."""
        return np.asarray(self.mean[4:6])

    def age_s(self, now_s: float) -> float:
        return now_s - self.born_s


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


def assign(iou: np.ndarray, threshold: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Optimal one-to-one matches of rows to columns with IoU >= threshold, and the unmatched of each."""
    rows, cols = iou.shape
    if rows == 0 or cols == 0:
        return [], list(range(rows)), list(range(cols))
    r, c = linear_sum_assignment(-iou)
    matches = [(int(i), int(j)) for i, j in zip(r, c, strict=True) if iou[i, j] >= threshold]
    matched_rows, matched_cols = {i for i, _ in matches}, {j for _, j in matches}
    return (
        matches,
        [i for i in range(rows) if i not in matched_rows],
        [j for j in range(cols) if j not in matched_cols],
    )


class ByteTracker:
    def __init__(self, params: TrackerParams | None = None) -> None:
        self.params = params or TrackerParams()
        self.reset()

    def reset(self) -> None:
        """Forget every track; ids start again from 1."""
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)
        self.ids_issued = 0
        self._last_stamp_s: float | None = None

    def update(
        self, xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, stamp_s: float
    ) -> list[Track]:
        """Feed one frame's detections (N x 4 xyxy pixels, N scores, N class ids; N may be 0) taken at
        `stamp_s` seconds; returns the confirmed tracks matched in this frame."""
        p = self.params
        boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        class_ids = np.asarray(class_ids, np.int64).reshape(-1)
        if not len(boxes) == len(scores) == len(class_ids):
            raise ValueError(
                f"update: expected as many scores and class ids as boxes ({len(boxes)}), "
                f"found {len(scores)} and {len(class_ids)}"
            )
        dt = p.default_dt if self._last_stamp_s is None else stamp_s - self._last_stamp_s
        if dt < 0:
            raise ValueError(f"update: stamps must not go back in time ({self._last_stamp_s} -> {stamp_s})")
        first_frame = self._last_stamp_s is None
        self._last_stamp_s = stamp_s
        # 1. Predict, and the gate each track matches through, for every track at once.
        tracks = self.tracks
        gates, margins = np.zeros((len(tracks), 4)), np.zeros((len(tracks), 4))
        if tracks:
            means, covariances = kalman.predict_many(
                np.array([t.mean for t in tracks]),
                np.array([t.covariance for t in tracks]),
                max(dt, 1e-3),
                p.velocity_noise,
            )
            for track, mean, covariance in zip(tracks, means, covariances, strict=True):
                track.mean, track.covariance = mean, covariance
            centres, sizes = means[:, :2], means[:, 2:4]
            gates = _grown(np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1), p.buffer)
            # Both boxes of a pair grow by the track's uncertainty, so the IoU measures overlap, not size.
            sigma = p.gate_sigmas * np.sqrt(covariances[:, 0, :2])  # of the centre's x and y
            margins = np.concatenate([-sigma, sigma], axis=1)
            gates += margins
        track_classes = np.array([t.class_id for t in tracks], np.int64)
        states = [t.state for t in tracks]
        high = np.flatnonzero(scores >= p.high_score)
        low = np.flatnonzero((scores >= p.low_score) & (scores < p.high_score))
        pool = [i for i, s in enumerate(states) if s in (TrackState.CONFIRMED, TrackState.LOST)]
        tentative = [i for i, s in enumerate(states) if s is TrackState.TENTATIVE]
        grown = _grown(boxes, p.buffer)

        def similarity(rows: list[int], columns: np.ndarray) -> np.ndarray:
            """IoU of tracks (indices into `tracks`) and detections, 0 across classes."""
            if not rows or not len(columns):
                return np.zeros((len(rows), len(columns)))
            iou = pairwise_iou(
                gates[rows][:, None, :], grown[columns][None, :, :] + margins[rows][:, None, :]
            )
            if p.class_aware:
                iou[track_classes[rows][:, None] != class_ids[columns][None, :]] = 0.0
            return iou

        matched: list[tuple[Track, np.ndarray, float]] = []  # corrected together after matching
        # 2. High-score detections against confirmed and lost tracks.
        pairs, unmatched_tracks, unmatched_high = assign(similarity(pool, high), p.match_iou)
        for t, d in pairs:
            matched.append((tracks[pool[t]], boxes[high[d]], scores[high[d]]))
        # 3. Low-score detections against confirmed tracks still unmatched (not lost ones).
        remaining = [pool[t] for t in unmatched_tracks if states[pool[t]] is TrackState.CONFIRMED]
        pairs, _, _ = assign(similarity(remaining, low), p.low_match_iou)
        for t, d in pairs:
            matched.append((tracks[remaining[t]], boxes[low[d]], scores[low[d]]))
        # 4. Leftover high-score detections against tentative tracks.
        left = high[unmatched_high]
        pairs, _, unmatched_left = assign(similarity(tentative, left), p.match_iou)
        for t, d in pairs:
            matched.append((tracks[tentative[t]], boxes[left[d]], scores[left[d]]))
        self._correct(matched, stamp_s)
        seen = {id(track) for track, _, _ in matched}
        # 5. New tracks.
        for d in left[unmatched_left]:
            if scores[d] >= p.new_track_score:
                mean, covariance = kalman.initiate(
                    xyxy_to_cxcywh(boxes[d])[0], p.default_dt, p.velocity_noise
                )
                track = Track(next(self._ids), int(class_ids[d]), mean, covariance, float(scores[d]))
                self.ids_issued += 1
                track.born_s = track.last_seen_s = stamp_s
                track.history.append((stamp_s, boxes[d].copy()))
                if first_frame:  # as ByteTrack: nothing to confirm against on the very first frame
                    track.state = TrackState.CONFIRMED
                self.tracks.append(track)
                seen.add(id(track))
        # 6. Life cycle.
        confirmed, lost, tentative_state = TrackState.CONFIRMED, TrackState.LOST, TrackState.TENTATIVE
        kept, reported = [], []
        for track in self.tracks:
            state = track.state
            if id(track) in seen:
                if state is lost or (state is tentative_state and track.hits >= p.confirm_hits):
                    state = confirmed
                if state is confirmed:
                    reported.append(track)
            elif state is tentative_state:
                state = TrackState.REMOVED
            elif state is confirmed:
                state = lost
            if state is lost and stamp_s - track.last_seen_s > p.max_lost_s:
                state = TrackState.REMOVED
            track.state = state
            if state is not TrackState.REMOVED:
                kept.append(track)
        self.tracks = kept
        return reported

    @staticmethod
    def _correct(matched: list[tuple[Track, np.ndarray, float]], stamp_s: float) -> None:
        """Kalman corrections of every matched track, in one batch."""
        if not matched:
            return
        boxes = np.array([box for _, box, _ in matched])
        measured = xyxy_to_cxcywh(boxes)
        means, covariances = kalman.update_many(
            np.array([t.mean for t, _, _ in matched]),
            np.array([t.covariance for t, _, _ in matched]),
            measured,
        )
        for (track, _, score), box, mean, covariance in zip(matched, boxes, means, covariances, strict=True):
            track.mean, track.covariance = mean, covariance
            track.hits += 1
            track.score = float(score)
            track.last_seen_s = stamp_s
            track.history.append((stamp_s, box))  # a row of `boxes`, this update's own copy
