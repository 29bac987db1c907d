"""Subscribes to an image topic (latest-only) and logs its rate, latency and drops every few seconds."""

from __future__ import annotations

import time

from perception import LATEST_ONLY, Node, run
from perception.msgs import Image


class RateMonitor(Node):
    """Log what arrives on `image`: frames/s, stamp-to-callback latency, drops."""

    def __init__(self) -> None:
        super().__init__("rate_monitor")
        period = self.declare_parameter(
            "report_period", 2.0, "seconds between log lines", range=(0.05, 3600.0)
        )
        self.subscription = self.create_subscription(Image, "image", self.on_image, LATEST_ONLY)
        self.frames = 0
        self.latencies_ms: list[float] = []
        self.last_shape: tuple[int, ...] = ()
        self.window_start = time.monotonic()
        self.create_timer(period, self.report)

    def on_image(self, msg: Image) -> None:
        self.frames += 1
        self.latencies_ms.append((time.time_ns() - msg.header.stamp) / 1e6)
        self.last_shape = msg.data.shape

    def report(self) -> None:
        elapsed = time.monotonic() - self.window_start
        stats = self.subscription.stats
        latencies = sorted(self.latencies_ms)
        p50 = latencies[len(latencies) // 2] if latencies else float("nan")
        self.log.info(
            "%s %s: %.1f frames/s, latency p50 %.2f ms, dropped %d (queue) + %d (in transit)",
            self.subscription.topic,
            "x".join(map(str, self.last_shape)) or "-",
            self.frames / elapsed,
            p50,
            stats.dropped_queue,
            stats.dropped_gap,
        )
        self.frames = 0
        self.latencies_ms = []
        self.window_start = time.monotonic()


if __name__ == "__main__":
    run(RateMonitor)
