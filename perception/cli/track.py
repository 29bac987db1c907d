"""percept track run: track a MOTChallenge detection file offline."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path
from typing import Any


def register(verbs: Any) -> None:
    track = verbs.add_parser("track", help="Offline tracking of detection files.").add_subparsers(
        dest="action", required=True
    )
    p = track.add_parser("run", help="Track a MOTChallenge det.txt and write MOTChallenge results.")
    p.add_argument(
        "--det", type=Path, required=True, help="detections: frame,id,left,top,w,h,score[,class,...]"
    )
    p.add_argument("--out", type=Path, required=True, help="results file to write")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the sequence (MOT17: 30 mostly)")
    # Unset options keep the pedestrian settings (perception.track.mot.PEDESTRIAN_PARAMS).
    p.add_argument(
        "--high-score", type=float, help="matched first, may start tracks (default 0.5, ByteTrack's)"
    )
    p.add_argument("--low-score", type=float, help="weakest detection that extends a track (default 0.1)")
    p.add_argument("--new-track-score", type=float, help="least score that starts a track (default 0.6)")
    p.add_argument("--max-lost-s", type=float, help="keep lost tracks this long (default 1.0)")
    p.add_argument(
        "--velocity-noise",
        type=float,
        help="velocity change allowed per frame, relative to box size (default 1/160, ByteTrack's); "
        "more for objects that speed up in the image",
    )
    p.add_argument(
        "--occluded-width-ratio",
        type=float,
        help="read a detection narrower than this share of its track's box, and as tall, as a partly "
        "hidden object (default 0: off; the driving tracker's 0.8 is untested on pedestrians)",
    )
    p.add_argument(
        "--reentry-gap-heights",
        type=float,
        help="lost tracks take back level detections at most this many box heights beside their last "
        "box (default 0: off; the driving tracker uses 1.0)",
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
    written = write_tracks(track_file(detections, tracker, args.fps), args.out)
    print(
        f"tracked {len(detections)} frames: {written} track rows, {tracker.ids_issued} ids; wrote {args.out}"
    )
    return 0
