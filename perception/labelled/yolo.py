"""An Ultralytics dataset (its `data.yaml`) read as a labelled set, as `yolo val data=...` reads it, so
the frames a YOLO user has labelled (and what `percept dataset export --format yolo` writes) can be
scored on and trained on.

What is read, following Ultralytics' own loader:
- `path` is the dataset's root (relative: to the working directory where that exists, else to the
  YAML's folder); without it, the YAML's folder. A split (`train`, `val`, `test`) is a folder of
  images (searched recursively), a text file listing images (a line starting `./` is relative to the
  list's folder), or a list of either. A split starting `../` that is not found is tried without it:
  Roboflow's exports write `../train/images` for a folder beside the YAML, which Ultralytics accepts.
- An image's labels are the `.txt` of the same name where the last `/images/` of its path becomes
  `/labels/` (beside the image when its path has none); no file is an image without objects.
- A label row is `class cx cy w h`, normalised to the image's size, or a polygon `class x1 y1 x2 y2 ...`
  (a segmentation label) read as its bounding box; a box is cut at the image's edges. Names come from
  `names` (a list, or a mapping of class ids); `nc` alone names them `class_0`, `class_1`, ...

Where Ultralytics skips a malformed label file with a warning, this refuses it naming the file and the
line: a benchmark that quietly scores fewer boxes than the set holds is worse than one that stops.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from perception.errors import PerceptError
from perception.labelled.images import read_rgb, warn_once

YAML_SPLITS = ("train", "val", "test")  # the keys a data.yaml names its splits by
IMAGE_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm"}


def is_yolo_dataset(path: Path) -> bool:
    """A data.yaml file, or a folder holding one (that holds no COCO split files)."""
    if path.is_file():
        return path.suffix.lower() in (".yaml", ".yml")
    return path.is_dir() and (path / "data.yaml").is_file() and not any(path.glob("*.json"))


def has_split(path: Path, split: str) -> bool:
    """Whether the split names images (a `val:` whose list is empty, as a small export writes, does not)."""
    config = _config(path)
    data = _read_yaml(config)
    wanted = [s for s in YAML_SPLITS if data.get(s)] if split == "all" else [split]
    root = _root(data, config)
    return any(data.get(s) and _images(data[s], root, config) for s in wanted)


def open_yolo_split(
    path: Path, split: str = "val"
) -> tuple[list[str], Iterator[tuple[np.ndarray, list[dict[str, Any]]]]]:
    """The dataset's class names (in id order) and its `split` frames (RGB) with each one's boxes
    ({"xyxy", "name"}), read one at a time; "all" is every split the YAML lists."""
    names, images = _split_images(path, split)
    return names, _frames(images, names, _config(path))


def yolo_classes_used(path: Path, split: str) -> set[str]:
    """The names of the classes with boxes in the split, from its label files alone (every row checked
    as reading the frames checks it, so a bad one is found before a training run, not after)."""
    names, images = _split_images(path, split)
    return {names[cls] for image in images for cls, _ in _rows(label_path(image), names)}


def yolo_image_paths(path: Path, split: str) -> list[Path]:
    return _split_images(path, split)[1]


def _config(path: Path) -> Path:
    """The data.yaml, as an absolute path: images are named from it, and their labels found by the
    folders in their path (a relative "images/a.png" has no "/images/" in it)."""
    path = path.absolute()
    return path / "data.yaml" if path.is_dir() else path


def _split_images(path: Path, split: str) -> tuple[list[str], list[Path]]:
    config = _config(path)
    data = _read_yaml(config)
    names = _names(data, config)
    root = _root(data, config)
    wanted = [s for s in YAML_SPLITS if data.get(s)] if split == "all" else [split]
    for name in wanted:
        if not data.get(name):
            listed = ", ".join(s for s in YAML_SPLITS if data.get(s)) or "none"
            raise PerceptError(f"dataset {config}: expected a {name!r} split, found {listed}")
    images = [image for name in wanted for image in _images(data[name], root, config)]
    if not images:
        raise PerceptError(f"dataset {config}: expected images in its {split} split, found none")
    if not any(label_path(image).is_file() for image in images):
        warn_once(
            f"dataset {config}: no label file for any of the {len(images)} images of its {split} split "
            f"(looked for {label_path(images[0])}, and so on): every image is read as one with no objects"
        )
    return names, images


def _read_yaml(config: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise PerceptError(f"dataset {config}: cannot read it as YAML: {reason}") from None
    if not isinstance(data, dict):
        raise PerceptError(
            f"dataset {config}: expected an Ultralytics data.yaml (a mapping with names and splits), "
            f"found {type(data).__name__}"
        )
    return data


def _names(data: dict[str, Any], config: Path) -> list[str]:
    names = _named(data, config)
    count = data.get("nc")
    if count is not None and count != len(names):
        raise PerceptError(
            f"dataset {config}: nc {count!r} and its {len(names)} names, expected the same count"
        )
    return names


def _named(data: dict[str, Any], config: Path) -> list[str]:
    names = data.get("names")
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            ids = []
        if ids != list(range(len(names))):
            raise PerceptError(
                f"dataset {config}: names: expected class ids 0 to {len(names) - 1}, found {list(names)}"
            )
        return [str(names[i] if i in names else names[str(i)]) for i in ids]
    count = data.get("nc")
    if names is None and isinstance(count, int) and count > 0:
        return [f"class_{i}" for i in range(count)]
    raise PerceptError(
        f"dataset {config}: expected names (a list, or class ids to names) or nc, found neither"
    )


def _root(data: dict[str, Any], config: Path) -> Path:
    given = data.get("path")
    if not given:
        return config.parent
    root = Path(str(given)).expanduser()
    if root.is_absolute() or root.exists():  # relative: to the working directory first, as Ultralytics
        return root.absolute()
    return config.parent / root


def _images(entry: Any, root: Path, config: Path) -> list[Path]:
    images: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        where = root / str(item)
        if not where.exists() and str(item).startswith("../"):
            where = root / str(item)[3:]  # Roboflow's exports
        if where.is_dir():
            images += sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif where.is_file() and where.suffix.lower() == ".txt":
            lines = [line.strip() for line in _text(where, f"dataset {config}: image list").splitlines()]
            images += [  # "./a.png" from the list's folder; another relative name from the working one
                where.parent / line[2:] if line.startswith("./") else Path(line).absolute()
                for line in lines
                if line
            ]
        elif where.is_file() and where.suffix.lower() in IMAGE_SUFFIXES:
            images.append(where)
        else:
            raise PerceptError(
                f"dataset {config}: split entry {item!r}: expected a folder of images or a list of them, "
                f"found nothing at {where}"
            )
    return images


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last folder named images in the path becomes labels, the suffix .txt."""
    parts = list(image.parts)
    folders = [i for i, part in enumerate(parts[:-1]) if part == "images"]
    if folders:
        parts[folders[-1]] = "labels"
    return Path(*parts).with_suffix(".txt")


def _text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PerceptError(
            f"{what} {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def _frames(
    images: list[Path], names: list[str], config: Path
) -> Iterator[tuple[np.ndarray, list[dict[str, Any]]]]:
    for image in images:
        rgb = read_rgb(image, f"dataset {config}")
        height, width = rgb.shape[:2]
        scale = np.array([width, height, width, height])
        boxes = [
            {"xyxy": (box * scale).tolist(), "name": names[cls]}
            for cls, box in _rows(label_path(image), names)
        ]
        yield rgb, boxes


def _rows(labels: Path, names: list[str]) -> list[tuple[int, np.ndarray]]:
    """A label file's boxes, (class id, x1 y1 x2 y2 normalised), each row checked; a row repeated is read
    once, as Ultralytics reads it, and said."""
    if not labels.is_file():
        return []
    rows: dict[tuple[float, ...], tuple[int, np.ndarray]] = {}
    repeated = empty = 0
    for number, line in enumerate(_text(labels, "labels").splitlines(), 1):
        if not line.strip():
            continue
        where = f"labels {labels}, line {number}"
        cls = _class_id(line, names, where)
        values = _numbers(line, where)
        if len(values) == 5:
            _, cx, cy, w, h = values
            corners = np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy + h / 2]])
        elif len(values) >= 7 and len(values) % 2 == 1:
            corners = np.array(values[1:]).reshape(-1, 2)
        else:
            raise PerceptError(
                f"{where}: expected class cx cy w h, or class and polygon points, found {len(values)} numbers"
            )
        if not all(0 <= v <= 1 for v in values[1:]):  # Ultralytics' own check, on the numbers as written
            raise PerceptError(
                f"{where}: expected coordinates normalised to 0-1, found {line.strip()[:80]!r}"
            )
        if tuple(values) in rows:
            repeated += 1
            continue
        box = np.clip(np.r_[corners.min(axis=0), corners.max(axis=0)], 0, 1)
        if box[2] <= box[0] or box[3] <= box[1]:  # no area: no detection could ever match it
            empty += 1
            continue
        rows[tuple(values)] = (cls, box)
    if repeated:
        warn_once(f"labels {labels}: {repeated} repeated row(s) read once")
    if empty:
        warn_once(f"labels {labels}: {empty} box(es) of no width or height left out")
    return list(rows.values())


def _numbers(line: str, where: str) -> list[float]:
    try:
        return [float(v) for v in line.split()]
    except ValueError:
        raise PerceptError(f"{where}: expected numbers, found {line.strip()[:80]!r}") from None


def _class_id(line: str, names: list[str], where: str) -> int:
    cls = _numbers(line, where)[0]
    if not (math.isfinite(cls) and cls == int(cls) and 0 <= cls < len(names)):
        raise PerceptError(f"{where}: expected a class id from 0 to {len(names) - 1}, found {cls:g}")
    return int(cls)
