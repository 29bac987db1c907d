"""Scene parameters from plain values (a launch file, a reset request), with errors that name the key."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

P = TypeVar("P")


def from_values(cls: type[P], values: dict[str, Any], scene: str) -> P:
    """`cls(**values)` for a scene's parameter dataclass; an unknown key is named with the known ones."""
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {scene} parameter {unknown[0]!r}; parameters: {', '.join(known)}")
    return cls(**values)
