"""Scene parameters from plain values (a launch file, a reset request), with errors that name the key."""

from __future__ import annotations

import types
from dataclasses import fields
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

P = TypeVar("P")


def from_values(cls: type[P], values: dict[str, Any], scene: str) -> P:
    """`cls(**values)` for a scene's parameter dataclass; an unknown key, or a value of another type
    (`objects: 5.0`, which would fail deep inside the scene's build), is named with what was expected."""
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {scene} parameter {unknown[0]!r}; parameters: {', '.join(known)}")
    hints = get_type_hints(cls)
    for name, value in values.items():
        if not _fits(value, hints[name]):
            raise ValueError(
                f"{scene} parameter {name!r}: expected {_describe(hints[name])}, found {value!r}"
            )
    return cls(**values)


def _fits(value: Any, hint: Any) -> bool:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # a whole number is a fine float
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return (
            isinstance(value, list) and all(_fits(v, args[0]) for v in value)
            if args
            else isinstance(value, list)
        )
    return True  # anything else is the dataclass's own to check


def _describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if hint is type(None):
        return "null"
    if origin is list:
        plural = {bool: "booleans", int: "whole numbers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(args[0], str(args[0]))}" if args else "a list"
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    return names.get(hint, str(hint))
