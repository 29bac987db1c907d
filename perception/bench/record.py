"""`percept bench record`: can `percept record` keep up? 640x480 frames plus detections at rising rates.

A publisher in this process sends `Image` (640x480x3) and `Detections` at each rate for a few seconds;
`percept record` runs as its own process, as a user runs it. Per rate: messages published, written,
dropped (the recorder's own count), and the disk rate; beside it, the limit: the same bytes written to a
file with plain `write` calls in this process. The highest rate with nothing lost is the sustainable one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.bench.common import private_registry, spawn_cli

FRAME_BYTES = 640 * 480 * 3


@dataclass
class Row:
    rate: float
    seconds: float
    published: int
    written: int
    dropped: int
    megabytes_per_s: float  # message bytes recorded
    disk_megabytes_per_s: float  # what reached the file, after chunk compression
    raw_write_megabytes_per_s: float  # the same bytes through plain file writes: the disk's limit here
    keeps_up: bool


def _raw_write_rate(folder: Path, seconds: float = 1.0) -> float:
    frame = np.random.default_rng(0).integers(0, 256, FRAME_BYTES, dtype=np.uint8).tobytes()
    path = folder / "raw.bin"
    written, start = 0, time.monotonic()
    with open(path, "wb") as out:
        while time.monotonic() - start < seconds:
            out.write(frame)
            written += len(frame)
        out.flush()
        os.fsync(out.fileno())
    elapsed = time.monotonic() - start
    path.unlink()
    return written / elapsed / 2**20


def _publish_pair(images: Any, detections: Any, frame: np.ndarray, seq: int) -> None:
    """A frame and its five boxes, under one header."""
    from perception.msgs import Detections, Header, Image

    header = Header(stamp=time.time_ns(), frame_id="camera", seq=seq)
    images.publish(Image(header=header, data=frame, encoding="rgb8"))
    detections.publish(
        Detections(
            header=header,
            xyxy=np.tile([10.0, 20.0, 30.0, 40.0], (5, 1)),
            scores=np.full(5, 0.9, np.float32),
            class_ids=np.ones(5, np.int32),
            class_names=["mug"] * 5,
        )
    )


def run(rates: list[float], seconds: float, compression: str = "zstd") -> list[Row]:
    from perception import Node
    from perception.msgs import Detections, Image
    from perception.runtime.context import Context

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        limit = _raw_write_rate(Path(folder))
        for rate in rates:
            registry = private_registry()
            env = {**os.environ, "PERCEPT_REGISTRY": registry.address, "PYTHONUNBUFFERED": "1"}
            output = Path(folder) / f"rate{rate:g}.mcap"
            recorder = spawn_cli(
                "record",
                "/camera/image",
                "/detections",
                "-o",
                str(output),
                "--compression",
                compression,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            node = Node(
                f"_bench_record_{os.getpid()}",
                context=Context(registry=registry.address),
                stats_period_s=3600.0,
            )
            try:
                images = node.create_publisher(Image, "/camera/image")
                detections = node.create_publisher(Detections, "/detections")
                deadline = time.monotonic() + 30
                while not (images.subscriber_count and detections.subscriber_count):
                    node.spin_once(0.05)
                    if time.monotonic() > deadline:
                        raise RuntimeError("bench record: the recorder did not subscribe within 30 s")
                frames = [
                    np.random.default_rng(i).integers(0, 256, (480, 640, 3), dtype=np.uint8) for i in range(4)
                ]
                published, start = 0, time.monotonic()
                while (now := time.monotonic()) < start + seconds:
                    due = start + published / rate
                    if now < due:
                        time.sleep(min(due - now, 0.01))
                        continue
                    _publish_pair(images, detections, frames[published % 4], published)
                    published += 1
                elapsed = time.monotonic() - start
                # A few last pairs, slowly, once the recorder has had time to drain: messages lost at
                # the end of the flood show as sequence gaps only when a later message arrives.
                for _ in range(4):
                    time.sleep(0.5)
                    _publish_pair(images, detections, frames[published % 4], published)
                    published += 1
                time.sleep(0.5)
            finally:
                recorder.send_signal(signal.SIGINT)
                out, _ = recorder.communicate(timeout=60)
                node.destroy()
                registry.stop()
            found = re.search(r"wrote (\d+) messages \(([\d.]+) MB, ([\d.]+) MB on disk.*dropped (\d+)", out)
            if not found:
                raise RuntimeError(f"bench record: the recorder said {out.strip()[-300:]!r}")
            written, megabytes, on_disk, dropped = (
                int(found[1]),
                float(found[2]),
                float(found[3]),
                int(found[4]),
            )
            rows.append(
                Row(
                    rate=rate,
                    seconds=round(elapsed, 2),
                    published=2 * published,
                    written=written,
                    dropped=dropped,
                    megabytes_per_s=round(megabytes / elapsed, 1),
                    disk_megabytes_per_s=round(on_disk / elapsed, 1),
                    raw_write_megabytes_per_s=round(limit, 1),
                    keeps_up=written == 2 * published and dropped == 0,
                )
            )
    return rows


def table(rows: list[Row]) -> str:
    head = (
        f"{'rate Hz':>7} {'published':>9} {'written':>8} {'dropped':>8} {'MB/s':>7} {'disk MB/s':>9} "
        f"{'raw write MB/s':>15} {'keeps up':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.rate:>7g} {r.published:>9} {r.written:>8} {r.dropped:>8} {r.megabytes_per_s:>7.1f} "
            f"{r.disk_megabytes_per_s:>9.1f} "
            f"{r.raw_write_megabytes_per_s:>15.1f} {'yes' if r.keeps_up else 'no':>9}"
        )
    kept = [r.rate for r in rows if r.keeps_up]
    lines.append(f"highest rate recorded with nothing lost: {max(kept):g} Hz" if kept else "no rate kept up")
    return "\n".join(lines)
