"""percept interface list | show: the message types and their fields, from their declarations in
perception/msgs.py (as `ros2 interface` shows .msg files)."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import textwrap
import typing
from typing import Any

import numpy as np

from perception import msgs
from perception.cli.common import did_you_mean
from perception.errors import PerceptError


def register(verbs: Any) -> None:
    interface = verbs.add_parser(
        "interface", help="List message types and show their fields."
    ).add_subparsers(dest="action", required=True)
    p = interface.add_parser("list", help="List the message types.")
    p.add_argument(
        "--markdown",
        action="store_true",
        help="every type's fields as a Markdown table of their wire types (docs/wire-format.md has it)",
    )
    p.set_defaults(func=_list)
    p = interface.add_parser("show", help="Show a message type's fields, their types and defaults.")
    p.add_argument("type", help="a message type, e.g. percept/Detections")
    p.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_table())
        return 0
    for name, cls in sorted(msgs.registered_types().items()):
        print(f"{name:<28} v{cls.SCHEMA_VERSION}  {_summary(cls)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    print(describe(find(args.type)))
    return 0


def find(name: str) -> type[msgs.Message]:
    known = msgs.registered_types()
    if name in known:
        return known[name]
    by_short = {n.split("/")[-1]: n for n in known}  # `Detections` for percept/Detections
    if name in by_short:
        return known[by_short[name]]
    raise PerceptError(
        f"no message type {name!r}{did_you_mean(name, list(known) + list(by_short))} (percept interface list)"
    )


def describe(cls: type[msgs.Message], indent: int = 0) -> str:
    """The type's fields as `type name  # default`, nested messages indented below their field."""
    pad = "    " * indent
    hints = typing.get_type_hints(cls)
    lines = [] if indent else _heading(cls)
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        hint = hints[field.name]
        default = _default(field)
        kind = _array_kind(field) if hint is np.ndarray else _type_name(hint)
        lines.append(f"{pad}{kind} {field.name}{f'  # default {default}' if default else ''}")
        if isinstance(hint, type) and issubclass(hint, msgs.Message) and indent < 3:
            lines.append(describe(hint, indent + 1))
        elif typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint) or (Any,)
            if isinstance(item, type) and issubclass(item, msgs.Message) and indent < 3:
                lines.append(describe(item, indent + 1))
    return "\n".join(lines)


def _doc(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return "" if doc.startswith(f"{cls.__name__}(") else doc  # that is the signature dataclasses write


def _summary(cls: type) -> str:
    """The docstring's first sentence, on one line of at most 100 characters."""
    text = " ".join(_doc(cls).split("\n\n")[0].split())
    end = text.find(". ")
    text = text if end < 0 else text[: end + 1]
    return text if len(text) <= 100 else text[:97].rsplit(" ", 1)[0].rstrip(" ,;:(") + "..."


def _heading(cls: type[msgs.Message]) -> list[str]:
    """The type's name, schema version (and the older ones it reads) and its whole docstring."""
    older = sorted(cls.READS_VERSIONS - {cls.SCHEMA_VERSION})
    reads = f", reads v{', v'.join(map(str, older))}" if older else ""
    doc = _doc(cls)
    wrapped = textwrap.wrap(" ".join(doc.split()), 98) if doc else []
    return [f"# {cls.TYPE_NAME} (schema v{cls.SCHEMA_VERSION}{reads})", *(f"# {line}" for line in wrapped)]


def _declared_array(field: dataclasses.Field[Any]) -> tuple[np.dtype[Any], str] | None:
    """The dtype an array field's default gives it, and its shape as `[N,4]` where the default is empty
    (N rows, one per item of a parallel-array message; '' for a default with rows of its own, as
    CameraInfo.D, whose length it does not fix); None where the field has no default (an image)."""
    if field.default_factory is dataclasses.MISSING:
        return None
    value = np.asarray(field.default_factory())
    shape = f"[{','.join(['N', *map(str, value.shape[1:])])}]" if value.shape[:1] == (0,) else ""
    return value.dtype, shape


def _array_kind(field: dataclasses.Field[Any]) -> str:
    """`array<f4>[N,4]`, or plain `array` where the dtype and shape follow another field (an image's
    encoding)."""
    declared = _declared_array(field)
    return "array" if declared is None else f"array<{declared[0].str.lstrip('<|')}>{declared[1]}"


def _type_name(hint: Any) -> str:
    if hint is typing.Any:
        return "any"
    if isinstance(hint, type):
        if issubclass(hint, msgs.Message):
            return hint.TYPE_NAME
        return {"ndarray": "array"}.get(hint.__name__, hint.__name__)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return f"{_type_name(args[0]) if args else 'any'}[]"
    if origin is dict:
        return f"dict[{', '.join(_type_name(a) for a in args)}]" if args else "dict"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_name(a) for a in args)
    return str(hint).replace("typing.", "")


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        return repr(field.default)
    if field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
        if isinstance(value, msgs.Message):
            return ""
        if isinstance(value, np.ndarray) and value.size:
            return repr(value.tolist())
        return "empty" if hasattr(value, "__len__") and not len(value) else repr(value)
    return ""


def markdown_table() -> str:
    """Every registered type's fields in wire terms (section 1 of docs/wire-format.md), one row each:
    the type with its schema version (and the older ones it reads), the field ("req": no default), its
    msgpack form and its default."""
    rows = ["| type | field | on the wire | default |", "|---|---|---|---|"]
    for name, cls in sorted(msgs.registered_types().items()):
        older = sorted(cls.READS_VERSIONS - {cls.SCHEMA_VERSION})
        label = f"`{name}` v{cls.SCHEMA_VERSION}" + (
            f" (reads v{', v'.join(map(str, older))})" if older else ""
        )
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        if not fields:
            rows.append(f"| {label} | none: `fields` is `{{}}` | | |")
        for field in fields:
            required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            wire = _wire_type(hints[field.name], field)
            default = "" if required else _wire_default(field)
            rows.append(f"| {label} | `{field.name}`{' (req)' if required else ''} | {wire} | {default} |")
            label = ""
    return "\n".join(rows)


def _wire_type(hint: Any, field: dataclasses.Field[Any]) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, type) and issubclass(hint, msgs.Message):
        return f"`{hint.TYPE_NAME}` map"
    if hint is np.ndarray:
        declared = _declared_array(field)
        if declared is None:
            return "array (ext 1)"
        dtype, shape = declared
        return f"array (ext 1) `{dtype.str}`" + (f" {shape}" if shape else "")
    if origin is list and args:
        item = args[0]
        return (
            f"array of `{item.TYPE_NAME}` maps"
            if issubclass(item, msgs.Message)
            else f"array of {item.__name__}"
        )
    if origin is tuple:
        return f"array of {len(args)} {args[0].__name__}"
    if origin is dict:
        return f"map str → {'any' if args[1] is Any else args[1].__name__}"
    return str(hint.__name__)


def _wire_default(field: dataclasses.Field[Any]) -> str:
    value = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc,operator]
    if isinstance(value, msgs.Message):
        return "all its defaults"
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, tuple | list):
        return f"`{list(value)}`".replace("'", '"') if value else "empty"
    if isinstance(value, dict):
        return "empty" if not value else f"`{value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"
