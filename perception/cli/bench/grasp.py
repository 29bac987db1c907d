"""percept bench grasp: pick-and-place episodes (perception/bench/grasp.py)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from perception.bench.grasp import MOST_OBJECTS
from perception.bench.machine import cpu
from perception.cli.common import positive_int, seed_arg
from perception.errors import PerceptError
from perception.installed import SHIPPED_MODEL


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "grasp", help="Pick-and-place episodes: grasp success, table clearing, planning time."
    )
    p.add_argument("--episodes", type=positive_int, default=10, help="episodes to run, each a new scene")
    p.add_argument(
        "--objects", type=int, default=5, help=f"objects per episode, 1-{MOST_OBJECTS} (default 5)"
    )
    p.add_argument(
        "--layout",
        default="spread",
        help="spread: 1 cm apart or more; packed: touching; pile: dropped in a heap (default spread)",
    )
    p.add_argument("--seed", type=seed_arg, default=1000, help="seed of the first episode (then +1 each)")
    p.add_argument(
        "--model", default=SHIPPED_MODEL, help=f"the detector in the loop (default {SHIPPED_MODEL})"
    )
    p.add_argument("--truth", action="store_true", help="ground-truth boxes instead of the detector")
    p.add_argument(
        "--no-push", action="store_true", help="grasps only: plan and make no pushes (for comparison)"
    )
    p.add_argument(
        "--object",
        action="append",
        default=[],
        metavar="PATH:NAME[:SCALE]",
        help="your own object (OBJ, STL or URDF) on every table among ours; repeat for more",
    )
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from perception.bench import grasp
    from sim.tabletop import LAYOUTS  # the scene owns its layouts (and needs the sim extra anyway)
    from sim.user_objects import UserObject, check

    try:
        objects = tuple(UserObject.parse(value) for value in args.object)
    except ValueError as exc:
        raise PerceptError(str(exc)) from None
    if args.layout not in LAYOUTS:
        raise PerceptError(f"--layout: expected one of {', '.join(LAYOUTS)}, found {args.layout!r}")
    if not 1 <= args.objects <= MOST_OBJECTS:
        raise PerceptError(f"--objects: expected 1-{MOST_OBJECTS}, found {args.objects}")
    check(objects)  # after the quick checks: a concave mesh's first decomposition takes a while
    if objects and not args.truth:
        _warn_of_unknown_classes(args.model, [o.name for o in objects])
    settings = {
        "episodes": args.episodes,
        "objects": args.objects,
        "layout": args.layout,
        "seed": args.seed,
        "boxes": "ground truth" if args.truth else args.model,
        "image": "640x480",
        "pushes": not args.no_push,
        "user_objects": [f"{o.name} ({o.path.name})" for o in objects],
    }
    print(f"grasp benchmark: {settings}", flush=True)
    summary, episodes = grasp.run(
        args.episodes,
        args.objects,
        args.seed,
        None if args.truth else args.model,
        layout=args.layout,
        push=not args.no_push,
        user_objects=objects,
    )
    print(grasp.table(summary, episodes))
    if args.json:
        report = {"benchmark": "grasp", "settings": settings, "cpu": cpu().summary(), **asdict(summary)}
        report["episode_details"] = [asdict(e) for e in episodes]
        print(json.dumps(report))
    return 0


def _warn_of_unknown_classes(model: str, names: list[str]) -> None:
    """A detector that has no class for an object of the user's will never pick it: say so up front."""
    import sys

    from perception.detector.core import Detector
    from perception.installed import find_model

    known = set(Detector(find_model(model)).class_names)
    for name in names:
        if name not in known:
            print(
                f"percept: warning: --model {model} has no class {name!r}, so the loop will leave every "
                f"{name} on the table (make a model for it with percept teach, or run with --truth)",
                file=sys.stderr,
            )
