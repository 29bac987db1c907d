"""The pick policy: which grasp or push to try next and when a pick-and-place loop stops, on arrays alone.

The pick-loop node (perception.nodes.pick_loop) and `percept bench grasp` both run this one policy, so
the benchmark measures the loop the demo runs. Each fresh frame's grasps and pushes (best first) go to
`choose`; each grasp's outcome goes to `record`, each push to `record_push`. A grasp is tried whenever
one is on offer that did not fail before; only when none is does the loop push (pushes are planned for
the objects no grasp fits), at most `max_pushes` times in a row before a grasp succeeds, and never the
same push twice between two successful grasps. After a push the scene has moved, so grasps that failed
before may be tried again. The loop stops when:
- `clear_frames` frames in a row show nothing to pick (the table is clear);
- `clear_frames` frames in a row offer only grasps that cannot be tried and no push that may be made:
  objects without a feasible grasp, or grasps that repeat one that failed;
- `max_failures` grasps in a row failed, or `max_actions` grasps and pushes were made.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

CLEAR = "the table is clear"
# Two grasps (or pushes) this close, and their closing directions (or headings) this alike, are one: a
# failed one is not tried again, and the planner offers distinct ones so a failure leaves others.
REPEAT_RADIUS = 0.015  # metres
REPEAT_ANGLE_DEG = 20.0
ELSEWHERE = 0.04  # metres: a grasp this far from a failed one is on another object (or another end)
GRASP, PUSH = "grasp", "push"


@dataclass(frozen=True)
class PickLimits:
    max_actions: int = 30  # give up after this many grasps and pushes: two per object of the largest
    # scenes (15)
    max_failures: int = 3  # give up after this many failed grasps in a row
    clear_frames: int = 3  # frames in a row with nothing to pick (or nothing pickable) before stopping
    max_pushes: int = 3  # pushes in a row without a successful grasp between them

    def __post_init__(self) -> None:
        for name in ("max_actions", "max_failures", "clear_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"pick limit {name}: expected a whole number of at least 1, found {value!r}")
        if not isinstance(self.max_pushes, int) or self.max_pushes < 0:
            raise ValueError(
                f"pick limit max_pushes: expected a whole number of at least 0, found {self.max_pushes!r}"
            )


@dataclass(frozen=True)
class Action:
    """What to do on this frame: a grasp or a push (`kind`), by its row among those on offer."""

    kind: str
    index: int


class FailedGrasps:
    """The grasps that failed since the scene was last moved on purpose (by a push): a loop does not try
    them again, and the grasp planner, told of them, does not offer them (perception.grasp.planner). The
    pick policy keeps one; a planner node keeps its own from the loop's published attempts, by the same
    rule."""

    def __init__(self) -> None:
        self.items: list[tuple[np.ndarray, np.ndarray]] = []  # position and closing direction

    def record(self, action: str, position: np.ndarray, closing: np.ndarray, success: bool) -> None:
        """One action of the loop: a push forgets them all (the scene moved), a failed grasp is added."""
        if action == PUSH:
            self.items = []
        elif not success:
            self.items.append((np.array(position, np.float64), np.array(closing, np.float64)))

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class PickPolicy:
    """The state of one pick-and-place loop: what was tried, what failed, and whether it is over."""

    def __init__(self, limits: PickLimits | None = None) -> None:
        self.limits = limits or PickLimits()
        self.attempts = self.successes = self.failures_in_row = 0  # grasps
        self.pushes = self.pushes_in_row = 0
        self.failed = FailedGrasps()
        self.pushed: list[tuple[np.ndarray, np.ndarray]] = []  # since the last success: start and end
        self.ended = ""  # why the loop stopped; empty while it runs
        self._empty_frames = self._stuck_frames = 0

    @property
    def done(self) -> bool:
        return bool(self.ended)

    @property
    def cleared(self) -> bool:
        return self.ended == CLEAR

    @property
    def actions(self) -> int:
        return self.attempts + self.pushes

    def choose(
        self,
        positions: np.ndarray,
        closings: np.ndarray,
        rejected_reasons: list[str],
        push_starts: np.ndarray | None = None,
        push_ends: np.ndarray | None = None,
    ) -> Action | None:
        """The grasp or push to try on this frame (rows best first), or None: nothing to try on this
        frame (look again at the next one), or the loop just ended (see `ended`)."""
        if self.done:
            return None
        if len(positions) == 0 and not rejected_reasons:
            self._empty_frames += 1
            if self._empty_frames >= self.limits.clear_frames:
                self.ended = CLEAR
            return None
        self._empty_frames = 0
        positions, closings = np.asarray(positions).reshape(-1, 3), np.asarray(closings).reshape(-1, 3)
        fresh = ~repeats(positions, closings, self.failed)
        if fresh.any():
            # After a failure, another object first: the one that failed may be out of reach or badly
            # seen, and failing on it again and again would end the loop with the others still there.
            elsewhere = fresh.copy()
            for failed_at, _ in self.failed:
                elsewhere &= np.linalg.norm(positions - failed_at, axis=1) >= ELSEWHERE
            self._stuck_frames = 0
            return Action(GRASP, int(np.flatnonzero(elsewhere if elsewhere.any() else fresh)[0]))
        # No grasp to try: every object left has none that fits, or each one on offer failed before.
        push = None
        if push_starts is not None and push_ends is not None and self.pushes_in_row < self.limits.max_pushes:
            push = first_untried(push_starts, _directions(push_starts, push_ends), self.pushed)
        if push is not None:
            self._stuck_frames = 0
            return Action(PUSH, push)
        if len(positions) == 0:
            why = f"{len(rejected_reasons)} object(s) left without a grasp: {rejected_reasons[0]}"
        else:
            why = f"{len(positions)} grasp(s) left, each failed before"
        if self.pushes_in_row:
            why += f" ({self.pushes_in_row} push(es) since the last grasp)"
        self._stuck(why)
        return None

    def record(self, position: np.ndarray, closing: np.ndarray, success: bool) -> None:
        """The outcome of one attempt at the grasp `choose` gave."""
        self.attempts += 1
        self.successes += success
        self.failures_in_row = 0 if success else self.failures_in_row + 1
        if success:
            self.pushes_in_row, self.pushed = 0, []
        self.failed.record(GRASP, position, closing, success)
        if self.failures_in_row >= self.limits.max_failures:
            self.ended = f"{self.failures_in_row} failures in a row"
        else:
            self._count_actions()

    def record_push(self, start: np.ndarray, end: np.ndarray) -> None:
        """A push `choose` gave was made. The scene moved: grasps that failed before may work now."""
        self.pushes += 1
        self.pushes_in_row += 1
        start = np.array(start, np.float64)
        heading = _directions(start[None], np.array(end, np.float64)[None])[0]
        self.pushed.append((start, heading))
        self.failed.record(PUSH, start, heading, True)
        self._count_actions()

    def _count_actions(self) -> None:
        if self.actions >= self.limits.max_actions:
            self.ended = (
                f"{self.actions} actions ({self.attempts} grasps, {self.pushes} pushes), the most allowed"
            )

    def _stuck(self, why: str) -> None:
        self._stuck_frames += 1
        if self._stuck_frames >= self.limits.clear_frames:
            self.ended = why


def _directions(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Unit directions from each start to its end (rows)."""
    lines = np.asarray(ends, np.float64) - np.asarray(starts, np.float64)
    lengths: np.ndarray = np.linalg.norm(lines, axis=1, keepdims=True)
    directions: np.ndarray = lines / np.maximum(lengths, 1e-9)
    return directions


def repeats(
    positions: np.ndarray, closings: np.ndarray, failed: Iterable[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Per grasp (rows of positions and closing directions): whether it repeats a failed one, within
    REPEAT_RADIUS metres and REPEAT_ANGLE_DEG of its closing direction, either way round (the jaws are
    symmetric)."""
    cos_limit = math.cos(math.radians(REPEAT_ANGLE_DEG))
    repeated = np.zeros(len(positions), bool)
    for position, closing in failed:
        near = np.linalg.norm(positions - position, axis=1) < REPEAT_RADIUS
        repeated |= near & (np.abs(closings @ closing) > cos_limit)
    return repeated


def first_untried(
    positions: np.ndarray, closings: np.ndarray, failed: Iterable[tuple[np.ndarray, np.ndarray]]
) -> int | None:
    """Index of the first grasp (rows, best first) that does not repeat a failed one (see `repeats`), or
    None when every one does. Pushes are compared the same way, by start and direction."""
    fresh = np.flatnonzero(
        ~repeats(np.asarray(positions).reshape(-1, 3), np.asarray(closings).reshape(-1, 3), failed)
    )
    return int(fresh[0]) if len(fresh) else None
