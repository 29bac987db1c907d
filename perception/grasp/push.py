"""Pushes for objects that no grasp fits: where to put the closed fingers down, and which way to push.

A library on arrays alone, in the supporting plane's frame (metres, as the grasp planner measures an
object): the object's footprint points and the points of its neighbours, with their heights. The
grasp planner calls `plan_pushes` for each object it found no feasible grasp for, and turns the result
into world points (perception.grasp.planner).

A push is a straight line low over the table: the closed fingers come down beside the object, move
through it along the line and shove it `distance` further. Two kinds, after the linear push policies of
Danielczuk et al. (CASE 2018) and VPG's pushes (Zeng et al. 2018):
- "separate": through the object's middle, away from the neighbours it touches and into free room, so
  its sides come apart from theirs and the fingers find space beside it;
- "turn": off the middle of a long object or of a patch wider than the opening (touching objects
  that depth could not cut apart), which turns it, or shears the patch apart along its length.
Every line is tried at `directions` headings round the full turn. A push is feasible when the fingers
land on free table (no neighbour under them, nor between them and the object) and the object's new
place stays inside the workspace; among those, the quality prefers free room ahead of the object
(it should not shove a neighbour along), pushing away from the neighbours it touches, and the middle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PUSH_DISTANCE = 0.08  # metres the object is shoved: about one object's width, out of a touching group
PUSH_GAP = 0.01  # metres between the object and where the fingers come down
LANDING = 0.03  # metres of free room wanted beyond the object's new place: room for a finger
TOUCHING = 0.02  # metres: neighbour points this close to the object's outline are touching it
TURN_OFFSET = 0.3  # turning pushes pass this share of the half-length off the middle, each side
LOWEST, HIGHEST = 0.01, 0.02  # metres above the table the fingertips push at (half the object's height
# between these: low enough to move it rather than tip it, high enough to clear the table)


@dataclass(frozen=True)
class PushCandidate:
    """One push in the plane's frame: the fingers go down at `start` and move straight to `end`, at
    `height` above the plane."""

    start: np.ndarray  # 2
    end: np.ndarray  # 2
    height: float
    quality: float  # 0-1
    kind: str  # "separate" or "turn"


def plan_pushes(
    flat: np.ndarray,
    top: float,
    near_flat: np.ndarray,
    near_heights: np.ndarray,
    finger_length: float,
    finger_width: float,
    max_opening: float,
    inside: Callable[[np.ndarray], bool] = lambda point: True,
    directions: int = 16,
    most: int = 2,
) -> list[PushCandidate]:
    """The best feasible pushes of one object (best first, at most `most`), or none.

    flat: the object's footprint points (N x 2); top: its height above the plane; near_flat and
    near_heights: its neighbours' points and heights; finger_length along the push and finger_width
    across it: the closed fingers' footprint; inside: whether a plane point may hold the object's middle
    after the push (the workspace). Every heading and line is checked at once, as arrays."""
    if len(flat) < 3:
        return []
    height = min(max(top / 2, LOWEST), HIGHEST)
    lowest, highest = flat.min(axis=0), flat.max(axis=0)
    centre = (lowest + highest) / 2
    headings = 2 * math.pi * np.arange(directions) / directions
    d = np.stack([np.cos(headings), np.sin(headings)], axis=1)  # headings x 2
    n = np.stack([-d[:, 1], d[:, 0]], axis=1)
    along, across = (flat - centre) @ d.T, (flat - centre) @ n.T  # points x headings
    # Lines: through the middle, and for a long object or a patch wider than the opening, one each
    # side of it (a turning push). Lines x 3 per heading; those not wanted are masked out.
    low, high = across.min(axis=0), across.max(axis=0)
    mid, half = (low + high) / 2, (high - low) / 2
    turns = (high - low > max_opening) | (high - low > 1.5 * (along.max(axis=0) - along.min(axis=0)))
    offsets = np.stack([mid, mid - TURN_OFFSET * half, mid + TURN_OFFSET * half], axis=1)  # headings x 3
    wanted = np.stack([np.ones_like(turns), turns, turns], axis=1)
    swath = np.abs(across[:, :, None] - offsets[None]) <= finger_width / 2  # points x headings x 3
    contact = np.where(swath, along[:, :, None], np.inf).min(axis=0)  # the object's first point met
    wanted &= np.isfinite(contact)
    contact = np.where(wanted, contact, 0.0)  # lines that miss the object: masked out, kept finite
    wanted &= np.array([inside(centre + PUSH_DISTANCE * row) for row in d])[:, None]
    if not wanted.any():
        return []
    starts = (
        centre
        + offsets[..., None] * n[:, None, :]
        + (contact - PUSH_GAP - finger_length / 2)[..., None] * d[:, None, :]
    )  # headings x 3 x 2
    # Neighbours the lowered fingers would meet, among those near enough to matter (the fingers come
    # down within PUSH_GAP plus their length of the object's outline).
    reach = PUSH_GAP + finger_length + finger_width
    close = np.all((near_flat >= lowest - reach) & (near_flat <= highest + reach), axis=1)
    blocking = near_flat[close & (near_heights > height - 0.005)]
    if len(blocking):
        # Each obstacle's place along and across each line from its start: (b - s) . d = b . d - s . d.
        a = (blocking @ d.T)[:, :, None] - np.einsum("hkx,hx->hk", starts, d)[
            None
        ]  # obstacles x headings x 3
        c = (blocking @ n.T)[:, :, None] - np.einsum("hkx,hx->hk", starts, n)[None]
        on_way = (
            (a >= -finger_length / 2) & (a <= finger_length / 2 + PUSH_GAP) & (np.abs(c) <= finger_width / 2)
        )
        wanted &= ~on_way.any(axis=0)
    free = np.minimum(
        _room_ahead(near_flat, centre, d, n, along.max(axis=0), low, high) / (PUSH_DISTANCE + LANDING), 1.0
    )
    # Away from the neighbours it touches (points within TOUCHING of its outline, on a sample of it).
    nearby = near_flat[np.all((near_flat >= lowest - TOUCHING) & (near_flat <= highest + TOUCHING), axis=1)]
    sample = flat[:: max(1, len(flat) // 100)]
    squared = ((nearby[:, None, :] - sample[None]) ** 2).sum(axis=2) if len(nearby) else np.zeros((0, 1))
    touching = nearby[squared.min(axis=1) < TOUCHING**2]
    away = centre - touching.mean(axis=0) if len(touching) else np.zeros(2)
    norm = float(np.linalg.norm(away))
    apart = np.full(directions, 0.5) if norm == 0 else (1 + d @ away / norm) / 2
    quality = (0.5 * free + 0.35 * apart)[:, None] + np.array([0.15, 0.0, 0.0])[None]
    quality = np.where(wanted, quality, -1.0)
    best = np.argsort(-quality, axis=None, kind="stable")[:most]
    found = []
    for flat_index in best.tolist():
        h, k = divmod(flat_index, 3)
        if quality[h, k] < 0:
            break
        found.append(
            PushCandidate(
                starts[h, k],
                starts[h, k] + (PUSH_GAP + PUSH_DISTANCE) * d[h],
                height,
                float(quality[h, k]),
                "separate" if k == 0 else "turn",
            )
        )
    return found


def _room_ahead(
    obstacles: np.ndarray,
    centre: np.ndarray,
    d: np.ndarray,
    n: np.ndarray,
    front: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
) -> np.ndarray:
    """Per heading (rows of d and n): the free distance ahead of the object's front edge in the corridor
    it sweeps (its width across the push, and a centimetre more each side); inf where nothing stands."""
    if len(obstacles) == 0:
        return np.full(len(d), np.inf)
    relative = obstacles - centre
    a, c = relative @ d.T, relative @ n.T  # obstacles x headings
    ahead = (a > front) & (c >= left - 0.01) & (c <= right + 0.01)
    room: np.ndarray = np.where(ahead, a - front, np.inf).min(axis=0)
    return room
