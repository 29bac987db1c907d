"""A second, zoomed pass for small objects, merged with the first by size (SNIP's rule, at test time).

A detector run on the frame scaled up finds distant objects a few pixels wide that it misses at its own
size, and boxes them tighter; but near objects, scaled past the sizes it was trained on, come out worse
(split, or boxed loosely), and those cost a tracker its identities. So each pass answers for the sizes it
sees best: boxes whose short side (in image pixels) is under `max_side` come from the zoomed pass, the
others from the first. The zoomed pass may cover a band of rows only (where distant objects are: around
the horizon, for a road camera), at a fraction of the cost; outside the band the first pass answers for
every size, and a zoomed box cut by the band's edge is a piece of something, not a small object.
Chosen with the tracker on the driving scene, where it paid and a larger input alone did not; see
docs/benchmarks.md, "Small-object pass tuning history".
"""

from __future__ import annotations

import math

import numpy as np

from perception.detector import decoders
from perception.detector.decoders import Candidates

EVERY_ROW = (-math.inf, math.inf)


def short_sides(boxes: np.ndarray) -> np.ndarray:
    return np.asarray(np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))


def merge_by_size(
    base: Candidates,
    zoomed: Candidates,
    max_side: float,
    rows: tuple[float, float] = EVERY_ROW,
    iou: float = 0.5,
) -> Candidates:
    """Boxes from `base`, and from `zoomed` the small ones (short side under `max_side`) within `rows`
    (first and last image row the zoomed pass answers for), where they replace the base's; best first.
    A small box that overlaps a kept box of its class by more than `iou` is the same object, seen at
    the boundary by both passes: the first pass's box stays."""
    base_small = (short_sides(base[0]) < max_side) & _within(base[0], rows)
    zoomed_small = (short_sides(zoomed[0]) < max_side) & _within(zoomed[0], rows)
    kept_boxes, kept_scores, kept_classes = (a[~base_small] for a in base)
    boxes, scores, class_ids = (a[zoomed_small] for a in zoomed)
    if len(boxes) and len(kept_boxes):
        same = (decoders.iou_matrix(boxes, kept_boxes) > iou) & (class_ids[:, None] == kept_classes[None, :])
        fresh = ~same.any(axis=1)
        boxes, scores, class_ids = boxes[fresh], scores[fresh], class_ids[fresh]
    merged_scores = np.concatenate([kept_scores, scores])
    order = np.argsort(-merged_scores, kind="stable")
    return (
        np.concatenate([kept_boxes, boxes])[order],
        merged_scores[order],
        np.concatenate([kept_classes, class_ids])[order],
    )


def _within(boxes: np.ndarray, rows: tuple[float, float]) -> np.ndarray:
    return np.asarray((boxes[:, 1] >= rows[0]) & (boxes[:, 3] <= rows[1]))
