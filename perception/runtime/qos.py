"""Subscription quality of service: how many unprocessed messages a subscription keeps; and how long a
player of recorded messages waits for its subscribers, since a publisher drops what it sends before one
has joined."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QoS:
    """Keep the newest `depth` messages not yet handed to the callback; older ones are dropped and counted.

    `depth=1` is latest-only: the callback always gets the newest message, never a backlog.
    """

    depth: int = 10

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"QoS depth must be at least 1, found {self.depth}")

    @property
    def latest_only(self) -> bool:
        return self.depth == 1


KEEP_LAST = QoS(depth=10)
LATEST_ONLY = QoS(depth=1)

# How long a player of recorded frames (`percept play`, a camera playing a recording or a video file)
# gives its subscribers to connect before the first frame, by default; the wait ends as soon as they
# have. A graph launched at once needs its detector up first: on 2 loaded cores its process, imports
# and model take 2-4 s.
JOIN_WAIT_S = 5.0
