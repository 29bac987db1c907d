"""percept bench grasp: pick-and-place episodes (perception/bench/grasp.py)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from perception.cli.common import positive_int
from perception.errors import PerceptError


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "grasp", help="Pick-and-place episodes: grasp success, table clearing, planning time."
    )
    p.add_argument("--episodes", type=positive_int, default=10)
    p.add_argument("--objects", type=int, default=5, help="objects per episode")
    p.add_argument("--seed", type=int, default=1000, help="seed of the first episode (then +1 each)")
    p.add_argument("--model", default="models/percept.onnx", help="the detector in the loop")
    p.add_argument("--truth", action="store_true", help="ground-truth boxes instead of the detector")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from perception.bench import grasp

    if args.episodes < 1 or not 1 <= args.objects <= 8:
        raise PerceptError(
            f"expected --episodes >= 1 and --objects 1-8, found {args.episodes} and {args.objects}"
        )
    settings = {
        "episodes": args.episodes,
        "objects": args.objects,
        "seed": args.seed,
        "boxes": "ground truth" if args.truth else args.model,
        "image": "640x480",
    }
    print(f"grasp benchmark: {settings}", flush=True)
    summary, episodes = grasp.run(args.episodes, args.objects, args.seed, None if args.truth else args.model)
    print(grasp.table(summary, episodes))
    if args.json:
        report = {"benchmark": "grasp", "settings": settings, **asdict(summary)}
        report["episode_details"] = [asdict(e) for e in episodes]
        print(json.dumps(report))
    return 0
