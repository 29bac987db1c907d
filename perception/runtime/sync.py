"""Pairing messages of different topics by header stamp (in the spirit of ROS's message_filters
ApproximateTime policy, for one driving topic): the other topics' recent messages wait in small
buffers, and a driving message takes from each the one nearest its stamp, within a tolerance.

Each topic has its own socket, so a driving message can overtake its partners: a detector's boxes can
reach the tracker before the camera info the camera sent first. A `Synchronizer` holds such a driving
message until every partner topic has answered for its stamp, or for at most `wait_s`."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any, Generic, TypeVar

M = TypeVar("M")
D = TypeVar("D")


class StampBuffer(Generic[M]):
    """The newest `depth` messages of one topic, looked up by nearest header stamp."""

    def __init__(self, depth: int = 10, tolerance_s: float = 0.02) -> None:
        if depth < 1:
            raise ValueError(f"depth: expected at least 1, found {depth}")
        if tolerance_s < 0:
            raise ValueError(f"tolerance_s: expected 0 or more, found {tolerance_s}")
        self.messages: deque[M] = deque(maxlen=depth)
        self.tolerance_ns = int(tolerance_s * 1e9)
        self.misses = 0  # lookups that found nothing within the tolerance

    def add(self, msg: M) -> None:
        self.messages.append(msg)

    def answers_for(self, stamp_ns: int) -> bool:
        """Whether nothing still to come could be nearer `stamp_ns` than what is here. A topic's messages
        arrive in stamp order, so once one stamped at or after `stamp_ns` is here, later ones are farther;
        and one stamped less than half the topic's period before it is nearer than the next can be (an
        RGB-D camera whose depth is stamped a few ms before its colour needs no wait for the next depth)."""
        if not self.messages:
            return False
        early_ns = stamp_ns - _stamp(self.messages[-1])
        return early_ns <= 0 or 2 * early_ns < self.period_ns()

    def period_ns(self) -> int:
        """The shortest gap between consecutive stamps here (0 when unknown): the soonest the next
        message can be stamped after the newest. The shortest, so that jitter makes a partner waited
        for rather than passed over."""
        stamps = [_stamp(m) for m in self.messages]
        gaps = [b - a for a, b in pairwise(stamps) if b > a]
        return min(gaps, default=0)

    def nearest(self, stamp_ns: int) -> M | None:
        """The buffered message whose stamp is nearest `stamp_ns`, if within the tolerance."""
        best: M | None = None
        best_gap = self.tolerance_ns + 1
        for msg in self.messages:
            gap = abs(_stamp(msg) - stamp_ns)
            if gap < best_gap:
                best, best_gap = msg, gap
        if best is None:
            self.misses += 1
        return best

    def describe(self, stamp_ns: int) -> str:
        """Why nothing matched: what the buffer holds, for the reason a consumer sees."""
        if not self.messages:
            return "none received yet"
        gaps = [(_stamp(m) - stamp_ns) / 1e6 for m in self.messages]
        nearest = min(gaps, key=abs)
        return f"nearest is {nearest:+.0f} ms away (tolerance {self.tolerance_ns / 1e6:.0f} ms)"


class Synchronizer(Generic[D]):
    """Hands each driving message to `handle`, in the order they came, once every partner buffer answers
    for its stamp (`StampBuffer.answers_for`), or once it has waited `wait_s` (and up to two periods of
    the timer that calls `expire()`).

    A partner that has sent nothing yet is not waited for: the topic may have no publisher at all. A
    partner a frame went on without (its wait ran out, more than `depth` frames were held, or the node
    stopped) is not waited for again until it shows it can answer in time (`_check_caught_up`). So a
    stopped camera info costs one wait, not one per frame, and one stamped on a clock of its own (always
    too far behind to answer in time) one wait in all, not one each time its stamps reach the frame it
    missed. Feed partners through `partner()`, call `expire()` from a timer so that a held message's time
    runs out, and `flush()` when the node stops."""

    def __init__(
        self,
        partners: Sequence[StampBuffer[Any]],
        handle: Callable[[D], None],
        wait_s: float,
        depth: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= wait_s < float("inf"):
            raise ValueError(f"wait_s: expected 0 or more seconds, found {wait_s}")
        if depth < 1:
            raise ValueError(f"depth: expected at least 1, found {depth}")
        self.partners, self.handle, self.clock = partners, handle, clock
        self.wait_s, self.depth = wait_s, depth
        self.held: deque[tuple[float, D]] = deque()  # (deadline, message), oldest first
        # Partner index -> (the stamp of a frame it did not answer for in time, when that frame came).
        self.behind: dict[int, tuple[int, float]] = {}
        self.latest: tuple[int, float] | None = None  # the newest driving message's stamp and arrival
        self.waited_out = 0  # driving messages handed on without every partner's answer
        self.last_tick = self.overdue_before = -float("inf")

    def partner(self, buffer: StampBuffer[M]) -> Callable[[M], None]:
        """The subscription callback of one partner topic: buffer its message, then hand on what it freed."""
        index = next((i for i, p in enumerate(self.partners) if p is buffer), None)
        if index is None:
            raise ValueError("partner(): expected one of the buffers this Synchronizer was made with")

        def add(msg: M) -> None:
            buffer.add(msg)
            if index in self.behind:
                self._check_caught_up(index)
            self._release()

        return add

    def drive(self, msg: D) -> None:
        """The subscription callback of the driving topic."""
        now, stamp = self.clock(), _stamp(msg)
        if self.latest is not None and stamp < self.latest[0]:
            self.behind.clear()  # time went back (a looped replay): every partner is waited for again
        self.latest = (stamp, now)
        self.held.append((now + self.wait_s, msg))
        self._release()

    def expire(self) -> None:
        """The timer's callback: hand on the held messages that were already overdue at its previous call.
        A node reads the messages waiting in its sockets between two timer calls, so a partner that came
        while the node was busy (a stall longer than the wait) is read before its frame is given up on."""
        self.overdue_before, self.last_tick = self.last_tick, self.clock()
        self._release()

    def flush(self) -> None:
        """Hand on every held message now (the node is stopping): none is lost unseen."""
        overdue_before, self.overdue_before = self.overdue_before, float("inf")
        try:
            self._release()
        finally:
            self.overdue_before = overdue_before

    def _check_caught_up(self, index: int) -> None:
        """Wait for partner `index` again once it answers in time: for the frame it missed within `wait_s`
        of that frame's arrival, or for the newest frame read so far (it is not behind the frames, only
        read after them by a busy node). If it answered late, it is tried on the newest frame instead."""
        stamp, came = self.behind[index]
        if not self.partners[index].answers_for(stamp):
            return
        assert self.latest is not None  # a partner is behind only once a driving message has come
        if self.clock() - came <= self.wait_s or self.partners[index].answers_for(self.latest[0]):
            del self.behind[index]
        elif self.latest[0] > stamp:
            self.behind[index] = self.latest

    def _release(self) -> None:
        """Hand on, oldest first, every held message that is answered for, overdue, or one too many. If
        `handle` raises, the messages after it still go on; then the error is raised for the caller (the
        subscription or timer that called) to count and log: several at once, as one ExceptionGroup."""
        errors: list[Exception] = []
        while self.held:
            deadline, msg = self.held[0]
            stamp = _stamp(msg)
            waiting = [i for i in self._awaited() if not self.partners[i].answers_for(stamp)]
            if waiting and self.wait_s and deadline > self.overdue_before and len(self.held) <= self.depth:
                break
            if waiting:
                self.waited_out += 1
                for i in waiting:
                    self.behind[i] = (stamp, deadline - self.wait_s)
            self.held.popleft()
            try:
                self.handle(msg)
            except Exception as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup(f"{len(errors)} held messages' handler raised", errors)

    def _awaited(self) -> list[int]:
        """The partners a held message waits for: those that have sent something and are not behind."""
        return [i for i, buffer in enumerate(self.partners) if buffer.messages and i not in self.behind]


def _stamp(msg: Any) -> int:
    return int(msg.header.stamp)
