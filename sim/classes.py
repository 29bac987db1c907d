"""The object classes of both scenes, with the ids the shipped detector uses (one model covers both)."""

from __future__ import annotations

TABLETOP_CLASSES = ("cube", "cylinder", "mug", "duck", "teddy", "soccerball", "lego", "jenga")
DRIVING_CLASSES = ("car", "pedestrian", "cone")
ALL_CLASSES = TABLETOP_CLASSES + DRIVING_CLASSES


def class_id(name: str) -> int:
    try:
        return ALL_CLASSES.index(name)
    except ValueError:
        raise ValueError(f"unknown class {name!r}; classes: {', '.join(ALL_CLASSES)}") from None
