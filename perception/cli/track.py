"""percept track run: track a MOTChallenge detection file offline."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any


def register(verbs: Any) -> None:
    from perception.track.mot import DEFAULT_FPS, PEDESTRIAN_PARAMS

    track = verbs.add_parser("track", help="Offline tracking of detection files.").add_subparsers(
        dest="action", required=True
    )
    p = track.add_parser("run", help="Track a MOTChallenge det.txt and write MOTChallenge results.")
    p.add_argument(
        "--det", type=Path, required=True, help="detections: frame,id,left,top,w,h,score[,class,...]"
    )
    p.add_argument("--out", type=Path, required=True, help="results file to write (MOTChallenge rows)")
    p.add_argument(
        "--fps",
        type=float,
        help=f"frame rate of the sequence (default: the frameRate of the seqinfo.ini of the MOTChallenge "
        f"folder the detections are in, else {DEFAULT_FPS:g}, as most of MOT17)",
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
        help="velocity change allowed per 0.1 s, relative to box size (default "
        f"{pedestrian.velocity_noise:.5g}, ByteTrack's 1/160); more for objects that speed up in the image",
    )
    p.add_argument(
        "--gate-sigmas",
        type=float,
        help="widen each track's box by this many standard deviations of its predicted centre before "
        f"matching (default {pedestrian.gate_sigmas:g}: off, as in crowds a widened gate takes the next "
        "person's box; the driving tracker uses 2)",
    )
    p.add_argument(
        "--buffer",
        type=float,
        help="boxes grow by this share of their size each side before IoU, per 0.1 s between frames "
        f"(default {pedestrian.buffer:g}, C-BIoU's)",
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
    import numpy as np

    from perception.errors import PerceptError
    from perception.track import ByteTracker, TrackerParams
    from perception.track.mot import PEDESTRIAN_PARAMS, read_detections, track_file, write_tracks

    fps, source = (args.fps, "--fps") if args.fps is not None else _sequence_rate(args.det)
    if not fps > 0:
        raise PerceptError(f"{source}: expected a frame rate above 0, found {fps}")
    try:
        detections = read_detections(args.det)
        tunable = {f.name for f in fields(TrackerParams)}
        given = {name: value for name, value in vars(args).items() if name in tunable and value is not None}
        params = replace(PEDESTRIAN_PARAMS, **given)
    except ValueError as exc:
        raise PerceptError(str(exc)) from None
    scores = np.concatenate([rows[:, 4] for rows in detections.values()]) if detections else np.zeros(0)
    if len(scores) and (scores.min() < 0 or scores.max() > 1):
        # DPM's and ACF's public detections (MOT15-17) carry classifier margins, not probabilities.
        print(
            f"percept: warning: detections {args.det}: scores run from {scores.min():g} to {scores.max():g}, "
            f"not 0 to 1: the thresholds (--high-score {params.high_score:g}, --new-track-score "
            f"{params.new_track_score:g}, --low-score {params.low_score:g}, each 0 to 1) apply to these "
            "numbers as they are: rescale the scores to 0-1 to place them otherwise",
            file=sys.stderr,
        )
    unused = int(np.sum(scores < params.low_score))
    tracker = ByteTracker(params)
    try:
        out = open(args.out, "w")  # noqa: SIM115 (closed below): before tracking, so a bad path fails at once
    except OSError as exc:
        raise PerceptError(f"--out {args.out}: cannot write it ({exc.strerror})") from None
    with out:
        written, identities = write_tracks(track_file(detections, tracker, fps), out)
    print(
        f"tracked {len(detections)} frames at {fps:g} frames/s ({source}): {len(scores)} detections "
        f"({unused} under --low-score {params.low_score:g}, not used), {written} track rows, "
        f"{identities} identities; wrote {args.out}"
    )
    return 0


def _sequence_rate(det: Path) -> tuple[float, str]:
    """The frame rate of the MOTChallenge folder holding `det` (SEQ/det/det.txt: SEQ/seqinfo.ini), and
    where it came from; DEFAULT_FPS when it gives none."""
    from perception.errors import PerceptError
    from perception.track.mot import DEFAULT_FPS, sequence_info

    folder = det.resolve().parent.parent
    try:
        rate, _ = sequence_info(folder)
    except ValueError as exc:
        raise PerceptError(str(exc)) from None
    return (DEFAULT_FPS, "the default") if rate is None else (rate, str(folder / "seqinfo.ini"))
