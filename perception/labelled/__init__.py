"""Labelled detection sets on disk, whoever wrote them, read one way for every tool that scores or trains
on them (`percept bench detect --data`, `percept train --data`, the model card's held-out scores):

- a `percept dataset export` folder (COCO layout, its splits in train.json and val.json) or a COCO JSON
  file of any origin (coco.py);
- an Ultralytics dataset, its data.yaml or the folder holding it, as `yolo val` reads it (yolo.py).

A frame comes as (RGB image, [{"xyxy": [x1, y1, x2, y2], "name": class name}, ...]).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from perception.errors import PerceptError
from perception.labelled.coco import coco_classes_used, coco_image_paths, is_coco_set, open_coco_split
from perception.labelled.coco import has_split as coco_has_split
from perception.labelled.yolo import has_split as yolo_has_split
from perception.labelled.yolo import is_yolo_dataset, open_yolo_split, yolo_classes_used, yolo_image_paths

SPLITS = ("train", "val", "test", "all")  # "all": every frame of the set
EXPECTED = "a `percept dataset export` folder, a COCO JSON file or an Ultralytics data.yaml"


def open_split(
    path: Path, split: str = "val"
) -> tuple[list[str], Iterator[tuple[np.ndarray, list[dict[str, Any]]]]]:
    """The set's class names (in id order; a class may have no box) and its `split` frames, read one at
    a time. An export folder's splits are its JSON files; a COCO file is one set, read whole."""
    if is_yolo_dataset(path):
        return open_yolo_split(path, split)
    if is_coco_set(path):
        return open_coco_split(path, split)
    raise PerceptError(f"dataset {path}: expected {EXPECTED}, found {_what(path)}")


def has_split(path: Path, split: str) -> bool:
    """Whether the set keeps `split` apart (an export's val.json, a data.yaml's val:)."""
    return yolo_has_split(path, split) if is_yolo_dataset(path) else coco_has_split(path, split)


def training_split(path: Path) -> str:
    """The split a model trains on: "train" where the set has one, else the whole set (a COCO file, an
    export from before the splits)."""
    return "train" if has_split(path, "train") else "all"


def classes_used(path: Path, split: str) -> set[str]:
    """The names of the classes with boxes in the split, read from the labels alone (no image)."""
    if is_yolo_dataset(path):
        return yolo_classes_used(path, split)
    if is_coco_set(path):
        return coco_classes_used(path, split)
    raise PerceptError(f"dataset {path}: expected {EXPECTED}, found {_what(path)}")


def check(path: Path, split: str) -> None:
    """Every label of the split read and checked, and every image it names found, without decoding one:
    what a training run checks before its first step, so that a bad file stops it then, not at the end."""
    classes_used(path, split)
    images = yolo_image_paths(path, split) if is_yolo_dataset(path) else coco_image_paths(path, split)
    missing = [image for image in images if not image.is_file()]
    if missing:
        raise PerceptError(
            f"dataset {path}: {len(missing)} of its {split} split's {len(images)} images not found: {missing[0]}"
            + (", ..." if len(missing) > 1 else "")
        )


def set_name(path: Path) -> str:
    """A short name for logs and cards: the folder's, or the folder holding the file ("." named too)."""
    path = path.absolute()
    return path.parent.name if path.is_file() else path.name


def _what(path: Path) -> str:
    if path.is_dir():
        below = sorted(
            [*path.glob("*/*.json"), *path.glob("*/data.yaml")]
        )  # CVAT's annotations/, Roboflow's valid/
        found = f" ({below[0].relative_to(path)} is one folder down: give it itself)" if below else ""
        return f"a folder with no JSON file or data.yaml{found}"
    return "a file of another kind" if path.exists() else "nothing there"
