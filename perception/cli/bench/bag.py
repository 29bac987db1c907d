"""percept bench bag: recording sizes, ours beside the mcap library's zstd writer (perception/bench/bag.py)."""

from __future__ import annotations

import argparse
from typing import Any

from perception.bench.common import as_json
from perception.cli.common import positive_int, seed_arg


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "bag", help="Recording sizes of the demo's camera: ours, the mcap writer's zstd, and before."
    )
    p.add_argument("--frames", type=positive_int, default=100, help="frames at 10 Hz (100: the demo's 10 s)")
    p.add_argument("--seed", type=seed_arg, default=0, help="tabletop scene seed (default 0, the demo's)")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from perception.bench import bag

    settings = {
        "frames": args.frames,
        "seed": args.seed,
        "rate_hz": bag.RATE_HZ,
        "image": "640x480 rgb8 + 32FC1",
    }
    print(f"bag benchmark (the demo's colour, depth and detections): {settings}", flush=True)
    rows = bag.run(args.frames, args.seed)
    print(bag.table(rows))
    if args.json:
        print(as_json("bag", rows, settings))
    return 0
