"""percept bench graph: the detector in a launched sim -> detector graph (perception/bench/graph.py)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from perception.bench.common import as_json
from perception.bench.machine import cpu
from perception.cli.common import comma_separated, positive_float, positive_numbers
from perception.errors import PerceptError
from perception.installed import SHIPPED_MODEL


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "graph", help="The detector in a launched sim -> detector graph: keeps up? latency?"
    )
    p.add_argument("--model", default=SHIPPED_MODEL, help=f"an ONNX detector (default {SHIPPED_MODEL})")
    p.add_argument("--scenes", default="tabletop,driving", help="comma-separated: tabletop, driving")
    p.add_argument(
        "--rates",
        type=positive_numbers,
        default="10,20",
        help="comma-separated camera rates (frames/s) to try",
    )
    p.add_argument("--seconds", type=positive_float, default=10.0, help="measured seconds per scene and rate")
    p.add_argument(
        "--sim-nice",
        type=int,
        default=19,
        help="the simulator's CPU niceness, 0-19 (default 19, its own default; 0 to see it compete)",
    )
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from perception.bench import graph

    scenes = comma_separated(args.scenes)
    if not scenes or any(s not in ("tabletop", "driving") for s in scenes):
        raise PerceptError(f"--scenes {args.scenes!r}: expected tabletop and/or driving")
    rates = args.rates
    if not 0 <= args.sim_nice <= 19:
        raise PerceptError(f"--sim-nice {args.sim_nice}: expected 0 to 19")
    settings = {
        "model": args.model,
        "size": "640x480",
        "seconds": args.seconds,
        "sim_nice": args.sim_nice,
        "cpu_count": os.cpu_count(),
        "cpu": cpu().summary(),
    }
    print(f"graph benchmark (sim -> detector, separate processes): {settings}", flush=True)
    rows = graph.run(args.model, scenes, rates, args.seconds, args.sim_nice)
    print(graph.table(rows))
    if args.json:
        print(as_json("graph", rows, settings))
    return 0
