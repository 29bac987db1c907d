"""Class maps: what a model's class names mean in our scenes, so that a model trained on other names (a
COCO export) can be scored on our ground truth. A class map sends a model's name to one of the classes
our scenes label, or to nothing (a class our scenes never show). A class of ours that no name maps to is
"not covered" by that model: it is left out of the model's mean, never scored zero.

`--class-map coco` is built in; `--class-map FILE` reads a YAML map `model name: our name` (or null).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from perception.detector.vocabulary import SHIPPED_CLASSES
from perception.errors import PerceptError

# COCO's 80 names that have a counterpart in our scenes; the other 74 map to nothing. COCO has no
# cube, cylinder, duck, lego brick, jenga block or traffic cone.
COCO = {
    "car": "car",
    "person": "pedestrian",
    "cup": "mug",
    "teddy bear": "teddy",
    "sports ball": "soccerball",
}
BUILT_IN = {"coco": COCO}


def load_class_map(
    spec: str, vocabulary: Iterable[str] = SHIPPED_CLASSES, whose: str = "our scenes"
) -> dict[str, str]:
    """A built-in map by name, or a YAML file of `model name: our name` (null drops the name); the
    names it maps to are those of `vocabulary` (ours, or a labelled set's)."""
    if spec in BUILT_IN:
        return dict(BUILT_IN[spec])
    path = Path(spec)
    if not path.is_file():
        raise PerceptError(
            f"class map {spec}: no such file, and no built-in map of that name (built in: {', '.join(BUILT_IN)})"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PerceptError(f"class map {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise PerceptError(f"class map {path}: expected a map of model class name to our class name")
    names = list(vocabulary)
    unknown = sorted(str(v) for v in data.values() if v is not None and v not in names)
    if unknown:
        raise PerceptError(
            f"class map {path}: {unknown[0]!r} is not a class {whose} label; expected one of "
            f"{', '.join(names)} or null"
        )
    return {k: v for k, v in data.items() if v is not None}


def covered(
    model_names: list[str], class_map: dict[str, str] | None, vocabulary: Iterable[str] = SHIPPED_CLASSES
) -> set[str]:
    """The classes of `vocabulary` (ours, or a labelled set's) that a model with these names can
    produce, through the map (or by name)."""
    mapping = class_map or {}
    return {mapping.get(name, name) for name in model_names} & set(vocabulary)
