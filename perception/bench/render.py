"""`percept bench render`: a scenario suite rendered by one worker and by more, side by side: frames/s,
the speed-up over the first, and whether every pool rendered the same frames (it must: frame i depends
only on the suite's seed and i). Rendering is what these workers mostly do: each renders its own chunks
of frames with its own PyBullet connection."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from perception.bench import fanout, suites


@dataclass
class Row:
    workers: str  # as asked: 1, 2, local:2, an address
    pool: str  # what ran the jobs
    frames: int
    seconds: float
    fps: float
    speedup: float  # over the first row
    digest: str  # of the frames and truth: the same in every row
    same_frames: bool


def run(suite: suites.Suite, pools: list[str]) -> list[Row]:
    rows: list[Row] = []
    for asked in pools:
        cluster = asked if not asked.isdigit() else None
        started = time.monotonic()
        with fanout.open_pool(int(asked) if asked.isdigit() else 1, cluster) as pool:
            description = pool.description
            rendered, _ = suites.load_or_render(suite, pool, None)
        seconds = time.monotonic() - started  # with the pool's start: part of what a user waits for
        digest = hashlib.sha256()
        count = 0
        for entry in rendered.values():
            for image in entry.images:
                digest.update(image.tobytes())
                count += 1
            digest.update(json.dumps(entry.truth, sort_keys=True).encode())
        first = rows[0] if rows else None
        rows.append(
            Row(
                asked,
                description,
                count,
                round(seconds, 2),
                round(count / seconds, 2),
                round(first.seconds / seconds, 2) if first else 1.0,
                digest.hexdigest()[:16],
                first is None or digest.hexdigest()[:16] == first.digest,
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    head = f"{'workers':<10} {'pool':<40} {'frames':>6} {'s':>7} {'frames/s':>8} {'speed-up':>8}  same frames"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.workers:<10} {r.pool[:40]:<40} {r.frames:>6} {r.seconds:>7.1f} {r.fps:>8.2f} {r.speedup:>7.2f}x  "
            f"{'yes' if r.same_frames else 'NO'}"
        )
    return "\n".join(lines)
