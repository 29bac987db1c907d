"""A COCO detection set: a `percept dataset export` folder (its splits in train.json and val.json, every
frame in annotations.json) or a COCO JSON file of any origin. An image's file name is taken relative to
the file's folder (Roboflow's exports) or, where it is not there, to `images/` beside the file's folder
and its subset's folder in it (CVAT's: annotations/instances_default.json names images/default/...).

Boxes are checked as they are read: an annotation names an image and a category the file has, and a
box of 4 finite numbers in pixels (a file whose boxes all lie within 0-1 holds normalised ones, and is
refused); a box running off its image is cut at the edge, as Ultralytics does, and one under a pixel
wide or high is left out, each said. A crowd region (`iscrowd`) is kept as a place where detections count neither way."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from perception.errors import PerceptError
from perception.labelled.images import read_rgb, warn_once


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
    sizes = {image["id"]: (image.get("width"), image.get("height")) for image in coco["images"]}
    boxes: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in coco["images"]}
    empty = cut = 0
    for a in coco["annotations"]:
        x, y, w, h = (float(v) for v in a["bbox"])
        xyxy = [x, y, x + w, y + h]
        width, height = sizes[a["image_id"]]
        if isinstance(width, (int, float)) and isinstance(height, (int, float)) and width > 0 and height > 0:
            inside = np.clip(xyxy, 0, [width, height, width, height]).tolist()
            cut += max(abs(a - b) for a, b in zip(inside, xyxy, strict=True)) > 1  # a pixel: rounding
            xyxy = inside
        if xyxy[2] - xyxy[0] < 1 or xyxy[3] - xyxy[1] < 1:  # under a pixel (or none left on its image)
            empty += 1
            continue
        box: dict[str, Any] = {"xyxy": xyxy, "name": names[a["category_id"]]}
        if a.get("iscrowd"):  # a crowd region: a detection on it counts neither way, as in COCO's own scoring
            box["ignore"] = True
        boxes[a["image_id"]].append(box)
    if empty:
        warn_once(f"dataset {index}: {empty} box(es) under a pixel wide or high on their image left out")
    if cut:
        warn_once(f"dataset {index}: {cut} box(es) running off their image cut at its edge")
    return list(names.values()), _frames(coco["images"], boxes, folder, index)


def coco_classes_used(path: Path, split: str) -> set[str]:
    """The names of the classes that have boxes in the split (no image is read)."""
    coco = _read(_index(path, split)[0])
    names = {c["id"]: str(c["name"]) for c in coco["categories"]}
    return {names[a["category_id"]] for a in coco["annotations"] if not a.get("iscrowd")}


def coco_image_paths(path: Path, split: str) -> list[Path]:
    """Where the split's images are looked for (found or not), without reading them."""
    index, folder = _index(path, split)
    return [_image_path(folder, index, str(image["file_name"])) for image in _read(index)["images"]]


def _read(index: Path) -> dict[str, Any]:
    """The file parsed and checked once a process while it is unchanged: a training run asks for its
    classes, its images and its frames in turn, and a COCO file may be hundreds of megabytes."""
    try:
        stat = index.stat()
    except OSError as exc:
        raise PerceptError(f"dataset {index}: cannot read it as JSON: {exc.strerror or exc}") from None
    return _parsed(index, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _parsed(index: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    """(The file's time and size are the cache's key: a file written again is read again.)"""
    try:
        coco = json.loads(index.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise PerceptError(f"dataset {index}: cannot read it as JSON: {reason}") from None
    problem = _problem(coco)
    if problem:
        raise PerceptError(
            f"dataset {index}: expected COCO detection JSON (images, annotations with bbox, categories); {problem}"
        )
    return dict(coco)


def _problem(coco: Any) -> str | None:
    """What makes this not a COCO detection set, naming the entry; None where nothing does."""
    if not isinstance(coco, dict):
        return f"found a JSON {type(coco).__name__}"
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            return f"no {key!r} list"
    for kind, needed in (("categories", ("id", "name")), ("images", ("id", "file_name"))):
        for number, entry in enumerate(coco[kind]):
            missing = [k for k in needed if not isinstance(entry, dict) or k not in entry]
            if missing:
                return f"{kind}[{number}] has no {missing[0]!r}"
    categories = {c["id"] for c in coco["categories"]}
    images = {image["id"] for image in coco["images"]}
    normalised = bool(coco["annotations"])
    for number, a in enumerate(coco["annotations"]):
        which = f"annotation {a.get('id', f'[{number}]') if isinstance(a, dict) else f'[{number}]'}"
        missing = [k for k in ("image_id", "category_id", "bbox") if not isinstance(a, dict) or k not in a]
        if missing:
            return f"{which} has no {missing[0]!r}"
        if a["image_id"] not in images:
            return f"{which}: image_id {a['image_id']!r} names no image"
        if a["category_id"] not in categories:
            return f"{which}: category_id {a['category_id']!r} names no category"
        box = a["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            return f"{which}: bbox {box!r}, expected 4 numbers (x, y, width, height in pixels)"
        if not (all(math.isfinite(v) for v in box) and box[2] >= 0 and box[3] >= 0):
            return f"{which}: bbox {box!r}, expected finite numbers and a width and height of 0 or more"
        normalised = normalised and max(box[0] + box[2], box[1] + box[3]) <= 1.0
    if normalised:
        return "every bbox lies within 0-1: expected pixels (normalised boxes are YOLO's, not COCO's)"
    return None


def _frames(
    images: list[dict[str, Any]], boxes: dict[int, list[dict[str, Any]]], folder: Path, index: Path
) -> Iterator[tuple[np.ndarray, list[dict[str, Any]]]]:
    for image in images:
        yield (
            read_rgb(_image_path(folder, index, str(image["file_name"])), f"dataset {index}"),
            boxes[image["id"]],
        )


def _image_path(folder: Path, index: Path, file_name: str) -> Path:
    """Beside the file (Roboflow), else in images/ or images/<subset>/ beside its folder (CVAT)."""
    subset = index.stem.removeprefix("instances_")
    candidates = [
        folder / file_name,
        folder.parent / "images" / subset / file_name,
        folder.parent / "images" / file_name,
    ]
    return next((c for c in candidates if c.is_file()), candidates[0])


def _index(path: Path, split: str) -> tuple[Path, Path]:
    """(the COCO JSON file to read, the folder its image file names are relative to)."""
    if path.is_file():
        return path, path.parent
    index = path / ("annotations.json" if split == "all" else f"{split}.json")
    if not index.is_file():
        found = sorted(p.name for p in path.glob("*.json"))
        ours = {"annotations.json", "train.json", "val.json"}
        if found == ["annotations.json"]:
            hint = " (an export without splits: PATH:all reads it whole)"
        elif set(found) & ours:
            hint = " (a `percept dataset export` folder holds train, val and all)"
        elif found:
            hint = f" (another tool's file: give it itself, {path / found[0]})"
        else:
            hint = ""
        raise PerceptError(
            f"dataset {path}: expected {index.name} (a COCO export's {split} split), "
            f"found {', '.join(found) or 'no JSON file'}{hint}"
        )
    return index, path
