"""A COCO detection set: a `percept dataset export` folder (its splits in train.json and val.json, every
frame in annotations.json) or a COCO JSON file of any origin, its images' file names relative to the
file's folder (as Roboflow and CVAT export them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.errors import PerceptError


def is_coco_set(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() == ".json") or (path.is_dir() and any(path.glob("*.json")))


def has_split(path: Path, split: str) -> bool:
    """An export folder's own split file (a single JSON file has no splits)."""
    return path.is_dir() and (path / ("annotations.json" if split == "all" else f"{split}.json")).is_file()


def open_coco_split(
    path: Path, split: str = "val"
) -> tuple[list[str], Iterator[tuple[np.ndarray, list[dict[str, Any]]]]]:
    """The class names the set declares (its categories, in their order, boxes or none) and its frames
    (RGB) with each one's boxes ({"xyxy", "name"}), read one at a time; a JSON file is read whole,
    whatever `split` says."""
    index, folder = _index(path, split)
    coco = _read(index)
    names = {c["id"]: str(c["name"]) for c in coco["categories"]}
    boxes: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in coco["images"]}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        boxes[a["image_id"]].append({"xyxy": [x, y, x + w, y + h], "name": names[a["category_id"]]})
    return list(names.values()), _frames(coco["images"], boxes, folder, index)


def coco_classes_used(path: Path, split: str) -> set[str]:
    """The names of the classes that have boxes in the split (no image is read)."""
    coco = _read(_index(path, split)[0])
    names = {c["id"]: str(c["name"]) for c in coco["categories"]}
    return {names[a["category_id"]] for a in coco["annotations"]}


def _read(index: Path) -> dict[str, Any]:
    try:
        coco = json.loads(index.read_text())
        names = {c["id"]: str(c["name"]) for c in coco["categories"]}
        images = {image["id"]: str(image["file_name"]) for image in coco["images"]}
        for a in coco["annotations"]:
            if len([float(v) for v in a["bbox"]]) != 4:
                raise ValueError(f"annotation {a.get('id')}: a bbox of {len(a['bbox'])} numbers")
            if a["image_id"] not in images or a["category_id"] not in names:
                raise KeyError(f"annotation {a.get('id')} names an image or a category the file lacks")
    except (ValueError, KeyError, TypeError) as exc:
        raise PerceptError(
            f"dataset {index}: expected COCO detection JSON (images, annotations with bbox, categories), "
            f"found {type(exc).__name__}: {exc}"
        ) from None
    return dict(coco)


def _frames(
    images: list[dict[str, Any]], boxes: dict[int, list[dict[str, Any]]], folder: Path, index: Path
) -> Iterator[tuple[np.ndarray, list[dict[str, Any]]]]:
    for image in images:
        bgr = cv2.imread(str(folder / image["file_name"]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise PerceptError(f"dataset {index}: cannot read image {folder / image['file_name']}")
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), boxes[image["id"]]


def _index(path: Path, split: str) -> tuple[Path, Path]:
    """(the COCO JSON file to read, the folder its image file names are relative to)."""
    if path.is_file():
        return path, path.parent
    index = path / ("annotations.json" if split == "all" else f"{split}.json")
    if not index.is_file():
        found = ", ".join(sorted(p.name for p in path.glob("*.json"))) or "no JSON file"
        whole = " (an export without splits: PATH:all reads it whole)" if found == "annotations.json" else ""
        raise PerceptError(
            f"dataset {path}: expected {index.name} (a COCO export's {split} split), found {found}{whole}"
        )
    return index, path
