"""percept bench view: the CPU of percept view and of the live Foxglove link per watched stream
(perception/bench/view.py)."""

from __future__ import annotations

import argparse
from typing import Any

from perception.bench.common import as_json
from perception.cli.common import comma_separated, positive_float
from perception.errors import PerceptError


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "view",
        help="CPU per watched 640x480 stream of percept view and the Foxglove link, against 5%% of a core.",
    )
    p.add_argument("--fps", type=positive_float, default=15.0, help="frame rate each stream is watched at")
    p.add_argument("--seconds", type=positive_float, default=10.0, help="measuring time per phase")
    p.add_argument(
        "--links",
        type=comma_separated,
        help="which to measure, comma-separated: view, foxglove (raw images), foxglove-jpeg (default: all)",
    )
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from perception.bench import view
    from perception.installed import require
    from perception.viewer.server import MAX_FPS

    if args.fps > MAX_FPS:
        raise PerceptError(
            f"--fps: expected at most {MAX_FPS:g} frames/s (the viewer's limit), found {args.fps:g}"
        )
    links = tuple(args.links or view.LINKS)
    unknown = [link for link in links if link not in view.LINKS]
    if unknown:
        raise PerceptError(f"--links: expected some of {', '.join(view.LINKS)}, found {unknown[0]!r}")
    if any(link.startswith("foxglove") for link in links):
        require("foxglove", "percept bench view (the Foxglove link)")
        require("websockets", "percept bench view (its Foxglove client)")
    settings = {
        "fps": args.fps,
        "seconds": args.seconds,
        "links": list(links),
        "cameras": "2 x 640x480 rgb8 at 30 Hz + detections",
    }
    print(f"viewer benchmark (each link as its own process): {settings}", flush=True)
    rows = view.run(args.fps, args.seconds, links)
    print(view.table(rows))
    if args.json:
        print(as_json("view", rows, settings))
    return 0
