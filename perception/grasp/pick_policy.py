"""The pick policy: which grasp to try next and when a pick-and-place loop stops, on arrays alone.

The pick-loop node (perception.nodes.pick_loop) and `percept bench grasp` both run this one policy, so
the benchmark measures the loop the demo runs. Each fresh frame's grasps (best first) go to `choose`;
each attempt's outcome goes to `record`. The loop stops when:
- `clear_frames` frames in a row show nothing to pick (the table is clear);
- `clear_frames` frames in a row offer only grasps that cannot be tried: objects without a feasible grasp,
  or grasps that repeat one that failed (a loop never tries a failed grasp again);
- `max_failures` attempts in a row failed, or `max_attempts` were made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CLEAR = "the table is clear"


@dataclass(frozen=True)
class PickLimits:
    max_attempts: int = 30  # give up after this many attempts: two per object of the largest scenes (15)
    max_failures: int = 3  # give up after this many failures in a row
    clear_frames: int = 3  # frames in a row with nothing to pick (or nothing pickable) before stopping

    def __post_init__(self) -> None:
        for name in ("max_attempts", "max_failures", "clear_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"pick limit {name}: expected a whole number of at least 1, found {value!r}")


class PickPolicy:
    """The state of one pick-and-place loop: what was tried, what failed, and whether it is over."""

    def __init__(self, limits: PickLimits | None = None) -> None:
        self.limits = limits or PickLimits()
        self.attempts = self.successes = self.failures_in_row = 0
        self.failed: list[tuple[np.ndarray, np.ndarray]] = []  # position and closing direction
        self.ended = ""  # why the loop stopped; empty while it runs
        self._empty_frames = self._stuck_frames = 0

    @property
    def done(self) -> bool:
        return bool(self.ended)

    @property
    def cleared(self) -> bool:
        return self.ended == CLEAR

    def choose(self, positions: np.ndarray, closings: np.ndarray, rejected_reasons: list[str]) -> int | None:
        """The index of the grasp to try on this frame (rows best first), or None: nothing to try on this
        frame (look again at the next one), or the loop just ended (see `ended`)."""
        if self.done:
            return None
        if len(positions) == 0:
            if not rejected_reasons:
                self._empty_frames += 1
                if self._empty_frames >= self.limits.clear_frames:
                    self.ended = CLEAR
            else:
                self._stuck(f"{len(rejected_reasons)} object(s) left without a grasp: {rejected_reasons[0]}")
            return None
        self._empty_frames = 0
        choice = first_untried(positions, closings, self.failed)
        if choice is None:  # every grasp on offer failed before: like a frame without a feasible one
            self._stuck(f"{len(positions)} grasp(s) left, each failed before")
            return None
        self._stuck_frames = 0
        return choice

    def record(self, position: np.ndarray, closing: np.ndarray, success: bool) -> None:
        """The outcome of one attempt at the grasp `choose` gave."""
        self.attempts += 1
        self.successes += success
        self.failures_in_row = 0 if success else self.failures_in_row + 1
        if not success:
            self.failed.append((np.array(position, np.float64), np.array(closing, np.float64)))
        if self.failures_in_row >= self.limits.max_failures:
            self.ended = f"{self.failures_in_row} failures in a row"
        elif self.attempts >= self.limits.max_attempts:
            self.ended = f"{self.attempts} attempts, the most allowed"

    def _stuck(self, why: str) -> None:
        self._stuck_frames += 1
        if self._stuck_frames >= self.limits.clear_frames:
            self.ended = why


def first_untried(
    positions: np.ndarray,
    closings: np.ndarray,
    failed: list[tuple[np.ndarray, np.ndarray]],
    radius: float = 0.015,
    angle_deg: float = 20.0,
) -> int | None:
    """Index of the first grasp (rows of positions and closing directions, best first) that is not a
    repeat of a failed one: within `radius` metres and `angle_deg` of its closing direction (either
    way round, the jaws are symmetric). None when every grasp repeats a failure."""
    cos_limit = math.cos(math.radians(angle_deg))
    for i, (position, closing) in enumerate(zip(positions, closings, strict=True)):
        if not any(
            np.linalg.norm(position - p) < radius and abs(float(closing @ c)) > cos_limit for p, c in failed
        ):
            return i
    return None
