"""Labelled detection sets on disk, whoever wrote them, read one way for every tool that scores or trains
on them (`percept bench detect --data`, `percept train --data`, the model card's held-out scores):

- a `percept dataset export` folder (COCO layout, its splits in train.json and val.json) or a COCO JSON
  file of any origin (coco.py);
- an Ultralytics dataset, its data.yaml or the folder holding it, as `yolo val` reads it (yolo.py).

A frame comes as (RGB image, [{"xyxy": [x1, y1, x2, y2], "name": class name}, ...]).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from perception.errors import PerceptError
from perception.labelled import coco, yolo

SPLITS = ("train", "val", "test", "all")  # "all": every frame of the set
EXPECTED = "a `percept dataset export` folder, a COCO JSON file or an Ultralytics data.yaml"


class _Format(NamedTuple):
    """What each format's reader answers, by the same names."""

    open_split: Callable[[Path, str], tuple[list[str], Iterator[tuple[np.ndarray, list[dict[str, Any]]]]]]
    has_split: Callable[[Path, str], bool]
    classes_used: Callable[[Path, str], set[str]]
    image_paths: Callable[[Path, str], list[Path]]


_YOLO = _Format(yolo.open_yolo_split, yolo.has_split, yolo.yolo_classes_used, yolo.yolo_image_paths)
_COCO = _Format(coco.open_coco_split, coco.has_split, coco.coco_classes_used, coco.coco_image_paths)


def _format(path: Path) -> _Format:
    if yolo.is_yolo_dataset(path):
        return _YOLO
    if coco.is_coco_set(path):
        return _COCO
    raise PerceptError(f"dataset {path}: expected {EXPECTED}, found {_what(path)}")


def open_split(
    path: Path, split: str = "val"
) -> tuple[list[str], Iterator[tuple[np.ndarray, list[dict[str, Any]]]]]:
    """The set's class names (in id order; a class may have no box) and its `split` frames, read one at
    a time. An export folder's splits are its JSON files; a COCO file is one set, read whole."""
    return _format(path).open_split(path, split)


def has_split(path: Path, split: str) -> bool:
    """Whether the set keeps `split` apart (an export's val.json, a data.yaml's val: with images)."""
    return _format(path).has_split(path, split)


def training_split(path: Path) -> str:
    """The split a model trains on: "train" where the set has one, else the whole set (a COCO file, an
    export from before the splits)."""
    return "train" if has_split(path, "train") else "all"


def classes_used(path: Path, split: str) -> set[str]:
    """The names of the classes with boxes in the split, read from the labels alone (no image)."""
    return _format(path).classes_used(path, split)


def check(path: Path, split: str) -> None:
    """Every label of the split read and checked, and every image it names found, without decoding one:
    what a training run checks before its first step, so that a bad file stops it then, not at the end."""
    classes_used(path, split)
    images = _format(path).image_paths(path, split)
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
