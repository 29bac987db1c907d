"""percept bench ros2: the ROS 2 bridge's added latency against a direct DDS subscription
(perception/bench/ros2.py)."""

from __future__ import annotations

import argparse
from typing import Any

from perception.bench.common import as_json
from perception.cli.common import positive_float


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "ros2", help="The ROS 2 bridge's added latency per frame, beside a direct DDS subscription."
    )
    p.add_argument("--frames", default="640x480,1280x720", help="comma-separated WIDTHxHEIGHT (rgb8)")
    p.add_argument("--rate", type=positive_float, default=30.0, help="frames per second (default 30)")
    p.add_argument("--seconds", type=positive_float, default=10.0, help="seconds per frame size")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from perception.bench import ros2
    from perception.errors import PerceptError
    from perception.installed import require

    require("cyclonedds", "percept bench ros2")
    require("rosbags", "percept bench ros2")
    try:
        frames = [tuple(int(v) for v in size.lower().split("x")) for size in args.frames.split(",")]
    except ValueError:
        raise PerceptError(f"--frames: expected WIDTHxHEIGHT,..., found {args.frames!r}") from None
    settings = {"frames": args.frames, "rate": args.rate, "seconds": args.seconds, "encoding": "rgb8"}
    print(
        f"ros2 bridge benchmark (a DDS camera writer; both subscribers their own processes): {settings}",
        flush=True,
    )
    rows = ros2.run(frames, args.rate, args.seconds)  # type: ignore[arg-type]
    print(ros2.table(rows))
    if args.json:
        print(as_json("ros2", rows, settings))
    return 0
