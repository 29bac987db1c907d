"""`percept bench render`: a scenario suite rendered by one worker and by more, side by side: frames/s,
the speed-up over the first, and whether every pool rendered the same frames: the same ground truth (it
must be: frame i depends only on the suite's seed and i) and how many pixels differ. TinyRenderer is
bit-exact from run to run; the EGL renderer through Mesa is not quite (measured: a frame in ten differs
from one run to the next in one or two pixels, wherever it runs), which is why a suite is rendered once
and every scoring run reads the cached frames."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np

from perception.bench import fanout, suites


@dataclass
class Row:
    workers: str  # as asked: this, 1, 2, local:2, an address
    pool: str  # what ran the jobs
    frames: int
    start_s: float  # starting the pool's workers (once per run, not per frame)
    seconds: float  # rendering, once the workers are up
    fps: float
    speedup: float  # over the first row, in rendering time
    truth_digest: str  # of the ground truth: the same in every row
    same_truth: bool
    frames_differing: int  # from the first row's, in any pixel
    pixels_differing: int  # in all


def run(suite: suites.Suite, pools: list[str]) -> list[Row]:
    rows: list[Row] = []
    first_images: list[np.ndarray] = []
    for asked in pools:
        cluster = None if asked.isdigit() or asked == "this" else asked
        count = int(asked) if asked.isdigit() else 1
        with fanout.open_pool(count, cluster, processes=asked != "this") as pool:
            description, start_s = pool.description, pool.start_s
            started = time.monotonic()
            rendered, _ = suites.load_or_render(suite, pool, None)
            seconds = time.monotonic() - started
        digest = hashlib.sha256()
        images = [image for entry in rendered.values() for image in entry.images]
        for entry in rendered.values():
            digest.update(json.dumps(entry.truth, sort_keys=True).encode())
        first_images = first_images or images
        differing = [
            int(np.count_nonzero(np.any(a != b, axis=2))) for a, b in zip(first_images, images, strict=True)
        ]
        first = rows[0] if rows else None
        rows.append(
            Row(
                asked,
                description,
                len(images),
                round(start_s, 2),
                round(seconds, 2),
                round(len(images) / seconds, 2),
                round(first.seconds / seconds, 2) if first else 1.0,
                digest.hexdigest()[:16],
                first is None or digest.hexdigest()[:16] == first.truth_digest,
                sum(1 for d in differing if d),
                sum(differing),
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    head = (
        f"{'workers':<10} {'pool':<44} {'frames':>6} {'start s':>7} {'render s':>8} {'frames/s':>8} {'speed-up':>8}  "
        "same truth  "
        "pixels differing"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.workers:<10} {r.pool[:44]:<44} {r.frames:>6} {r.start_s:>7.1f} {r.seconds:>8.1f} {r.fps:>8.2f} "
            f"{r.speedup:>7.2f}x  "
            f"{'yes' if r.same_truth else 'NO':<10}  {r.pixels_differing} in {r.frames_differing} frames"
        )
    return "\n".join(lines)
