"""Subscribes to detections and logs, every few seconds, their rate, their latency from the image's
stamp, and what the last frame held ("2 mug, 1 duck")."""

from __future__ import annotations

import time
from collections import Counter

from perception import Node, run
from perception.msgs import Detections


class DetectionMonitor(Node):
    """Log what arrives on `detections`: messages/s, stamp-to-arrival latency, the newest frame's objects."""

    def __init__(self) -> None:
        super().__init__("detection_monitor")
        period = self.declare_parameter(
            "report_period", 2.0, "seconds between log lines", range=(0.05, 3600.0)
        )
        self.subscription = self.create_subscription(Detections, "detections", self.on_detections)
        self.messages = 0
        self.latencies_ms: list[float] = []
        self.last: Counter[str] = Counter()
        self.window_start = time.monotonic()
        self.create_timer(period, self.report)

    def on_detections(self, msg: Detections) -> None:
        self.messages += 1
        self.latencies_ms.append((time.time_ns() - msg.header.stamp) / 1e6)
        self.last = Counter(msg.class_names)

    def report(self) -> None:
        elapsed = time.monotonic() - self.window_start
        latencies = sorted(self.latencies_ms)
        p50 = latencies[len(latencies) // 2] if latencies else float("nan")
        objects = ", ".join(f"{n} {name}" for name, n in sorted(self.last.items())) or "nothing"
        self.log.info(
            "%s: %.1f/s, latency from image stamp p50 %.1f ms; last frame: %s",
            self.subscription.topic,
            self.messages / elapsed,
            p50,
            objects,
        )
        self.messages = 0
        self.latencies_ms = []
        self.window_start = time.monotonic()


if __name__ == "__main__":
    run(DetectionMonitor)
