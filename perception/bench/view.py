"""`percept bench view`: what does watching a stream in `percept view` cost?

This process publishes two cameras (`/cam0/image`, `/cam1/image`: 640x480 rendered tabletop frames at
30 Hz, each with its `Detections`), and `percept view` runs as its own process, as a user runs it. Then
0, 1 and 2 browsers-worth of MJPEG readers (threads here, one per camera) watch at `fps`, and the
viewer's CPU time is read from the OS for each phase. The cost of a viewed stream is the viewer's CPU
above the phase where nobody watches (the subscriptions alone), divided by the streams watched; beside
it the limit, 5% of one core per stream.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.bench.common import private_registry, spawn_cli, stop

LIMIT_PERCENT_PER_STREAM = 5.0
CAMERAS = ("/cam0/image", "/cam1/image")


@dataclass
class Row:
    streams: int
    fps_requested: float
    fps_delivered: float  # per stream, as the readers received them
    viewer_cpu_percent: float  # of one core, the whole viewer process
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


class Reader(threading.Thread):
    """Reads one MJPEG stream as a browser would, counting the frames."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.frames, self.stop = url, 0, threading.Event()

    def run(self) -> None:
        with urllib.request.urlopen(self.url, timeout=10) as stream:
            while not self.stop.is_set():
                line = stream.readline()
                if not line:
                    return
                if line.lower().startswith(b"content-length:"):
                    stream.readline()
                    stream.read(int(line.split(b":")[1]))
                    self.frames += 1


def scene_frames(count: int = 8) -> list[np.ndarray]:
    from sim.camera import CameraSpec
    from sim.dataset import rendered_frames

    return [f.rgb for _, f in rendered_frames("tabletop", 7, list(range(count)), CameraSpec(640, 480))]


def run(fps: float, seconds: float, rate: float = 30.0) -> list[Row]:
    from perception import Node
    from perception.msgs import Detections, Header, Image
    from perception.runtime.context import Context

    frames = scene_frames()
    registry = private_registry()
    env = {**os.environ, "PERCEPT_REGISTRY": registry.address, "PYTHONUNBUFFERED": "1"}
    viewer = spawn_cli(
        "view",
        "--port",
        "0",
        "--fps",
        str(fps),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    node = Node(
        f"_bench_view_{os.getpid()}", context=Context(registry=registry.address), stats_period_s=3600.0
    )
    rows: list[Row] = []
    try:
        assert viewer.stdout is not None
        line = viewer.stdout.readline()
        if "viewer at http://" not in line:
            raise RuntimeError(f"bench view: the viewer said {line.strip()!r}")
        base = line.split()[2].rstrip("/")
        # Keep reading what the viewer prints, so a full pipe never stalls it mid-measurement.
        threading.Thread(target=viewer.stdout.read, daemon=True).start()
        publishers = [
            (
                node.create_publisher(Image, topic),
                node.create_publisher(Detections, topic.replace("image", "detections")),
            )
            for topic in CAMERAS
        ]
        published = 0
        start = time.monotonic()

        def publish_until(deadline: float) -> None:
            nonlocal published
            while (now := time.monotonic()) < deadline:
                due = start + published / rate
                if now < due:
                    node.spin_once(min(due - now, 0.01))
                    continue
                for camera, (images, detections) in enumerate(publishers):
                    header = Header(stamp=time.time_ns(), frame_id=f"cam{camera}", seq=published)
                    images.publish(
                        Image(header=header, data=frames[published % len(frames)], encoding="rgb8")
                    )
                    detections.publish(
                        Detections(
                            header=header,
                            xyxy=np.array([[200.0, 150, 320, 260], [380, 200, 460, 300]]),
                            scores=np.array([0.9, 0.8], np.float32),
                            class_ids=np.array([0, 2], np.int32),
                            class_names=["cube", "mug"],
                        )
                    )
                published += 1

        def viewer_sees_both() -> bool:
            import json

            with urllib.request.urlopen(base + "/api/graph", timeout=5) as answer:
                return sorted(json.loads(answer.read())["streams"]) == sorted(CAMERAS)

        publish_until(time.monotonic() + 3.0)
        while not viewer_sees_both():
            publish_until(time.monotonic() + 0.5)
            if time.monotonic() - start > 30:
                raise RuntimeError("bench view: the viewer did not subscribe to the cameras within 30 s")
        publish_until(time.monotonic() + 2.0)  # subscriptions settle
        idle = 0.0
        for streams in range(len(CAMERAS) + 1):
            readers = [Reader(f"{base}/stream?topic={topic}&fps={fps}") for topic in CAMERAS[:streams]]
            for reader in readers:
                reader.start()
            publish_until(time.monotonic() + 1.0)  # streams start
            counted = [r.frames for r in readers]
            cpu_before, wall_before = cpu_seconds(viewer.pid), time.monotonic()
            publish_until(wall_before + seconds)
            cpu = (cpu_seconds(viewer.pid) - cpu_before) / (time.monotonic() - wall_before) * 100
            delivered = [(r.frames - c) / seconds for r, c in zip(readers, counted, strict=True)]
            for reader in readers:
                reader.stop.set()
            if streams == 0:
                idle = cpu
            added = (cpu - idle) / streams if streams else 0.0
            rows.append(
                Row(
                    streams=streams,
                    fps_requested=fps,
                    fps_delivered=round(float(np.mean(delivered)), 1) if delivered else 0.0,
                    viewer_cpu_percent=round(cpu, 2),
                    added_per_stream_percent=round(added, 2),
                    limit_per_stream_percent=LIMIT_PERCENT_PER_STREAM,
                    within_limit=added <= LIMIT_PERCENT_PER_STREAM,
                )
            )
            publish_until(time.monotonic() + 1.0)  # readers close before the next phase
    finally:
        stop(viewer, timeout_s=20)
        node.destroy()
        registry.stop()
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| streams watched | fps asked | fps delivered | viewer CPU (% of a core) | added per stream | limit |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        added = f"{r.added_per_stream_percent:.2f}%" if r.streams else "(nobody watching)"
        lines.append(
            f"| {r.streams} | {r.fps_requested:g} | {r.fps_delivered:.1f} | {r.viewer_cpu_percent:.2f}% | "
            f"{added} | {r.limit_per_stream_percent:g}% |"
        )
    return "\n".join(lines)
