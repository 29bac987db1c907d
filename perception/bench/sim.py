"""`percept bench sim`: frames/s of the simulator node against a bare getCameraImage loop, per renderer
and resolution, in one run.

The node is the real SimNode (built in this process with a private registry, and a subscriber in
another process so publishing pays for real sends); a frame is its whole per-frame work: render,
conversion to arrays, metric depth, ground truth, and publishing image, depth, camera info and ground
truth. The bare loop calls getCameraImage with the same scene, camera and renderer. The two alternate
frame by frame, and the medians of their frame times are compared. Physics stepping is simulation, not overhead, and
is reported on its own.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import pybullet as p

from perception.bench.common import private_registry, spawn_cli

RESOLUTIONS = {"320x240": (320, 240), "640x480": (640, 480)}


@dataclass
class Row:
    renderer: str
    width: int
    height: int
    fps: float
    bare_fps: float
    overhead: float
    frame_ms: float
    bare_ms: float
    physics_ms: float  # 24 steps at 240 Hz: one frame's worth at 10 frames/s


def run(renderers: list[str], resolutions: list[str], frames: int = 60) -> list[Row]:
    from perception.runtime.context import Context, NodeOverrides
    from sim.node import SimNode

    registry = private_registry()
    env = {**os.environ, "PERCEPT_REGISTRY": registry.address}
    listener = spawn_cli(
        "topic",
        "hz",
        "/bench/camera/image",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows: list[Row] = []
    try:
        for renderer in renderers:
            for name in resolutions:
                width, height = RESOLUTIONS[name]
                overrides = NodeOverrides(
                    namespace="/bench",
                    parameters={
                        "renderer": renderer,
                        "width": width,
                        "height": height,
                        "clock": "fast",
                        "scene_params": {"objects": 5},
                        "nice": 0,  # it is built in this process: keep the benchmark at normal priority
                    },
                )
                node = _make_node(SimNode, Context(registry=registry.address, overrides=overrides))
                try:
                    image_pub = node.image_pub
                    deadline = time.monotonic() + 10
                    while image_pub.subscriber_count < 1 and time.monotonic() < deadline:
                        node.spin_once(0.05)
                    bare = _bare_render(node)
                    world = node.world

                    for _ in range(3):  # warm-up: first EGL frames are slow
                        node._publish_now()
                        bare()
                    # One bare frame, then one node frame, and so on: both see the same machine load.
                    # Medians, because llvmpipe's worker threads make single frames vary by several ms.
                    node_times, bare_times = [], []
                    for _ in range(frames):
                        start = time.perf_counter()
                        bare()
                        bare_times.append(time.perf_counter() - start)
                        start = time.perf_counter()
                        node._publish_now()
                        node_times.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    world.step(24 * 10)
                    physics_ms = (time.perf_counter() - start) / 10 * 1000
                    node_ms = statistics.median(node_times) * 1000
                    bare_ms = statistics.median(bare_times) * 1000
                    rows.append(
                        Row(
                            world.renderer,
                            width,
                            height,
                            round(1000 / node_ms, 2),
                            round(1000 / bare_ms, 2),
                            round(1 - bare_ms / node_ms, 4),
                            round(node_ms, 2),
                            round(bare_ms, 2),
                            round(physics_ms, 2),
                        )
                    )
                finally:
                    node.destroy()
    finally:
        listener.terminate()
        listener.wait(timeout=10)
        registry.stop()
    return rows


def _bare_render(node: Any) -> Any:
    """A getCameraImage call with exactly the node's scene, camera, light and renderer."""
    from sim.camera import gl_list, projection_matrix, view_matrix

    spec, world = node.scene.camera, node.world
    args = (spec.width, spec.height, gl_list(view_matrix(spec)), gl_list(projection_matrix(spec)))
    flag = p.ER_BULLET_HARDWARE_OPENGL if world.renderer == "egl" else p.ER_TINY_RENDERER
    light = list(node.scene.light_direction)

    def bare() -> None:
        p.getCameraImage(*args, lightDirection=light, shadow=0, renderer=flag, physicsClientId=world.client)

    return bare


def _make_node(cls: Any, context: Any) -> Any:
    from perception.runtime.context import Context

    previous = Context._default
    Context.set_default(context)
    try:
        return cls()
    finally:
        Context._default = previous


def table(rows: list[Row]) -> str:
    head = (
        f"{'renderer':<9} {'size':>9} {'node fps':>9} {'bare fps':>9} {'overhead':>9} {'node ms':>8} "
        f"{'bare ms':>8} {'physics ms':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.renderer:<9} {f'{r.width}x{r.height}':>9} {r.fps:>9.1f} {r.bare_fps:>9.1f} {r.overhead:>9.1%} "
            f"{r.frame_ms:>8.1f} {r.bare_ms:>8.1f} {r.physics_ms:>10.2f}"
        )
    return "\n".join(lines)
