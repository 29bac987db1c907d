"""percept teach: from meshes of yours to a detector that finds them, in one command: render a dataset
with your objects among ours (sim/dataset.py), fine-tune the shipped model with their classes added
(perception/train), score it on the held-out frames beside the shipped model and write its card
(perception/bench/held_out.py)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from perception.cli.common import (
    check_new_output,
    overwrite_option,
    positive_float,
    positive_int,
    renderer_option,
    seed_arg,
)
from perception.installed import SHIPPED_MODEL

# Rehearsal (a share of the crops from the scenes the model already knows, as in experience replay):
# fine-tuned on your frames alone, the model forgets what it knew (car AP@0.5 0.94 -> 0.00 in a
# 20-minute run here). Shares of the crops: yours 2, our tabletop 0.5, driving 1.
SHARES = {"yours": 2.0, "tabletop": 0.5, "driving": 1.0}
FRAMES_LEAST = 10  # frames of a scene rendered, so that some are held out
TABLETOP_REPLAY_PART = 4  # a quarter of --replay-frames are our tabletop scenes, the rest driving: a
# 400-frame driving replay (8 episodes) left pedestrians 0.06 AP@0.5 down on the driving suite, and
# frames of your objects among ours still left mugs 0.04 down on the tabletop suite


def register(verbs: Any) -> None:
    p = verbs.add_parser(
        "teach",
        help="From your meshes to a detector for them: render, fine-tune, score (the sim and train extras).",
    )
    p.add_argument(
        "--object",
        action="append",
        required=True,
        metavar="PATH:NAME[:SCALE]",
        help="your object (OBJ, STL or URDF), its class name and scale to metres; repeat for more",
    )
    p.add_argument("--out", type=Path, required=True, help="the ONNX to write (its card beside it, .md)")
    overwrite_option(p, "the model at --out and its card")
    p.add_argument("--frames", type=int, default=800, help="frames to render (default 800)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=positive_float, default=20.0, help="training time (default 20)")
    length.add_argument("--steps", type=int, help="optimiser steps instead of a time budget")
    p.add_argument("--batch", type=positive_int, default=32, help="crops per step (default 32)")
    p.add_argument(
        "--lr",
        type=positive_float,
        default=1e-3,
        help="peak learning rate (default 1e-3: fine-tuning, not from scratch)",
    )
    p.add_argument(
        "--init", default=SHIPPED_MODEL, help=f"the model to start from (default ours, {SHIPPED_MODEL})"
    )
    p.add_argument("--data", type=Path, help="where the dataset goes (default: beside OUT, OUT-data)")
    p.add_argument(
        "--replay-frames",
        type=int,
        default=1600,
        help="frames of our own scenes rendered too and trained on beside yours, so that our classes are "
        "not forgotten: a quarter tabletop, the rest driving (default 1600: 400 and 24 episodes; 0: none)",
    )
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the scenes rendered and of the training")
    renderer_option(p)
    p.add_argument("--workers", type=int, default=0, help="rendering processes (default: one per core)")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (auto: the GPU when torch sees one)")
    p.add_argument("--threads", type=positive_int, default=2, help="torch intra-op threads (default 2)")
    p.set_defaults(func=_teach)


def _teach(args: argparse.Namespace) -> int:
    from perception.cli.train import _device, classes_with, write_card
    from perception.errors import PerceptError
    from perception.installed import find_model, require

    torch = require("torch", "percept teach")
    require("onnx", "percept teach")
    require("trimesh", "percept teach")
    from perception.train.fit import TrainSpec, train
    from sim.dataset import ExportSpec
    from sim.user_objects import UserObject, check

    if args.frames < FRAMES_LEAST:
        raise PerceptError(
            f"--frames: expected at least {FRAMES_LEAST} (some are held out), found {args.frames}"
        )
    if args.replay_frames < 0:
        raise PerceptError(f"--replay-frames: expected 0 (none) or more, found {args.replay_frames}")
    init = find_model(args.init)
    if not init.is_file():
        raise PerceptError(f"--init {args.init}: no such file")
    # Before any rendering: a run of twenty minutes or more made the model it would replace.
    check_new_output(args.out, f"--out {args.out}", args.overwrite, "it and its card")
    try:
        objects = tuple(UserObject.parse(value) for value in args.object)
        data = args.data or args.out.with_name(args.out.stem + "-data")
        spec = ExportSpec(
            "tabletop", args.frames, data, "coco", args.seed, renderer=args.renderer, user_objects=objects
        )
        tabletop_frames = args.replay_frames // TABLETOP_REPLAY_PART
        replay_frames = {"tabletop": tabletop_frames, "driving": args.replay_frames - tabletop_frames}
        replays = {
            scene: ExportSpec(  # the tabletop at seed + 1: not the layouts of your frames, which share the draw
                scene,
                frames,
                data.with_name(f"{data.name}-{scene}"),
                "coco",
                args.seed + (scene == "tabletop"),
                renderer=args.renderer,
            )
            for scene, frames in replay_frames.items()
            if frames >= FRAMES_LEAST
        }
    except ValueError as exc:
        raise PerceptError(str(exc)) from None
    if args.replay_frames > 0 and len(replays) < len(replay_frames):
        skipped = [f"{scene} {frames}" for scene, frames in replay_frames.items() if scene not in replays]
        print(
            f"percept: warning: --replay-frames {args.replay_frames}: too few for {', '.join(skipped)} "
            f"(at least {FRAMES_LEAST} frames a scene, so some are held out): none of those rendered",
            file=sys.stderr,
        )
    added = [o.name for o in objects]
    classes = classes_with(init, added, "--object")
    check(objects)  # each mesh read, measured and decomposed before anything is rendered
    started = time.monotonic()
    print(
        f"1/3 rendering {args.frames} tabletop frames with {', '.join(added)} to {data}",
        flush=True,
    )
    summary = _render(spec, args.workers)
    print(f"    {summary['frames']} frames ({summary['val_frames']} held out), {summary['boxes']} boxes")
    datasets, shares = [data], [SHARES["yours"]]
    for scene, replay in replays.items():
        print(f"    and {replay.frames} {scene} frames of ours to {replay.out}, so that it keeps our classes")
        replayed = _render(replay, args.workers)
        print(
            f"    {replayed['frames']} frames ({replayed['val_frames']} held out), {replayed['boxes']} boxes"
        )
        datasets.append(replay.out)
        shares.append(SHARES[scene])
    rendered_s = time.monotonic() - started
    print(f"    rendered in {rendered_s:.0f} s")
    device = _device(args.device, torch)
    print(
        f"2/3 fine-tuning {init.name} with {', '.join(added)} added, {f'{args.steps} steps' if args.steps else f'{args.minutes:g} min'} on {device}",
        flush=True,
    )
    trainspec = TrainSpec(
        datasets=datasets,
        weights=shares,
        out=args.out,
        steps=args.steps or 0,
        minutes=None if args.steps else args.minutes,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        init=init,
        device=device,
        classes=classes,
    )
    trained = train(trainspec, log=lambda line: print(f"    {line}", flush=True))
    print("3/3 scoring it on the held-out frames", flush=True)
    line = write_card(args.out, datasets, init)
    total = (time.monotonic() - started) / 60
    print(
        f"taught in {total:.1f} min (rendering {rendered_s / 60:.1f}, training {trained['minutes']}): {line}"
    )
    return 0


def _render(spec: Any, workers: int) -> dict[str, Any]:
    """sim.dataset.export, its folder's faults one line (a folder checked writable may still refuse)."""
    from perception.errors import PerceptError
    from sim.dataset import export, progress_bar

    try:
        return dict(export(spec, workers or None, progress_bar))
    except OSError as exc:
        raise PerceptError(f"dataset {spec.out}: cannot write it: {exc.strerror or exc}") from None
