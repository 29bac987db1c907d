"""percept bench mot: our tracker beside its peers on MOTChallenge folders (perception/bench/mot.py)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from perception.cli.common import comma_separated
from perception.errors import PerceptError
from perception.installed import require


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "mot", help="Our tracker beside SORT, ByteTrack, OC-SORT on MOTChallenge folders."
    )
    p.add_argument("sequences", nargs="+", type=Path, help="MOTChallenge sequence folders (det/, gt/)")
    p.add_argument(
        "--trackers",
        default="ours,sort,bytetrack,ocsort,oracle",
        help="comma-separated: ours, sort, bytetrack, ocsort, oracle (the detections ours trusts, given "
        "the ground truth's identities: what perfect association would score)",
    )
    p.add_argument(
        "--protocol",
        choices=["flags", "mot17"],
        default="flags",
        help="flags: gt flag 0 = ignore region (our exports); mot17: pedestrians scored, distractors ignored",
    )
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    trackers = comma_separated(args.trackers)
    from perception.bench import mot

    unknown = sorted(set(trackers) - set(mot.TRACKERS))
    if unknown or not trackers:
        raise PerceptError(f"--trackers: expected some of {', '.join(mot.TRACKERS)}; found {args.trackers!r}")
    require("trackeval", "percept bench mot")
    if set(trackers) & set(mot.PEERS):
        require("trackers", "percept bench mot")
    settings = {
        "sequences": [str(s) for s in args.sequences],
        "trackers": trackers,
        "protocol": args.protocol,
    }
    print(f"MOT benchmark (the same detections for every tracker, TrackEval): {settings}", flush=True)
    try:
        rows, per_sequence = mot.run(args.sequences, trackers, args.protocol)
    except (FileNotFoundError, ValueError) as exc:
        raise PerceptError(str(exc)) from None
    print(mot.table(rows))
    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": "mot",
                    "settings": settings,
                    "results": [asdict(r) for r in rows],
                    "per_sequence": per_sequence,
                }
            )
        )
    return 0
