"""A trained model scored on the frames its training never saw (an export's val split), and the model card
written beside it: what it detects, what it learned from, and how well it does on held-out frames,
class by class, next to the model it started from.

    percept train ... --out models/mine.onnx     writes models/mine.md (this module's card)
    percept teach --object ...                   the whole path, ending with the same card
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAP_CONFIDENCE = 0.001  # mAP reads the whole precision-recall curve


@dataclass
class HeldOut:
    model: str
    model_classes: list[str]  # all the model can name, by id
    frames: int
    map50: float
    map50_95: float
    per_class: dict[str, tuple[int, float, float]]  # class -> (instances, AP@0.5, AP@0.5:0.95)


def score(models: list[Path], folders: list[Path], split: str = "val") -> list[HeldOut]:
    """mAP of each model on the `split` frames of these labelled sets (perception.labelled), over its own classes that have
    instances there; every frame is read once, for all the models."""
    from perception.bench.detection_metrics import evaluate
    from perception.detector.core import Detector
    from perception.detector.defaults import DEFAULT_CONFIDENCE
    from perception.labelled import open_split

    detectors = [Detector(model, confidence=MAP_CONFIDENCE) for model in models]
    truth: list[list[dict[str, Any]]] = []
    predictions: list[list[tuple[np.ndarray, np.ndarray, list[str]]]] = [[] for _ in models]
    for folder in folders:
        _, frames = open_split(folder, split)
        for rgb, boxes in frames:
            truth.append(boxes)
            for detector, found_by in zip(detectors, predictions, strict=True):
                found = detector(rgb)
                found_by.append((found.xyxy, found.scores, list(found.class_names)))
    scores = []
    for model, detector, found_by in zip(models, detectors, predictions, strict=True):
        classes = list(detector.class_names)
        result = evaluate(truth, found_by, classes, set(classes), DEFAULT_CONFIDENCE)
        scores.append(
            HeldOut(
                str(model),
                classes,
                len(truth),
                result.map50,
                result.map50_95,
                {c.name: (c.instances, c.ap50, c.ap50_95) for c in result.classes},
            )
        )
    return scores


def card(model: Path, trained: HeldOut, baseline: HeldOut | None, record: dict[str, Any]) -> str:
    """The model card (Markdown): classes, data, training, held-out scores (beside the baseline's)."""
    classes = trained.model_classes
    lines = [
        f"# {model.name}",
        "",
        f"A percept detector ({len(classes)} classes), trained by `percept train`. Run it with "
        f"`percept launch sim_detect model:={model}` or give it to `percept bench detect`.",
        "",
        "## Classes (id: name)",
        "",
        ", ".join(f"{i}: {name}" for i, name in enumerate(classes)),
        "",
        "## Training",
        "",
        f"- data: {', '.join(record.get('datasets', [])) or '-'} (their train split where they hold one, else all of them)",
        f"- steps: {record.get('steps')}, minutes: {record.get('minutes')}, seed: {record.get('seed')}",
        f"- started from: {_init_name(record.get('init'))}",
        "",
        f"## Held-out frames ({trained.frames}, the val split: never trained on)",
        "",
        f"mAP@0.5 {trained.map50:.3f}, mAP@0.5:0.95 {trained.map50_95:.3f}"
        + (
            f" (the model it started from: {baseline.map50:.3f}, {baseline.map50_95:.3f} on its classes)"
            if baseline
            else ""
        ),
        "",
        "| class | boxes | AP@0.5 | AP@0.5:0.95 |" + (" before: AP@0.5 | change |" if baseline else ""),
        "|---|---|---|---|" + ("---|---|" if baseline else ""),
    ]
    for name, (instances, ap50, ap50_95) in trained.per_class.items():
        row = f"| {name} | {instances} | {ap50:.3f} | {ap50_95:.3f} |"
        if baseline is not None:
            before = baseline.per_class.get(name)
            row += f" {before[1]:.3f} | {ap50 - before[1]:+.3f} |" if before else " new | |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def _init_name(init: Any) -> str:
    if init is None:
        return "random weights"
    if isinstance(init, dict) and "averaged" in init:  # a model soup: the mean of these runs' weights
        return "the mean of the weights of " + " and ".join(_init_name(r) for r in init["averaged"])
    if isinstance(init, dict):
        return f"a model trained on {', '.join(init.get('datasets', []))} for {init.get('steps')} steps"
    return str(init)
