"""`percept bench bag`: how big a recording of the demo's camera is, ours beside the `mcap` library's own
writer with zstd chunk compression (the rosbag2 way: each message stored once, chunks compressed) and
beside the layout recordings had before (no compression, each image twice).

The frames are the main demo's: the tabletop scene rendered at 640x480, colour and depth, with its
detections, at 10 frames/s. The simulator's frames compress unusually well (flat colours, exact depth),
so the same frames are also written with sensor noise added: 2 grey levels of Gaussian noise on colour,
1 mm on depth, as a real RGB-D camera gives.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RATE_HZ = 10.0  # the demo's camera rate
TARGET_SHARE = 0.2  # the demo's recording at most 1/5 of the old layout's size, lossless
TARGET_VS_MCAP = 1.10  # and within 10% of the mcap library's zstd writer


@dataclass
class Row:
    frames: str  # "simulator" or "noisy"
    layout: str
    lossless: bool
    megabytes: float
    megabytes_per_s: float  # of recording, at the demo's 10 frames/s
    write_ms_per_frame: float  # colour + depth + detections, on this process's one thread
    vs_mcap_zstd: float  # size over the mcap writer's with zstd


def run(frames: int, seed: int, renderer: str = "auto") -> list[Row]:
    captured = _render(frames, seed, renderer)
    rng = np.random.default_rng(seed)
    noisy = [
        (
            np.clip(rgb + rng.normal(0, 2, rgb.shape), 0, 255).astype(np.uint8),
            (depth + rng.normal(0, 0.001, depth.shape)).astype(np.float32),
            boxes,
        )
        for rgb, depth, boxes in captured
    ]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        for name, stream in (("simulator", captured), ("noisy", noisy)):
            messages = list(_messages(stream))
            sizes: dict[str, tuple[int, float, bool]] = {}
            for layout, write in LAYOUTS.items():
                path = Path(folder) / f"{name}-{layout}.mcap"
                start = time.perf_counter()
                write(path, messages)
                elapsed = time.perf_counter() - start
                sizes[layout] = (path.stat().st_size, elapsed, layout != "ours, jpeg images")
                path.unlink()
            reference = sizes["mcap writer, zstd"][0]
            seconds = len(stream) / RATE_HZ
            for layout, (size, elapsed, lossless) in sizes.items():
                rows.append(
                    Row(
                        frames=name,
                        layout=layout,
                        lossless=lossless,
                        megabytes=round(size / 2**20, 2),
                        megabytes_per_s=round(size / 2**20 / seconds, 2),
                        write_ms_per_frame=round(elapsed / len(stream) * 1000, 2),
                        vs_mcap_zstd=round(size / reference, 3),
                    )
                )
    return rows


def _render(count: int, seed: int, renderer: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The demo's tabletop, `count` frames at 10 frames/s of simulated time, with ground-truth boxes
    standing in for the detector's (a detection message is a few hundred bytes either way)."""
    from sim import tabletop
    from sim.camera import CameraSpec
    from sim.frames import capture
    from sim.world import PHYSICS_HZ, World

    world = World(renderer)
    try:
        scene = tabletop.TabletopScene(
            world, tabletop.TabletopParams(), seed, CameraSpec(width=640, height=480)
        )
        captured = []
        for _ in range(count):
            world.step(round(PHYSICS_HZ / RATE_HZ))
            frame = capture(scene)
            captured.append((frame.rgb, frame.depth, frame.xyxy))
        return captured
    finally:
        world.close()


def _messages(stream: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Any:
    """(topic, type name, wire frames, stamp) of the demo's three camera-side topics per frame."""
    from perception import msgs
    from perception.runtime import wire

    for i, (rgb, depth, boxes) in enumerate(stream):
        header = msgs.Header(
            stamp=1_800_000_000_000_000_000 + int(i * 1e9 / RATE_HZ), frame_id="camera", seq=i
        )
        n = len(boxes)
        for topic, msg in (
            ("/camera/image", msgs.Image(header, rgb)),
            ("/camera/depth", msgs.Image(header, depth, encoding="32FC1")),
            ("/detections", msgs.Detections(header, boxes, np.full(n, 0.9), np.zeros(n), ["cube"] * n)),
        ):
            frames = [
                bytes(memoryview(f).cast("B")) for f in wire.encode(topic.encode(), msg, "bench", i + 1)
            ]
            yield topic, msg.TYPE_NAME, frames[1:], header.stamp


def _ours(image_format: str) -> Any:
    def write(path: Path, messages: list[Any]) -> None:
        from perception.recording.mcap_file import McapRecorder

        recorder = McapRecorder(path, image_format=image_format)
        for topic, type_name, frames, stamp in messages:
            recorder.write(topic, type_name, frames, stamp, stamp)
        recorder.close()

    return write


def _mcap_zstd(path: Path, messages: list[Any]) -> None:
    """The mcap library's own writer, zstd chunks of the same 4 MiB: each message's bytes once."""
    from mcap.writer import CompressionType, Writer

    from perception.recording.mcap_file import ENCODING, pack

    with open(path, "wb") as stream:
        writer = Writer(stream, chunk_size=4 * 2**20, compression=CompressionType.ZSTD)
        writer.start(profile="", library="mcap")
        channels: dict[str, int] = {}
        for topic, type_name, frames, stamp in messages:
            if topic not in channels:
                schema = writer.register_schema(type_name, ENCODING, type_name.encode())
                channels[topic] = writer.register_channel(topic, ENCODING, schema)
            writer.add_message(channels[topic], stamp, pack(frames), stamp)
        writer.finish()  # type: ignore[no-untyped-call]


def _before(path: Path, messages: list[Any]) -> None:
    """Recordings as they were: no chunk compression, and each image twice (our message, and a
    Foxglove RawImage view of it)."""
    from mcap.writer import CompressionType, Writer

    from perception.recording.foxglove import schema_data
    from perception.recording.images import store
    from perception.recording.mcap_file import ENCODING, pack
    from perception.runtime import wire

    with open(path, "wb") as stream:
        writer = Writer(stream, chunk_size=4 * 2**20, compression=CompressionType.NONE)
        writer.start(profile="percept", library="percept")
        channels: dict[str, int] = {}
        view_schema = 0
        for topic, type_name, frames, stamp in messages:
            if topic not in channels:
                schema = writer.register_schema(type_name, ENCODING, type_name.encode())
                channels[topic] = writer.register_channel(topic, ENCODING, schema)
            writer.add_message(channels[topic], stamp, pack(frames), stamp)
            if type_name == "percept/Image":
                from foxglove_schemas_protobuf.RawImage_pb2 import RawImage

                if not view_schema:
                    view_schema = writer.register_schema(
                        "foxglove.RawImage", "protobuf", schema_data(RawImage.DESCRIPTOR)
                    )
                view_topic = "/foxglove" + topic
                if view_topic not in channels:
                    channels[view_topic] = writer.register_channel(view_topic, "protobuf", view_schema)
                image = wire.decode([topic.encode(), *frames]).msg
                writer.add_message(channels[view_topic], stamp, store(image, b"", "raw").data, stamp)
        writer.finish()  # type: ignore[no-untyped-call]


LAYOUTS = {
    "before (none, images twice)": _before,
    "mcap writer, zstd": _mcap_zstd,
    "ours (zstd, raw images)": _ours("raw"),
    "ours, png images": _ours("png"),
    "ours, jpeg images": _ours("jpeg"),
}


def table(rows: list[Row]) -> str:
    head = f"{'frames':<10} {'layout':<28} {'lossless':>8} {'MB':>8} {'MB/s':>7} {'write ms':>9} {'/ mcap zstd':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.frames:<10} {r.layout:<28} {'yes' if r.lossless else 'no':>8} {r.megabytes:>8.2f} "
            f"{r.megabytes_per_s:>7.2f} {r.write_ms_per_frame:>9.2f} {r.vs_mcap_zstd:>12.3f}"
        )
    for name in ("simulator", "noisy"):
        ours = next((r for r in rows if r.frames == name and r.layout == "ours (zstd, raw images)"), None)
        before = next((r for r in rows if r.frames == name and r.layout.startswith("before")), None)
        if ours and before:
            target = f" (target <= {TARGET_SHARE:g})" if name == "simulator" else ""
            lines.append(
                f"{name}: ours is {ours.megabytes / before.megabytes:.3f} of before{target}, "
                f"{ours.vs_mcap_zstd:.3f} of the mcap writer's zstd (target <= {TARGET_VS_MCAP:g})"
            )
    return "\n".join(lines)
