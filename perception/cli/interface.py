"""percept interface list | show: the message types and their fields, from their declarations in
perception/msgs.py (as `ros2 interface` shows .msg files)."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import typing
from typing import Any

from perception import msgs
from perception.cli.common import did_you_mean
from perception.errors import PerceptError


def register(verbs: Any) -> None:
    interface = verbs.add_parser(
        "interface", help="List message types and show their fields."
    ).add_subparsers(dest="action", required=True)
    p = interface.add_parser("list", help="List the message types.")
    p.set_defaults(func=_list)
    p = interface.add_parser("show", help="Show a message type's fields, their types and defaults.")
    p.add_argument("type", help="a message type, e.g. percept/Detections")
    p.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
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
    lines = [] if indent else [f"# {cls.TYPE_NAME} (schema v{cls.SCHEMA_VERSION}): {_summary(cls)}"]
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        hint = hints[field.name]
        default = _default(field)
        lines.append(f"{pad}{_type_name(hint)} {field.name}{f'  # default {default}' if default else ''}")
        if isinstance(hint, type) and issubclass(hint, msgs.Message) and indent < 3:
            lines.append(describe(hint, indent + 1))
        elif typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint) or (Any,)
            if isinstance(item, type) and issubclass(item, msgs.Message) and indent < 3:
                lines.append(describe(item, indent + 1))
    return "\n".join(lines)


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    if doc.startswith(f"{cls.__name__}("):  # the signature dataclasses write when there is no docstring
        return ""
    return doc.splitlines()[0] if doc else ""


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
        return "empty" if hasattr(value, "__len__") and not len(value) else repr(value)
    return ""
