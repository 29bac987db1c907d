"""percept train: train the shipped detector from `percept dataset export` folders."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from perception.cli.common import (
    check_new_output,
    image_size,
    overwrite_option,
    positive_float,
    positive_int,
    seed_arg,
)


def register(verbs: Any) -> None:
    p = verbs.add_parser(
        "train", help="Train the detector on exported datasets and write ONNX (needs the train extra)."
    )
    p.add_argument(
        "--data",
        type=_dataset,
        action="append",
        default=[],
        metavar="PATH[:SHARE]",
        help="a labelled set (repeat): a `percept dataset export` folder, a COCO JSON file or an "
        "Ultralytics data.yaml, optionally with its relative share of the crops (default 1); trained on "
        "its train split where it has one, scored on its val split for the model card",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="ONNX file to write (rewritten at each checkpoint)"
    )
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument(
        "--steps", type=int, help="optimiser steps (0 with --init: export those weights as they are)"
    )
    length.add_argument(
        "--minutes",
        type=float,
        help="train for this long: the steps are set from the speed measured over the first 300, and "
        "again at every checkpoint as the speed drifts",
    )
    p.add_argument("--batch", type=positive_int, default=32, help="crops per step (default 32)")
    p.add_argument("--lr", type=positive_float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument(
        "--seed", type=seed_arg, default=0, help="seed of the weights' start, the crops and their order"
    )
    p.add_argument("--threads", type=positive_int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda or cuda:N; auto (the default) takes the GPU when torch sees one",
    )
    p.add_argument(
        "--input-size",
        type=image_size,
        default=(480, 640),
        metavar="H[xW]",
        help="the exported model's input (default 480x640, the training crops' scale); larger finds "
        "smaller objects, in more time",
    )
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="export with dynamic height and width (the input size is then the detector's default)",
    )
    p.add_argument(
        "--checkpoint-every", type=positive_int, default=500, help="steps between exports (default 500)"
    )
    p.add_argument(
        "--init",
        type=Path,
        help="start from these weights: the .pt an earlier run wrote beside its ONNX, or an ONNX file "
        "percept train wrote (models/percept.onnx: fine-tune the shipped model on your own frames)",
    )
    overwrite_option(p, "the model at --out and its card")
    p.add_argument(
        "--resume",
        action="store_true",
        help="go on from the last checkpoint of this --out (OUT.resume.pt), with the same data and settings",
    )
    p.add_argument(
        "--add-class",
        action="append",
        default=[],
        metavar="NAME",
        help="a class of your own (repeat), after the --init model's: its head grows a row for each",
    )
    p.add_argument(
        "--quantization-aware",
        action="store_true",
        help="fine-tune --init as its int8 export will run (int8 weights and activations simulated), "
        "then quantise with percept export --int8; use a low --lr, as for any fine-tune (measured: "
        "docs/benchmarks.md)",
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
    from perception import labelled
    from perception.errors import PerceptError
    from perception.installed import find_model, require

    torch = require("torch", "percept train")
    require("onnx", "percept train")
    from perception.train.fit import TrainSpec, train

    if args.minutes is not None and not (math.isfinite(args.minutes) and args.minutes > 0):
        raise PerceptError(f"--minutes: expected a number of minutes above 0, found {args.minutes}")
    if args.steps is not None and args.steps < 0:
        raise PerceptError(f"--steps: expected 0 or more, found {args.steps}")
    if args.init is not None:
        args.init = find_model(args.init)  # the shipped model by name too (models/percept.onnx)
    if args.init is not None and not args.init.is_file():
        raise PerceptError(f"--init {args.init}: no such file")
    if not args.resume:  # a resumed run goes on writing its own --out
        check_new_output(args.out, f"--out {args.out}", args.overwrite, "it and its card")
    if args.steps == 0 and args.init is None:
        raise PerceptError("--steps 0 exports the --init weights as they are: give --init")
    if args.quantization_aware and args.init is None:
        raise PerceptError("--quantization-aware fine-tunes a trained model: give --init")
    if not args.data and args.steps != 0:
        raise PerceptError("--data: give at least one labelled set to train on")
    classes = classes_with(args.init, args.add_class, "--add-class")
    device = _device(args.device, torch)
    for source, _ in args.data:  # a wrong path or a bad file, before any training starts
        labelled.check(source, labelled.training_split(source))
        if labelled.has_split(source, "val"):  # the model card's frames, scored at the end
            labelled.check(source, "val")
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
        input_hw=args.input_size,
        dynamic=args.dynamic,
        classes=classes,
        resume=args.resume,
        quantization_aware=args.quantization_aware,
    )
    print(f"training on {device}", flush=True)
    summary = train(spec, log=lambda line: print(line, flush=True))
    print(f"trained {summary['steps']} steps in {summary['minutes']} min; wrote {args.out}")
    if spec.datasets and summary["steps"]:
        card = write_card(args.out, spec.datasets, args.init)
        if card is not None:
            print(f"held-out frames: {card}")
    return 0


def classes_with(init: Path | None, added: list[str], option: str) -> tuple[str, ...]:
    """The classes of a model trained from `init` (ours without one) with `added` after them; a name
    it has already, or one given twice, is refused, naming `option`."""
    from perception.detector.vocabulary import SHIPPED_CLASSES, first_clash
    from perception.errors import PerceptError
    from perception.train.fit import initial_classes

    had = initial_classes(init) if init is not None else SHIPPED_CLASSES
    clash = first_clash(had, added)
    if clash is not None:
        name, earlier = clash
        if earlier not in had:
            raise PerceptError(
                f"{option} {name}: given twice" + ("" if earlier == name else f" (as {earlier})")
            )
        like = "that class" if earlier == name else f"{earlier!r}, the same name but for case,"
        raise PerceptError(f"{option} {name}: the model has {like} already (its classes: {', '.join(had)})")
    return had + tuple(added)


def write_card(model: Path, datasets: list[Path], init: Path | None) -> str | None:
    """Score the model on the datasets' val splits (beside the model it started from), write its card
    beside it (MODEL.md), and return a one-line summary; None where no dataset has a val split."""
    import json

    from perception import labelled
    from perception.bench import held_out
    from perception.train.fit import exported_beside
    from perception.train.metadata import model_metadata

    with_split = [source for source in datasets if labelled.has_split(source, "val")]
    if not with_split:
        print(
            "no val split with images in the data (a COCO file, an export made with --val-share 0 or "
            "before splits, a data.yaml whose val is empty): no held-out scores, no model card"
        )
        return None
    exported = exported_beside(init) if init is not None else None  # a .pt does not run: its export does
    baseline_model = [exported] if exported is not None and exported.resolve() != model.resolve() else []
    trained, *rest = held_out.score([model, *baseline_model], with_split)
    baseline = rest[0] if rest else None
    record = json.loads(model_metadata(model).get("training", "{}"))  # this run's, just written
    path = model.with_suffix(".md")
    path.write_text(held_out.card(model, trained, baseline, record))
    added = [c for c in trained.per_class if baseline is None or c not in baseline.per_class]
    parts = [f"mAP@0.5 {trained.map50:.3f}, mAP@0.5:0.95 {trained.map50_95:.3f} over {trained.frames} frames"]
    for name in added:
        instances, ap50, ap50_95 = trained.per_class[name]
        parts.append(f"{name}: AP@0.5 {ap50:.3f}, AP@0.5:0.95 {ap50_95:.3f} ({instances} boxes)")
    if baseline is not None and init is not None:
        old = [c for c in trained.per_class if c in baseline.per_class]
        change = np.mean([trained.per_class[c][1] - baseline.per_class[c][1] for c in old]) if old else 0.0
        parts.append(f"our classes: AP@0.5 {change:+.3f} on average against {init.name}")
    return "; ".join(parts) + f"; card: {path}"
