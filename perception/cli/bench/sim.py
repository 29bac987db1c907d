"""percept bench sim: the simulator node against a bare rendering loop (perception/bench/sim.py)."""

from __future__ import annotations

import argparse
from typing import Any

from perception.bench.common import as_json
from perception.cli.common import comma_separated, positive_int
from perception.errors import PerceptError


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "sim", help="Simulator node frames/s against a bare getCameraImage loop."
    )
    p.add_argument("--renderers", default="egl,tiny", help="comma-separated: egl, tiny")
    p.add_argument("--resolutions", default="320x240,640x480", help="comma-separated sizes")
    p.add_argument("--frames", type=positive_int, default=60, help="frames per side, per renderer and size")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from perception.bench import sim

    renderers = comma_separated(args.renderers)
    sizes = comma_separated(args.resolutions)
    bad = [r for r in renderers if r not in ("egl", "tiny")] + [s for s in sizes if s not in sim.RESOLUTIONS]
    if bad:
        raise PerceptError(
            f"unknown renderer or size {bad[0]!r}; renderers: egl, tiny; sizes: {', '.join(sim.RESOLUTIONS)}"
        )
    settings = {"frames": args.frames, "scene": "tabletop", "objects": 5}
    print(f"sim benchmark: {settings}", flush=True)
    rows = sim.run(renderers, sizes, args.frames)
    print(sim.table(rows))
    print(
        "overhead = 1 - node fps / bare fps: the node's work beyond rendering (conversion, depth, ground "
        "truth, publishing)"
    )
    if args.json:
        print(as_json("sim", rows, settings))
    return 0
