"""percept dataset export"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from perception.cli.common import non_negative_int, positive_int, renderer_option, seed_arg


def register(verbs: Any) -> None:
    dataset = verbs.add_parser("dataset", help="Make datasets from the simulator.").add_subparsers(
        dest="action", required=True
    )
    p = dataset.add_parser("export", help="Render seeded scenes and write images with box labels.")
    p.add_argument("--scene", required=True, choices=["tabletop", "driving"], help="the scene to render")
    p.add_argument("--frames", type=positive_int, required=True, help="images to write")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--format",
        default="coco",
        choices=["coco", "yolo"],
        help="labels as COCO JSON (annotations.json, train.json, val.json) or YOLO text files "
        "(labels/*.txt, data.yaml)",
    )
    p.add_argument(
        "--seed", type=seed_arg, default=0, help="seed of the first scene (the same seed, the same scenes)"
    )
    p.add_argument("--width", type=positive_int, default=640, help="image width in pixels")
    p.add_argument("--height", type=positive_int, default=480, help="image height in pixels")
    renderer_option(p)
    p.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    p.add_argument(
        "--min-pixels",
        type=non_negative_int,
        default=16,
        help="objects with fewer visible pixels are don't-care regions: COCO iscrowd 1, left out of YOLO labels (default 16)",
    )
    p.add_argument(
        "--object",
        action="append",
        default=[],
        metavar="PATH:NAME[:SCALE]",
        help="your own object (OBJ, STL or URDF) in every tabletop frame, among ours; repeat for more",
    )
    p.add_argument(
        "--val-share",
        type=float,
        default=0.2,
        help="frames (driving: episodes) held out for validation (default 0.2)",
    )
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from perception.errors import PerceptError
    from sim.dataset import ExportSpec, export, progress_bar
    from sim.user_objects import UserObject, check

    try:
        objects = tuple(UserObject.parse(value) for value in args.object)
        spec = ExportSpec(
            args.scene,
            args.frames,
            args.out,
            args.format,
            args.seed,
            args.width,
            args.height,
            args.renderer,
            args.min_pixels,
            objects,
            args.val_share,
        )
    except ValueError as exc:
        raise PerceptError(str(exc)) from None
    if args.out.is_dir() and any(args.out.iterdir()):  # its annotations would be replaced, old frames left
        raise PerceptError(f"dataset {args.out}: the folder is not empty; expected a new or empty folder")
    if args.workers < 0:
        raise PerceptError(
            f"--workers: expected a count of processes (0: one per core), found {args.workers}"
        )
    check(objects)  # a mesh that will not do is named before the folder is made
    try:
        summary = export(spec, args.workers or None, progress_bar)
    except OSError as exc:  # the folder cannot be made or written
        raise PerceptError(f"dataset {args.out}: {exc.strerror or exc}") from None
    print(
        f"wrote {summary['frames']} frames ({summary['val_frames']} held out for validation) with "
        f"{summary['boxes']} boxes to {summary['out']} "
        f"({summary['format']}) in {summary['seconds']} s with {summary['workers']} worker(s)"
    )
    return 0
