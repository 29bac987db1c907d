"""percept train: train the shipped detector from `percept dataset export` folders."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any


def register(verbs: Any) -> None:
    p = verbs.add_parser(
        "train", help="Train the detector on exported datasets and write ONNX (needs the train extra)."
    )
    p.add_argument(
        "--data",
        type=_dataset,
        action="append",
        required=True,
        metavar="DIR[:SHARE]",
        help="a COCO export folder (repeat), optionally with its relative share of the crops (default 1)",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="ONNX file to write (rewritten at each checkpoint)"
    )
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, help="optimiser steps")
    length.add_argument(
        "--minutes",
        type=float,
        help="train for this long: the steps are set from the speed measured over the first ones",
    )
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda or cuda:N; auto (the default) takes the GPU when torch sees one",
    )
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between exports")
    p.add_argument(
        "--init", type=Path, help="start from the .pt weights an earlier run wrote beside its ONNX"
    )
    p.set_defaults(func=_train)


def _dataset(text: str) -> tuple[Path, float]:
    folder, _, share = text.rpartition(":")
    if folder:
        try:
            value = float(share)
        except ValueError:
            return Path(text), 1.0  # a colon that is part of the path
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(
                f"{text}: the share after ':' must be a number above 0, got {share}"
            )
        return Path(folder), value
    return Path(text), 1.0


def _device(name: str, torch: Any) -> str:
    from perception.errors import PerceptError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PerceptError(f"--device {name}: this torch sees no CUDA GPU (torch {torch.__version__})")
        index = name.partition(":")[2]
        if index and not (index.isdigit() and int(index) < torch.cuda.device_count()):
            raise PerceptError(
                f"--device {name}: expected cuda:0 to cuda:{torch.cuda.device_count() - 1}, found {name}"
            )
        return name
    if name != "cpu":
        raise PerceptError(f"--device: expected auto, cpu, cuda or cuda:N, found {name}")
    return name


def _train(args: argparse.Namespace) -> int:
    from perception.errors import PerceptError

    try:
        import torch
    except ImportError:
        raise PerceptError("percept train needs torch: pip install 'percept[train]'") from None
    from perception.train.fit import TrainSpec, train

    if args.minutes is not None and not (math.isfinite(args.minutes) and args.minutes > 0):
        raise PerceptError(f"--minutes: expected a number of minutes above 0, found {args.minutes}")
    device = _device(args.device, torch)
    for folder, _ in args.data:
        if not (folder / "annotations.json").is_file():
            raise PerceptError(
                f"--data {folder}: no annotations.json there (make one with percept dataset export)"
            )
    spec = TrainSpec(
        datasets=[folder for folder, _ in args.data],
        weights=[share for _, share in args.data],
        out=args.out,
        steps=args.steps or 0,
        minutes=args.minutes,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        checkpoint_every=args.checkpoint_every,
        init=args.init,
        device=device,
    )
    print(f"training on {device}", flush=True)
    summary = train(spec, log=lambda line: print(line, flush=True))
    print(f"trained {summary['steps']} steps in {summary['minutes']} min; wrote {args.out}")
    return 0
