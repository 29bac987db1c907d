"""percept bench render: a scenario suite rendered by 1 worker and by more (perception/bench/render.py)."""

from __future__ import annotations

import argparse
from typing import Any

from perception.bench.common import as_json
from perception.cli.common import comma_separated
from perception.errors import PerceptError


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "render", help="A scenario suite rendered by one worker and by more: frames/s and speed-up."
    )
    p.add_argument("--suite", default="tabletop-standard", help="a suite of `bench detect --list-suites`")
    p.add_argument(
        "--workers",
        type=comma_separated,
        default="1,2,this",
        metavar="this|N|local:N|ADDRESS,...",
        help="pools to compare: this process (rendering with Mesa's own threads), N local worker processes "
        "(one render thread each), Dask LocalClusters (local:N) or cluster addresses",
    )
    p.add_argument(
        "--frames", type=int, help="render only the first N frames of each variation (default: all)"
    )
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from perception.bench import render, suites

    suite = suites.find(args.suite)
    if args.frames is not None:
        if args.frames < 1:
            raise PerceptError(f"--frames: expected a count of at least 1, found {args.frames}")
        suite = replace(suite, frames=min(args.frames, suite.frames))
    bad = [w for w in args.workers if not (w.isdigit() and int(w) >= 1) and ":" not in w and w != "this"]
    if bad:
        raise PerceptError(
            f"--workers: expected this, N >= 1, local:N or a scheduler address, found {bad[0]!r}"
        )
    settings = {"suite": suite.name, "frames": suite.frames * len(suite.variations()), "cached": False}
    print(f"render benchmark: {settings}", flush=True)
    rows = render.run(suite, list(args.workers))
    print(render.table(rows))
    print(
        "start: the workers starting and importing the simulator (once per run); every pool must render the "
        "same truth (EGL's pixels may differ in a few places from run to run: suites are rendered once and "
        "cached)"
    )
    if args.json:
        print(as_json("render", rows, settings))
    return 0 if all(r.same_truth for r in rows) else 1
