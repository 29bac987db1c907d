"""Per-endpoint traffic counters, reported in `NodeStats` messages; and the throttle that keeps a
repeating error to a line a second in the log while its counter counts every one."""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from perception.msgs import NodeStats, TopicStats


class Throttle:
    """`ready()` is true at most once per `period_s` (thread-safe: HTTP handlers share one)."""

    def __init__(self, period_s: float = 1.0) -> None:
        self.period_s = period_s
        self._last = -math.inf
        self._lock = threading.Lock()

    def ready(self) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.period_s:
                return False
            self._last = now
            return True


# A node publishes its NodeStats this often, from a timer on its own thread; this long without them, it
# is in a callback that has not returned (the launch status table says so, `node info` gives up).
STATS_PERIOD_S = 1.0
SILENT_AFTER_S = 5 * STATS_PERIOD_S


class EndpointStats:
    def __init__(self, topic: str, type_name: str, direction: str) -> None:
        self.topic = topic
        self.type_name = type_name
        self.direction = direction
        self.count = 0
        self.dropped_queue = 0
        self.dropped_gap = 0
        self.malformed = 0
        self.callback_errors = 0
        self._window_count = 0
        self._window_bytes = 0
        self._window_start = time.monotonic()
        self._latencies_ns: deque[int] = deque(maxlen=256)

    def record_arrival(self, nbytes: int) -> None:
        """A message sent (publishers) or received (subscriptions)."""
        self.count += 1
        self._window_count += 1
        self._window_bytes += nbytes

    def record_latency(self, latency_ns: int | None) -> None:
        """Stamp-to-callback delay of a message handed to a callback."""
        if latency_ns is not None:
            self._latencies_ns.append(latency_ns)

    def snapshot(self) -> TopicStats:
        """Rates since the previous snapshot; totals since the start."""
        now = time.monotonic()
        elapsed = max(now - self._window_start, 1e-9)
        latencies = sorted(self._latencies_ns)
        p50 = latencies[len(latencies) // 2] / 1e6 if latencies else -1.0
        stats = TopicStats(
            topic=self.topic,
            type_name=self.type_name,
            direction=self.direction,
            count=as_int64(self.count),
            msgs_per_s=self._window_count / elapsed,
            bytes_per_s=self._window_bytes / elapsed,
            latency_p50_ms=p50,
            dropped_queue=as_int64(self.dropped_queue),
            dropped_gap=as_int64(self.dropped_gap),
            malformed=as_int64(self.malformed),
            callback_errors=as_int64(self.callback_errors),
        )
        self._window_count = 0
        self._window_bytes = 0
        self._window_start = now
        self._latencies_ns.clear()
        return stats


def as_int64(count: int) -> int:
    """A counter as every reader of the stats can hold it: encoding a report must never fail."""
    return min(count, 2**63 - 1)


def problems(stats: NodeStats) -> str:
    """A node's totals that mean something is wrong, in words ("" when none): what the launcher's status
    table shows after its `!` and `percept node info` under the node's traffic. A queue dropping old
    messages by design is not among them."""
    totals = {
        "lost in transit": sum(t.dropped_gap for t in stats.topics),
        "malformed": sum(t.malformed for t in stats.topics),
        "callback errors": sum(t.callback_errors for t in stats.topics),
        "timer errors": stats.timer_errors,
        "failed service requests": stats.service_errors,
        "refused connections": stats.refused_connections,
    }
    return ", ".join(f"{count} {what}" for what, count in totals.items() if count)


def rate_text(topic: TopicStats) -> str:
    """An endpoint's rate, and for a subscription whose queue has dropped messages, how many: not a
    fault (a latest-only detector skips frames by design), but a node that keeps up with only some of
    what arrives must not look like one that handles it all. A publisher's count is of deliveries a
    subscriber on this host missed (its pipe full: it stopped reading, or every shared-memory slot was
    held), which no queue of the publisher's dropped."""
    if not topic.dropped_queue:
        return f"{topic.msgs_per_s:.1f}"
    if topic.direction == "pub":
        return f"{topic.msgs_per_s:.1f} ({topic.dropped_queue} missed by a subscriber on this host)"
    return f"{topic.msgs_per_s:.1f} ({topic.dropped_queue} dropped by its queue)"
