"""`percept bench graph`: the detector in a running graph (sim -> detector), seen from outside.

The simulator and the detector run as their own processes, as `percept launch` runs them, on a private
registry; this process subscribes to the camera and to the detections like any other node would. Per
camera rate it reports whether the detector keeps up (detections/s against camera frames/s, and the
frames the detector skipped) and the latency from a frame's stamp (taken right after rendering) to the
arrival of the image and of its detections. What the detector adds is the difference of the two medians;
the limit it is held to is printed beside it. The simulator runs at the niceness `sim_nice` (the CLI's
default is the simulator's own, 19, as in a launch file).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perception.bench.common import private_registry, spawn_cli, stop

ADDED_LATENCY_LIMIT_MS = 30.0


@dataclass
class Row:
    scene: str
    rate: float
    camera_fps: float
    detections_fps: float
    frames_skipped: int  # frames the detector never published detections for
    image_latency_p50_ms: float  # stamp -> image here
    detection_latency_p50_ms: float  # stamp -> detections here
    detection_latency_p95_ms: float
    added_p50_ms: float  # what the detector adds: the difference of the two medians
    keeps_up: bool  # detections for (nearly) every camera frame: at most 1 in 20 skipped
    limit_added_ms: float = ADDED_LATENCY_LIMIT_MS
    within_limit: bool = field(init=False)  # the latency the detector adds is under the limit

    def __post_init__(self) -> None:
        self.within_limit = self.added_p50_ms <= self.limit_added_ms


def _spawn(target: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return spawn_cli("run", target, *args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run_one(
    model: str, scene: str, rate: float, seconds: float, sim_nice: int, renderer: str = "auto"
) -> Row:
    from perception import Node
    from perception.errors import PerceptError
    from perception.msgs import Detections, Image
    from perception.runtime.context import Context

    registry = private_registry()
    env = {**os.environ, "PERCEPT_REGISTRY": registry.address, "PERCEPT_LOG_LEVEL": "WARNING"}
    sim = _spawn(
        "sim.node:SimNode",
        env,
        "--name=sim",
        f"-p=scene:={scene}",
        f"-p=rate:={rate}",
        f"-p=renderer:={renderer}",
        "-p=width:=640",
        "-p=height:=480",
        f"-p=nice:={sim_nice}",
    )
    detector = _spawn(
        "perception.nodes.detector:DetectorNode", env, f"-p=model:={model}", "-r=image:=/camera/image"
    )
    node = Node(
        f"_bench_graph_{os.getpid()}", context=Context(registry=registry.address), stats_period_s=3600.0
    )
    images: list[tuple[int, float]] = []  # (seq, latency ms)
    detections: list[tuple[int, float]] = []

    def arrival(log: list[tuple[int, float]]) -> Any:
        def callback(msg: Any) -> None:
            log.append((msg.header.seq, (time.time_ns() - msg.header.stamp) / 1e6))

        return callback

    node.create_subscription(Image, "/camera/image", arrival(images))
    node.create_subscription(Detections, "/detections", arrival(detections))
    try:
        deadline = time.monotonic() + 60  # start-up: EGL, the model, discovery
        while not detections:
            node.spin_once(0.05)
            for process, name in ((sim, "sim"), (detector, "detector")):
                if process.poll() is not None:
                    error = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
                    raise PerceptError(f"bench graph: the {name} node exited: {error.splitlines()[-1:]}")
            if time.monotonic() > deadline:
                raise PerceptError("bench graph: no detections within 60 s of start")
        end = time.monotonic() + 1.0  # settle, then measure
        while time.monotonic() < end:
            node.spin_once(0.05)
        images.clear()
        detections.clear()
        start = time.monotonic()
        while time.monotonic() < start + seconds:
            node.spin_once(0.05)
        elapsed = time.monotonic() - start
    finally:
        node.destroy()
        stop(detector, sim)
        registry.stop()
    frames = {seq for seq, _ in images}
    detected = {seq for seq, _ in detections}
    image_p50 = statistics.median(ms for _, ms in images)
    latencies = [ms for _, ms in detections]
    detection_p50 = float(np.percentile(latencies, 50))
    camera_fps, detections_fps = len(images) / elapsed, len(detections) / elapsed
    skipped = len(frames - detected)
    return Row(
        scene=scene,
        rate=rate,
        camera_fps=round(camera_fps, 2),
        detections_fps=round(detections_fps, 2),
        frames_skipped=skipped,
        image_latency_p50_ms=round(image_p50, 2),
        detection_latency_p50_ms=round(detection_p50, 2),
        detection_latency_p95_ms=round(float(np.percentile(latencies, 95)), 2),
        added_p50_ms=round(detection_p50 - image_p50, 2),
        # Keeping up: at most one frame in 20 goes without detections (the last may be in flight).
        keeps_up=skipped <= max(1, len(frames) // 20),
    )


def run(model: str, scenes: list[str], rates: list[float], seconds: float, sim_nice: int) -> list[Row]:
    return [run_one(model, scene, rate, seconds, sim_nice) for scene in scenes for rate in rates]


def table(rows: list[Row]) -> str:
    head = (
        f"{'scene':<9} {'rate':>5} {'camera fps':>10} {'det fps':>8} {'skipped':>8} {'image p50':>10} "
        f"{'det p50':>8} {'det p95':>8} {'added p50':>10} {'limit':>6} {'within':>7} {'keeps up':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.scene:<9} {r.rate:>5.0f} {r.camera_fps:>10.1f} {r.detections_fps:>8.1f} {r.frames_skipped:>8} "
            f"{r.image_latency_p50_ms:>10.1f} {r.detection_latency_p50_ms:>8.1f} {r.detection_latency_p95_ms:>8.1f} "
            f"{r.added_p50_ms:>10.1f} {r.limit_added_ms:>6.0f} {'yes' if r.within_limit else 'no':>7} "
            f"{'yes' if r.keeps_up else 'no':>9}"
        )
    # Two verdicts: "keeps up" was read as the whole verdict beside an added latency over its limit.
    lines.append("within: the latency added is under the limit; keeps up: no camera frame left undetected")
    return "\n".join(lines)
