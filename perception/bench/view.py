"""`percept bench view`: what does watching a stream cost, in `percept view` and over the live
Foxglove link (`percept foxglove`)?

This process publishes two cameras (`/cam0/image`, `/cam1/image`: 640x480 rendered tabletop frames at
30 Hz, each with its `Detections`), and each link runs as its own process, as a user runs it. Then
0, 1 and 2 watchers (threads here, one per camera) watch at `fps`: pulling the viewer's pictures as
its page does (`/snapshot`, the next once the last has come, an unchanged one a 304); Foxglove WebSocket clients subscribed to a camera's image and its boxes, as Foxglove's
Image panel subscribes (the link thins both to `fps` with `--max-fps`). The link's CPU time is read
from the OS for each phase. The cost of a watched stream is the link's CPU above the phase where nobody
watches (the subscriptions alone), divided by the streams watched; beside it the limit, 5% of one core
per stream.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.bench.common import private_registry, spawn_cli, stop
from perception.runtime.security import ENCLAVE_ENV, KEYSTORE_ENV

LIMIT_PERCENT_PER_STREAM = 5.0
CAMERAS = ("/cam0/image", "/cam1/image")
# What is measured: the link's name in the table -> the command that starts it (after `percept`).
LINKS = {
    "view": ["view", "--port", "0"],
    "foxglove": ["foxglove", "--port", "0", "--image-format", "raw"],
    "foxglove-jpeg": ["foxglove", "--port", "0", "--image-format", "jpeg"],
}


@dataclass
class Row:
    link: str
    streams: int
    fps_requested: float
    fps_delivered: float  # per stream, as the watchers received them
    link_cpu_percent: float  # of one core, the whole link process
    added_per_stream_percent: float  # above the phase with nobody watching
    limit_per_stream_percent: float
    within_limit: bool


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from the OS."""
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except ImportError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PagePuller(threading.Thread):
    """Pulls one stream's pictures as the viewer's page does: over one kept-alive connection, the next
    once the last has come and at most `fps` a second, naming the picture it has (If-None-Match);
    counts the pictures received."""

    def __init__(self, address: str, topic: str, fps: float) -> None:
        super().__init__(daemon=True)
        self.address, self.topic, self.period = address, topic, 1.0 / fps
        self.frames, self.stop = 0, threading.Event()

    def run(self) -> None:
        import http.client
        from urllib.parse import quote, urlparse

        url = urlparse(self.address)
        connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
        path, tag = f"/snapshot?topic={quote(self.topic)}&overlays=1", ""
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                connection.request("GET", path, headers={"If-None-Match": tag} if tag else {})
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    tag = response.getheader("ETag") or ""
                    self.frames += 1
                self.stop.wait(max(0.0, self.period - (time.monotonic() - started)))
        finally:
            connection.close()


class FoxgloveWatcher(threading.Thread):
    """Watches one camera over the Foxglove link as Foxglove's Image panel does: its image and its
    boxes subscribed, every message decoded from the advertised schema; counts the images."""

    def __init__(self, url: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.url, self.topic, self.frames, self.stop = url, topic, 0, threading.Event()

    def run(self) -> None:
        from perception.bench.foxglove_client import FoxgloveClient

        with FoxgloveClient(self.url) as client:
            boxes = self.topic.replace("image", "detections")
            client.subscribe(list(client.wait_for_topics([self.topic, boxes], 10).values()))
            while not self.stop.is_set():
                message = client.receive(0.2)
                if message is not None:
                    message.decode()
                    if message.channel.topic == self.topic:
                        self.frames += 1


def scene_frames(count: int = 8) -> list[np.ndarray]:
    from sim.camera import CameraSpec
    from sim.dataset import rendered_frames

    return [f.rgb for _, f in rendered_frames("tabletop", 7, list(range(count)), CameraSpec(640, 480))]


class Cameras:
    """Publishes the two cameras and their detections at `rate` from this process."""

    def __init__(self, registry: str, rate: float) -> None:
        from perception import Node
        from perception.msgs import Detections, Image
        from perception.runtime.context import Context

        self.frames, self.rate, self.published = scene_frames(), rate, 0
        self.node = Node(
            f"_bench_view_{os.getpid()}",
            context=Context(registry=registry, keys=False),
            stats_period_s=3600.0,
        )
        self.publishers = [
            (
                self.node.create_publisher(Image, topic),
                self.node.create_publisher(Detections, topic.replace("image", "detections")),
            )
            for topic in CAMERAS
        ]
        self.start = time.monotonic()

    def publish_until(self, deadline: float) -> None:
        from perception.msgs import Detections, Header, Image

        while (now := time.monotonic()) < deadline:
            due = self.start + self.published / self.rate
            if now < due:
                self.node.spin_once(min(due - now, 0.01))
                continue
            for camera, (images, detections) in enumerate(self.publishers):
                header = Header(stamp=time.time_ns(), frame_id=f"cam{camera}", seq=self.published)
                frame = self.frames[self.published % len(self.frames)]
                images.publish(Image(header=header, data=frame, encoding="rgb8"))
                detections.publish(
                    Detections(
                        header=header,
                        xyxy=np.array([[200.0, 150, 320, 260], [380, 200, 460, 300]]),
                        scores=np.array([0.9, 0.8], np.float32),
                        class_ids=np.array([0, 2], np.int32),
                        class_names=["cube", "mug"],
                    )
                )
            self.published += 1

    def publish_while_not(self, ready: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
        give_up = time.monotonic() + timeout_s
        while not ready():
            self.publish_until(time.monotonic() + 0.5)
            if time.monotonic() > give_up:
                raise RuntimeError(f"bench view: {what} within {timeout_s:g} s")


def run(fps: float, seconds: float, links: tuple[str, ...] = tuple(LINKS), rate: float = 30.0) -> list[Row]:
    registry = private_registry()
    cameras = Cameras(registry.address, rate)
    # The benchmark's graph is its own, without CURVE (its registry never takes PERCEPT_KEYSTORE's keys):
    # a keystore in the environment made the links CURVE clients of a plain registry, and nothing flowed.
    env = {k: v for k, v in os.environ.items() if k not in (KEYSTORE_ENV, ENCLAVE_ENV)}
    env |= {"PERCEPT_REGISTRY": registry.address, "PYTHONUNBUFFERED": "1"}
    rows: list[Row] = []
    try:
        for link in links:
            rows += _measure(link, fps, seconds, cameras, env)
    finally:
        cameras.node.destroy()
        registry.stop()
    return rows


def _measure(link: str, fps: float, seconds: float, cameras: Cameras, env: dict[str, str]) -> list[Row]:
    """The phases of one link: nobody watching, then one and two cameras watched."""
    foxglove = link.startswith("foxglove")
    rate_option = ["--max-fps", str(fps)] if foxglove else ["--fps", str(fps)]
    process = spawn_cli(
        *LINKS[link], *rate_option, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    rows: list[Row] = []
    try:
        address = _address_of(process, r"ws://[\d.]+:\d+" if foxglove else r"http://[\d.]+:\d+")
        # Keep reading what the link prints, so a full pipe never stalls it mid-measurement.
        threading.Thread(target=process.stdout.read, daemon=True).start()  # type: ignore[union-attr]
        cameras.publish_until(time.monotonic() + 2.0)
        cameras.publish_while_not(_sees_both(link, address), f"{link} did not see both cameras")
        cameras.publish_until(time.monotonic() + 2.0)  # subscriptions settle
        idle = 0.0
        for streams in range(len(CAMERAS) + 1):
            watchers: list[Any] = [
                FoxgloveWatcher(address, topic) if foxglove else PagePuller(address, topic, fps)
                for topic in CAMERAS[:streams]
            ]
            for watcher in watchers:
                watcher.start()
            cameras.publish_until(time.monotonic() + 1.5)  # streams start
            counted = [w.frames for w in watchers]
            cpu_before, wall_before = cpu_seconds(process.pid), time.monotonic()
            cameras.publish_until(wall_before + seconds)
            cpu = (cpu_seconds(process.pid) - cpu_before) / (time.monotonic() - wall_before) * 100
            delivered = [(w.frames - c) / seconds for w, c in zip(watchers, counted, strict=True)]
            for watcher in watchers:
                watcher.stop.set()
            if streams == 0:
                idle = cpu
            added = (cpu - idle) / streams if streams else 0.0
            rows.append(
                Row(
                    link=link,
                    streams=streams,
                    fps_requested=fps,
                    fps_delivered=round(float(np.mean(delivered)), 1) if delivered else 0.0,
                    link_cpu_percent=round(cpu, 2),
                    added_per_stream_percent=round(added, 2),
                    limit_per_stream_percent=LIMIT_PERCENT_PER_STREAM,
                    within_limit=added <= LIMIT_PERCENT_PER_STREAM,
                )
            )
            cameras.publish_until(time.monotonic() + 1.0)  # watchers leave before the next phase
    finally:
        stop(process, timeout_s=20)
    return rows


def _address_of(process: subprocess.Popen[str], pattern: str) -> str:
    """The address a link says it serves on, from its first lines."""
    assert process.stdout is not None
    said = []
    for _ in range(20):
        line = process.stdout.readline()
        said.append(line.strip())
        found = re.search(pattern, line)
        if found:
            return found.group(0)
        if not line:
            break
    raise RuntimeError(f"bench view: the link said {' / '.join(filter(None, said))!r}")


def _sees_both(link: str, address: str) -> Callable[[], bool]:
    def viewer_sees_both() -> bool:
        import json

        with urllib.request.urlopen(address + "/api/graph", timeout=5) as answer:
            return sorted(json.loads(answer.read())["streams"]) == sorted(CAMERAS)

    def link_advertises_both() -> bool:
        from perception.bench.foxglove_client import FoxgloveClient

        with FoxgloveClient(address) as client:
            try:
                client.wait_for_topics(list(CAMERAS), 0.5)
            except TimeoutError:
                return False
            return True

    return link_advertises_both if link.startswith("foxglove") else viewer_sees_both


def table(rows: list[Row]) -> str:
    lines = [
        "| link | streams watched | fps asked | fps delivered | link CPU (% of a core) | added per stream | limit |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        added = f"{r.added_per_stream_percent:.2f}%" if r.streams else "(nobody watching)"
        lines.append(
            f"| {r.link} | {r.streams} | {r.fps_requested:g} | {r.fps_delivered:.1f} | {r.link_cpu_percent:.2f}% | "
            f"{added} | {r.limit_per_stream_percent:g}% |"
        )
    return "\n".join(lines)
