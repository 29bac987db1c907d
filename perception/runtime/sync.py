"""Pairing messages of different topics by header stamp (in the spirit of ROS's message_filters
ApproximateTime policy, for one driving topic): the other topics' recent messages wait in small
buffers, and a driving message takes from each the one nearest its stamp, within a tolerance."""

from __future__ import annotations

from collections import deque
from typing import Any, Generic, TypeVar

M = TypeVar("M")


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


def _stamp(msg: Any) -> int:
    return int(msg.header.stamp)
