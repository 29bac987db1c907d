"""`percept bench ros2`: what the ROS 2 bridge adds to a frame's trip, against a direct subscription.

This process plays a ROS 2 camera driver: it writes sensor_msgs/Image over DDS, stamped with the time
of writing. Two subscribers take the same frames at once, each its own process, and note the age of
each on arrival:
  direct   a ROS 2 node subscribed to the driver's topic over DDS (Cyclone, as the bridge is), the
           message read into a numpy image (rosbags' CDR, a view of the bytes)
  bridge   the bridge process (perception.nodes.ros2_bridge) maps the topic to ours, and one of our
           nodes subscribes to it over ZeroMQ
The difference of the medians is what the bridge adds. Frames a subscriber never saw are counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from perception.bench.common import private_registry, spawn_cli, stop

TOPIC = "/bench/image_raw"
OURS = "/bench/image"


@dataclass
class Row:
    frame: str
    rate: float
    path: str
    sent: int
    received: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    added_p50_ms: float | None  # bridge p50 minus direct p50


def _percentiles(ages_ms: list[float]) -> tuple[float, float, float]:
    if not ages_ms:
        return (float("nan"),) * 3  # type: ignore[return-value]
    p50, p90, p99 = np.percentile(ages_ms, [50, 90, 99])
    return round(float(p50), 3), round(float(p90), 3), round(float(p99), 3)


def direct_subscriber(domain_id: int, count: int, seconds: float) -> None:
    """A ROS 2 node's direct subscription (run as its own process): prints its ages as JSON."""
    from perception.ros2.convert import image_from_ros
    from perception.ros2.dds import Participant
    from perception.ros2.types import deserialize

    ages: dict[int, float] = {}

    def on_sample(cdr: bytes) -> None:
        image = image_from_ros(deserialize(cdr, "sensor_msgs/msg/Image"))
        ages[image.header.stamp] = (time.time_ns() - image.header.stamp) / 1e6

    participant = Participant(domain_id)
    participant.reader(TOPIC, "sensor_msgs/msg/Image", on_sample, "sensor_data")
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while len(ages) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    participant.close()
    print(json.dumps(ages), flush=True)


def run(frames: list[tuple[int, int]], rate: float, seconds: float) -> list[Row]:
    from perception import Node
    from perception.msgs import Image
    from perception.ros2.convert import header_to_ros
    from perception.ros2.dds import Participant
    from perception.ros2.types import serialize, store
    from perception.runtime.context import Context

    rows: list[Row] = []
    domain_id = 150 + os.getpid() % 80  # a domain of its own: 150-229
    registry = private_registry()
    env = {**os.environ, "PERCEPT_REGISTRY": registry.address, "PYTHONUNBUFFERED": "1"}
    topics = f"[{{ros: {TOPIC}, type: sensor_msgs/msg/Image, ours: {OURS}, qos: sensor_data}}]"
    bridge = spawn_cli(
        "run",
        "perception.nodes.ros2_bridge:Ros2Bridge",
        "-p",
        f"domain_id:={domain_id}",
        "-p",
        f"topics:={topics}",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    participant = Participant(domain_id)
    write = participant.writer(TOPIC, "sensor_msgs/msg/Image", "reliable")
    ImageMsg = store().types["sensor_msgs/msg/Image"]
    try:
        for width, height in frames:
            count = max(1, int(rate * seconds))
            direct = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "perception.bench.ros2",
                    "direct",
                    str(domain_id),
                    str(count),
                    str(seconds + 30),
                ],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert direct.stdout is not None
            if direct.stdout.readline().strip() != "ready":
                raise RuntimeError("bench ros2: the direct subscriber did not start")
            node = Node(
                f"_bench_ros2_{os.getpid()}",
                context=Context(registry=registry.address),
                stats_period_s=3600.0,
            )
            ages: dict[int, float] = {}

            def on_image(msg: Image, ages: dict[int, float] = ages) -> None:
                ages[msg.header.stamp] = (time.time_ns() - msg.header.stamp) / 1e6

            node.create_subscription(Image, OURS, on_image)
            pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8).reshape(-1)
            template = ImageMsg(
                header=header_to_ros(_header(0)),
                height=height,
                width=width,
                encoding="rgb8",
                is_bigendian=0,
                step=width * 3,
                data=pixels,
            )
            # Both subscribers must be matched before the timed frames: warm up until each saw one.
            warm_deadline = time.monotonic() + 60
            while not ages and time.monotonic() < warm_deadline:
                template.header = header_to_ros(_header(time.time_ns()))
                write(serialize(template, "sensor_msgs/msg/Image"))
                node.spin(0.2)
            time.sleep(1.0)
            node.spin(0.1)
            ages.clear()
            sent: list[int] = []
            start = time.monotonic()
            while len(sent) < count:
                due = start + len(sent) / rate
                while time.monotonic() < due:
                    node.spin_once(max(0.0, due - time.monotonic()))
                stamp = time.time_ns()
                template.header = header_to_ros(_header(stamp))
                write(serialize(template, "sensor_msgs/msg/Image"))
                sent.append(stamp)
            node.spin(1.0)
            node.destroy()
            out, _ = direct.communicate(timeout=seconds + 60)
            direct_ages = {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}
            label = f"{width}x{height}x3"
            timed = set(sent)
            rows_here = []
            for path, seen in (("direct (DDS)", direct_ages), ("bridge (DDS -> ZeroMQ)", ages)):
                values = [age for stamp, age in seen.items() if stamp in timed]
                p50, p90, p99 = _percentiles(values)
                rows_here.append(Row(label, rate, path, len(sent), len(values), p50, p90, p99, None))
            rows_here[1].added_p50_ms = round(rows_here[1].p50_ms - rows_here[0].p50_ms, 3)
            rows += rows_here
    finally:
        participant.close()
        stop(bridge)
        registry.stop()
    return rows


def _header(stamp: int) -> Any:
    from perception.msgs import Header

    return Header(stamp=stamp, frame_id="camera")


def table(rows: list[Row]) -> str:
    lines = [
        f"{'frame':<12} {'rate':>5} {'path':<24} {'sent':>5} {'got':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'added p50':>10}"
    ]
    for r in rows:
        added = "" if r.added_p50_ms is None else f"{r.added_p50_ms:+.3f}"
        lines.append(
            f"{r.frame:<12} {r.rate:>5g} {r.path:<24} {r.sent:>5} {r.received:>5} {r.p50_ms:>8.3f} {r.p90_ms:>8.3f} {r.p99_ms:>8.3f} {added:>10}"
        )
    return "\n".join(lines)


if __name__ == "__main__" and sys.argv[1:2] == ["direct"]:
    direct_subscriber(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
