"""percept track run: track a MOTChallenge detection file offline."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path
from typing import Any


def register(verbs: Any) -> None:
    from perception.track.mot import PEDESTRIAN_PARAMS

    track = verbs.add_parser("track", help="Offline tracking of detection files.").add_subparsers(
        dest="action", required=True
    )
    p = track.add_parser("run", help="Track a MOTChallenge det.txt and write MOTChallenge results.")
    p.add_argument(
        "--det", type=Path, required=True, help="detections: frame,id,left,top,w,h,score[,class,...]"
    )
    p.add_argument("--out", type=Path, required=True, help="results file to write (MOTChallenge rows)")
    p.add_argument(
        "--fps", type=float, default=30.0, help="frame rate of the sequence (default 30, as most of MOT17)"
    )
    # Unset options keep the pedestrian settings; their defaults are read from them, not written twice.
    pedestrian = PEDESTRIAN_PARAMS
    p.add_argument(
        "--high-score",
        type=float,
        help=f"matched first, may start tracks (default {pedestrian.high_score:g}, ByteTrack's)",
    )
    p.add_argument(
        "--low-score",
        type=float,
        help=f"weakest detection that extends a track (default {pedestrian.low_score:g})",
    )
    p.add_argument(
        "--new-track-score",
        type=float,
        help=f"least score that starts a track (default {pedestrian.new_track_score:g})",
    )
    p.add_argument(
        "--max-lost-s",
        type=float,
        help=f"keep lost tracks this many seconds (default {pedestrian.max_lost_s:g})",
    )
    p.add_argument(
        "--velocity-noise",
        type=float,
        help=f"velocity change allowed per frame, relative to box size (default {pedestrian.velocity_noise:.5g}, "
        "ByteTrack's 1/160); more for objects that speed up in the image",
    )
    p.add_argument(
        "--occluded-width-ratio",
        type=float,
        help="read a detection narrower than this share of its track's box, and as tall, as a partly "
        f"hidden object (default {pedestrian.occluded_width_ratio:g}: off; the driving tracker's 0.8 is "
        "untested on pedestrians)",
    )
    p.add_argument(
        "--reentry-gap-heights",
        type=float,
        help="lost tracks take back level detections at most this many box heights beside their last "
        f"box (default {pedestrian.reentry_gap_heights:g}: off; the driving tracker uses 1.0)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from perception.errors import PerceptError
    from perception.track import ByteTracker, TrackerParams
    from perception.track.mot import PEDESTRIAN_PARAMS, read_detections, track_file, write_tracks

    if not args.fps > 0:
        raise PerceptError(f"--fps: expected a frame rate above 0, found {args.fps}")
    try:
        detections = read_detections(args.det)
        tunable = {f.name for f in fields(TrackerParams)}
        given = {name: value for name, value in vars(args).items() if name in tunable and value is not None}
        params = replace(PEDESTRIAN_PARAMS, default_dt=1.0 / args.fps, **given)
    except ValueError as exc:
        raise PerceptError(str(exc)) from None
    tracker = ByteTracker(params)
    try:
        out = open(args.out, "w")  # noqa: SIM115 (closed below): before tracking, so a bad path fails at once
    except OSError as exc:
        raise PerceptError(f"--out {args.out}: cannot write it ({exc.strerror})") from None
    with out:
        written, identities = write_tracks(track_file(detections, tracker, args.fps), out)
    print(
        f"tracked {len(detections)} frames: {written} track rows, {identities} identities; wrote {args.out}"
    )
    return 0
