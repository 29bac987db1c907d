"""A timer: a callback the node's executor runs every `period_s`, scheduled from its due time."""

from __future__ import annotations

import time
from collections.abc import Callable


class Timer:
    def __init__(self, period_s: float, callback: Callable[[], None]) -> None:
        if not 0 < period_s < float("inf"):  # NaN fails the comparison too
            raise ValueError(f"timer period: expected a positive number of seconds, found {period_s}")
        self.period_s = period_s
        self.callback = callback
        self.next_due = time.monotonic() + period_s
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
