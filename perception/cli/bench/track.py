"""percept bench track: the tracker on simulated driving or crowd sequences (perception/bench/track.py)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from perception.bench.machine import cpu
from perception.bench.track import RATES, SCENES, SMALL_OBJECT_ROWS, SMALL_OBJECT_ZOOM
from perception.cli.common import non_negative_float, output_folder, rows_arg, seed_arg, zoom_arg
from perception.errors import PerceptError
from perception.installed import SHIPPED_MODEL, require


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "track", help="The tracker on simulated driving or crowd sequences: MOTA, IDF1, HOTA (TrackEval)."
    )
    p.add_argument(
        "--scene",
        choices=SCENES,
        default="driving",
        help="driving: road users ahead of a car's camera; crowd: people crossing a plaza before a still "
        "camera, scored as MOTChallenge scores people (default driving)",
    )
    p.add_argument(
        "--sequences",
        type=int,
        default=12,
        help="sequences: 10 s of driving or 20 s of crowd each (12 driving: two minutes; single "
        "sequences range 0.83-0.98 MOTA)",
    )
    p.add_argument(
        "--seed", type=seed_arg, default=1000, help="scene seed (keep it apart from training seeds)"
    )
    p.add_argument(
        "--rate",
        type=float,
        help=f"camera frames/s (default {RATES['driving']:g} for driving: launch/driving_tracking.yaml's rate, "
        f"and KITTI's; {RATES['crowd']:g} for the crowd, as most MOTChallenge sequences)",
    )
    p.add_argument(
        "--model", default=SHIPPED_MODEL, help=f"the detector in the loop (default {SHIPPED_MODEL})"
    )
    p.add_argument(
        "--small-object-zoom",
        type=zoom_arg,
        default=SMALL_OBJECT_ZOOM,
        metavar="Z",
        help="the detector's second pass for small objects, on the frame scaled by Z (default "
        f"{SMALL_OBJECT_ZOOM}: launch/driving_tracking.yaml's; above 1); 0: none",
    )
    p.add_argument(
        "--small-object-rows",
        type=rows_arg,
        default=SMALL_OBJECT_ROWS,
        metavar="TOP,BOTTOM",
        help=f"the image rows that pass covers (default {SMALL_OBJECT_ROWS[0]},{SMALL_OBJECT_ROWS[1]}: "
        "around the horizon)",
    )
    p.add_argument(
        "--truth", action="store_true", help="ground-truth boxes with noise instead of the detector"
    )
    p.add_argument(
        "--drop", type=non_negative_float, default=0.1, help="with --truth: share of boxes dropped"
    )
    p.add_argument(
        "--jitter",
        type=non_negative_float,
        default=0.05,
        help="with --truth: box edge noise, share of its size",
    )
    p.add_argument(
        "--false-positives", type=non_negative_float, default=0.5, help="with --truth: per frame, on average"
    )
    p.add_argument(
        "--write-mot",
        type=output_folder,
        metavar="DIR",
        help="also write each sequence as a MOTChallenge folder here",
    )
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    require("trackeval", "percept bench track")
    from perception.bench import track

    if args.sequences < 1:
        raise PerceptError(f"--sequences: expected at least 1, found {args.sequences}")
    if args.rate is None:
        args.rate = RATES[args.scene]
    if not 1 <= args.rate <= 60:
        raise PerceptError(f"--rate: expected 1-60 frames/s, found {args.rate}")
    noise = {"drop": args.drop, "jitter": args.jitter, "false_positives": args.false_positives}
    settings = {
        "scene": args.scene,
        "sequences": args.sequences,
        "seed": args.seed,
        "rate": args.rate,
        "boxes": "ground truth with noise" if args.truth else args.model,
    }
    if args.truth:
        settings["noise"] = "like MOTChallenge's public detections" if args.scene == "crowd" else noise
    elif args.scene == "driving":
        settings |= {"small_object_zoom": args.small_object_zoom, "small_object_rows": args.small_object_rows}
    else:
        args.small_object_zoom = 0.0  # the second pass covers the driving scene's horizon
    print(f"track benchmark: {settings}", flush=True)
    summary, per_sequence = track.run(
        args.sequences,
        args.seed,
        None if args.truth else args.model,
        noise,
        rate=args.rate,
        write_mot=args.write_mot,
        small_object_zoom=args.small_object_zoom,
        small_object_rows=args.small_object_rows,
        scene=args.scene,
    )
    print(track.table(summary, per_sequence, args.scene))
    if args.write_mot is not None:
        protocol = " --protocol mot17" if args.scene == "crowd" else ""
        print(
            f"wrote MOTChallenge folders to {args.write_mot}: percept bench mot {args.write_mot}/*{protocol}"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": "track",
                    "settings": settings,
                    "cpu": cpu().summary(),  # the update's time depends on it
                    **asdict(summary),
                    "per_sequence": per_sequence,
                }
            )
        )
    return 0
