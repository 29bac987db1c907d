"""percept export: a model in another form; today an int8 copy (perception/train/quantize.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from perception.cli.common import comma_separated
from perception.installed import SHIPPED_MODEL


def register(verbs: Any) -> None:
    p = verbs.add_parser(
        "export",
        help="Write an int8 copy of a detector, calibrated on simulator frames (needs the train extra: onnx).",
    )
    p.add_argument(
        "model",
        help=f"the ONNX detector to quantise (default {SHIPPED_MODEL})",
        nargs="?",
        default=SHIPPED_MODEL,
    )
    p.add_argument(
        "--int8", action="store_true", required=True, help="static int8 quantisation (onnxruntime)"
    )
    p.add_argument("--out", type=Path, required=True, help="the ONNX file to write")
    p.add_argument(
        "--calibration-frames", type=int, default=64, help="rendered frames to calibrate on (default 64)"
    )
    p.add_argument(
        "--scenes",
        type=comma_separated,
        default="tabletop,driving",
        help="scenes they come from (default both)",
    )
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from perception.errors import PerceptError
    from perception.train.quantize import quantize
    from sim.dataset import SCENES

    unknown = [s for s in args.scenes if s not in SCENES]
    if unknown:
        raise PerceptError(f"--scenes: expected some of {', '.join(SCENES)}, found {unknown[0]!r}")
    if not args.out.parent.is_dir():
        raise PerceptError(f"--out {args.out}: no folder {args.out.parent} to write it in")
    result = quantize(args.model, args.out, args.calibration_frames, tuple(args.scenes))
    print(
        f"wrote {result.path} ({result.megabytes} MB): int8, calibrated on {result.frames} rendered frames in "
        f"{result.seconds:g} s; kept in float: {', '.join(result.kept_float)}"
        + ("; input: the uint8 frame, 1 x H x W x 3" if result.frame_input else "")
    )
    return 0
