"""The vocabulary of the model we ship: its class names in id order, one model for both scenes.

The model side owns this list: training writes it into the ONNX metadata (which is what the detector
reads at run time, for any model), and the simulator's scenes label their objects with these ids.
"""

from __future__ import annotations

TABLETOP_CLASSES = ("cube", "cylinder", "mug", "duck", "teddy", "soccerball", "lego", "jenga")
DRIVING_CLASSES = ("car", "pedestrian", "cone")
SHIPPED_CLASSES = TABLETOP_CLASSES + DRIVING_CLASSES


def class_id(name: str) -> int:
    """The shipped model's id for a class name; the error lists the names."""
    try:
        return SHIPPED_CLASSES.index(name)
    except ValueError:
        raise ValueError(f"unknown class {name!r}; classes: {', '.join(SHIPPED_CLASSES)}") from None


def with_user_classes(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The shipped classes, then a user's own in the order given: their ids follow on from ours (a
    model fine-tuned with `--add-class` puts them in the same places)."""
    clash = [n for n in names if n in SHIPPED_CLASSES]
    if clash:
        raise ValueError(f"user class {clash[0]!r} is one of ours already; give your object another name")
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ValueError(f"user class {repeated[0]!r} is given twice; one name per object")
    return SHIPPED_CLASSES + tuple(names)
