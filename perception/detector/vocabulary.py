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


def first_clash(had: tuple[str, ...], added: list[str] | tuple[str, ...]) -> tuple[str, str] | None:
    """The first added name that is one of `had` or an earlier added one, even differing only in case
    ("Mug" beside "mug": two classes no reader of the names tells apart), with the name it clashes
    with; None where there is none."""
    seen = {name.casefold(): name for name in had}
    for name in added:
        earlier = seen.get(name.casefold())
        if earlier is not None:
            return name, earlier
        seen[name.casefold()] = name
    return None


def with_user_classes(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The shipped classes, then a user's own in the order given: their ids follow on from ours (a
    model fine-tuned with `--add-class` puts them in the same places)."""
    clash = first_clash(SHIPPED_CLASSES, names)
    if clash is not None:
        name, earlier = clash
        case = "" if name == earlier else f" (as {earlier!r}: case does not tell classes apart)"
        if earlier in SHIPPED_CLASSES:
            raise ValueError(
                f"user class {name!r} is one of ours already{case}; give your object another name"
            )
        raise ValueError(f"user class {name!r} is given twice{case}; one name per object")
    return SHIPPED_CLASSES + tuple(names)
