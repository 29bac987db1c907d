"""MOT metrics with TrackEval (the MOTChallenge and KITTI reference code; HOTA, CLEAR MOT, Identity), fed
from memory instead of its file layouts.

    frames = [(gt_ids, gt_xyxy, track_ids, track_xyxy), ...]     # one tuple per frame, in order
    scores = mot_metrics(frames)    # mota, idf1, hota, id_switches, fragmentations, precision, recall, ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from perception.track.tracker import iou_matrix

Frame = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # gt ids, gt boxes, track ids, track boxes
# Scoring several sequences together, sequence n's identities are offset by n times this, so that
# identities of different sequences never meet (the simulator's own run past 100 000: road users and
# people who came later).
SEQUENCE_IDS = 10**9


def without_ignored(
    frame: Frame,
    ignored_xyxy: np.ndarray,
    threshold: float = 0.5,
    min_height: float = 0.0,
    unscored_xyxy: np.ndarray | None = None,
) -> Frame:
    """The frame with its ignore regions applied, as MOTChallenge's and KITTI's evaluations do: tracker
    boxes that the optimal matching against all ground truth (scored, ignored and `unscored` alike, IoU
    >= 0.5) pairs with an ignored object are removed; the ignored objects were never in `frame`. So a
    box on a don't-care object is neither a false positive nor, when missing, a miss. A box paired with
    an unscored object (MOT17's cars, flag-0 rows) stays, a false positive. With `min_height` (KITTI's
    25 px), tracker boxes lower than that which match nothing at all are removed too, as KITTI's devkit
    and TrackEval's KITTI reader do: objects that small are not scored either way."""
    from scipy.optimize import linear_sum_assignment

    gt_ids, gt_boxes, track_ids, track_boxes = frame
    ignored = np.asarray(ignored_xyxy, np.float64).reshape(-1, 4)
    if not len(track_boxes) or (not len(ignored) and not min_height):
        return frame
    boxes = np.asarray(track_boxes, np.float64).reshape(-1, 4)
    scored = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    unscored = np.zeros((0, 4)) if unscored_xyxy is None else np.asarray(unscored_xyxy, np.float64)
    every = np.r_[scored, ignored, unscored.reshape(-1, 4)]
    iou = iou_matrix(every, boxes)
    rows, cols = linear_sum_assignment(-np.where(iou >= threshold, iou, 0.0))
    matched = [(r, c) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= threshold]
    keep = np.ones(len(boxes), bool)
    keep[[c for r, c in matched if len(scored) <= r < len(scored) + len(ignored)]] = False
    unmatched = np.ones(len(boxes), bool)
    unmatched[[c for _, c in matched]] = False
    keep[unmatched & (boxes[:, 3] - boxes[:, 1] < min_height)] = False
    return gt_ids, gt_boxes, np.asarray(track_ids)[keep], np.asarray(track_boxes).reshape(-1, 4)[keep]


def _contiguous(ids_per_frame: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """TrackEval wants ids 0..n-1."""
    every = np.unique(
        np.concatenate([np.asarray(i, np.int64) for i in ids_per_frame] + [np.zeros(0, np.int64)])
    )
    lookup = {int(v): k for k, v in enumerate(every)}
    return [np.array([lookup[int(i)] for i in ids], np.int64) for ids in ids_per_frame], len(every)


def mot_metrics(frames: Sequence[Frame]) -> dict[str, Any]:
    """HOTA, MOTA, IDF1 and their parts for one sequence (IoU 0.5 for CLEAR and Identity)."""
    from trackeval.metrics import CLEAR, HOTA, Identity  # the optional bench extra

    gt_ids, gt_count = _contiguous([f[0] for f in frames])
    tr_ids, tr_count = _contiguous([f[2] for f in frames])
    gt_dets = sum(len(i) for i in gt_ids)
    data: dict[str, Any] = {
        "num_timesteps": len(frames),
        "num_gt_ids": gt_count,
        "num_tracker_ids": tr_count,
        "gt_ids": gt_ids,
        "tracker_ids": tr_ids,
        "num_gt_dets": gt_dets,
        "num_tracker_dets": sum(len(i) for i in tr_ids),
        "similarity_scores": [iou_matrix(f[1], f[3]) for f in frames],
    }
    config = {"PRINT_CONFIG": False, "THRESHOLD": 0.5}
    clear = CLEAR(config).eval_sequence(data)
    identity = Identity(config).eval_sequence(data)
    hota = HOTA().eval_sequence(data)
    return {
        "mota": float(clear["MOTA"]),
        "motp": float(clear["MOTP"]),
        "idf1": float(identity["IDF1"]),
        "hota": float(np.mean(hota["HOTA"])),
        "id_switches": int(clear["IDSW"]),
        "fragmentations": int(clear["Frag"]),
        "precision": float(clear["CLR_Pr"]),
        "recall": float(clear["CLR_Re"]),
        "ground_truth": gt_dets,
        "false_positives": int(clear["CLR_FP"]),
        "misses": int(clear["CLR_FN"]),
    }
