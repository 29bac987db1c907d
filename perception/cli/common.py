"""Helpers shared by the verbs."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from perception.detector.defaults import small_object_zoom_fits
from perception.errors import PerceptError
from perception.errors import did_you_mean as did_you_mean  # the commands import it from here


def _bounded(
    convert: Callable[[str], Any], low: float, strict: bool, expected: str, high: float = math.inf
) -> Callable[[str], Any]:
    """An argparse type: `convert(text)` above `low` (or at least `low`), finite and at most `high`; else
    a usage error."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, found {text!r}") from None
        if not (value > low if strict else value >= low) or value == math.inf or value > high:
            raise argparse.ArgumentTypeError(f"expected {expected}, found {text}")
        return value

    return parse


positive_int = _bounded(int, 0, True, "a whole number above 0")  # a count of frames, rounds, episodes
positive_float = _bounded(float, 0, True, "a number above 0")  # seconds, a rate
non_negative_float = _bounded(float, 0, False, "a number of 0 or more")  # noise, a share
non_negative_int = _bounded(int, 0, False, "a whole number of 0 or more")  # a count that may be none
seed_arg = non_negative_int  # numpy's generators take no negative seed


def zoom_arg(text: str) -> float:
    """A small-object pass's zoom, as the detector takes it (defaults.small_object_zoom_fits)."""
    value = non_negative_float(text)
    if not small_object_zoom_fits(value):
        raise argparse.ArgumentTypeError(f"expected 0 (none) or a zoom above 1, found {text}")
    return float(value)


def output_file(text: str) -> Path:
    """argparse type: a file a command writes. Its folder must exist, so that a mistake is named before
    the work whose result it holds, not in a traceback after it."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"expected a file, found the folder {text}")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"no folder {path.parent} to write {path.name} in")
    return path


def overwrite_option(parser: argparse.ArgumentParser, replaced: str = "the file at --out") -> None:
    """`--overwrite`, which check_new_output reads: an earlier result is replaced only when asked."""
    parser.add_argument(
        "--overwrite", action="store_true", help=f"replace {replaced} if there is one (default: refuse)"
    )


# sim.world.RENDERERS, written out here: the command line is built without the simulator's extra.
RENDERERS = ("auto", "egl", "tiny")


def renderer_option(parser: argparse.ArgumentParser) -> None:
    """`--renderer` of a command that renders scenes itself."""
    parser.add_argument(
        "--renderer",
        default="auto",
        choices=RENDERERS,
        help="egl (PyBullet's EGL plugin: on the CPU through Mesa where there is no GPU), tiny "
        "(TinyRenderer, 2-3x slower) or auto (EGL where it loads, else tiny)",
    )


def check_new_output(path: Path, label: str, overwrite: bool, replaced: str = "it") -> None:
    """Before the work whose result it holds (a recording, a calibration session, a training run): a
    file that can be written in a folder that takes it, and no earlier result replaced unless asked,
    as `ros2 bag record` keeps an earlier bag. `label` names it in the error (`--out m.onnx`)."""
    folder = path.parent.resolve()
    if path.is_dir():
        raise PerceptError(f"{label}: expected a file to write, found a folder")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        found = (
            "no such folder"
            if not folder.exists()
            else "not a folder"
            if not folder.is_dir()
            else "read-only"
        )
        raise PerceptError(f"{label}: expected a folder it can be written to, found {folder}: {found}")
    if path.exists() and not overwrite:
        raise PerceptError(f"{label}: the file exists; give --overwrite to replace {replaced}")


def output_folder(text: str) -> Path:
    """argparse type: a folder a command writes into, made if missing: not a file, nor under one."""
    path = Path(text)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise argparse.ArgumentTypeError(f"expected a folder, found the file {existing}")
    return path


port = _bounded(int, 0, False, "a port from 0 to 65535", high=65535)  # 0: the system picks a free one


def positive_numbers(text: str) -> list[float]:
    """argparse type: comma-separated numbers above 0 (`10,20`)."""
    return [positive_float(part) for part in text.split(",") if part.strip()] or _none_given(text)


def _none_given(text: str) -> list[float]:
    raise argparse.ArgumentTypeError(f"expected comma-separated numbers above 0, e.g. 10,20; found {text!r}")


def graph_node(name: str) -> dict[str, Any]:
    """The registry's entry for node `name` (the leading slash may be left out); an unknown one is a
    PerceptError with "did you mean" (asking it for its services would only time out)."""
    from perception.errors import PerceptError
    from perception.runtime.graph import graph_nodes
    from perception.runtime.names import is_hidden

    nodes = {n["name"]: n for n in graph_nodes(include_hidden=True)}
    full = name if name.startswith("/") else f"/{name}"
    if full not in nodes:
        visible = [n for n in nodes if not is_hidden(n)]
        raise PerceptError(f"no node {full} in the graph{did_you_mean(full, visible)} (percept node list)")
    return nodes[full]


class DefaultsFormatter(argparse.HelpFormatter):
    """`--help` states every default: an option whose help does not say it gets `(default: X)`. Help text
    worded by hand (`default 0: forever`, `default: until stopped`) is left as it is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        # Nothing to state: no default, a flag left off, an empty list (`in (None, False, [])` would take 0).
        nothing = default is None or default is False or default == [] or default is argparse.SUPPRESS
        if "default" in text.lower() or nothing:
            return action.help
        if not action.option_strings and action.nargs not in ("?", "*"):
            return action.help  # a required positional: its default is never used
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class SuggestingParser(argparse.ArgumentParser):
    """An argparse parser whose "invalid choice" error suggests the closest verb (Python 3.11's does not),
    and whose help states every default (DefaultsFormatter)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:
        import re

        found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if found:
            choices = [c.strip().strip("'") for c in found.group(2).split(",")]
            message += did_you_mean(found.group(1), choices)
        super().error(message)


def comma_separated(text: str) -> list[str]:
    """The non-blank items of `a, b,,c` (`['a', 'b', 'c']`), stripped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def yaml_argument(text: str, what: str) -> Any:
    """A command-line value in YAML (`'{data: hi}'`, `9`, `[1, 2]`); a syntax error names the argument
    and where in it, in one line."""
    import yaml

    from perception.errors import PerceptError

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PerceptError(f"{what} {text!r}: not valid YAML{where} ({problem})") from None


def message_fields(value: Any) -> dict[str, Any]:
    """A message's fields by name (a dataclass's fields, not its class constants such as MAX_BYTES)."""
    import dataclasses

    return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}


def format_value(value: Any, indent: int = 0, full: bool = False) -> str:
    """YAML-like text of a message; arrays show shape, dtype and their first values (with `full`, every
    value, a 2-D array a row a line); a header's stamp also as ISO time."""
    pad = "  " * indent
    if type(value).__name__ == "Header" and hasattr(value, "stamp"):
        return _format_map(message_fields(value), indent, full).replace(
            f"stamp: {value.stamp}", f"stamp: {value.stamp}  # {stamp_text(value.stamp)}", 1
        )
    if hasattr(value, "__dataclass_fields__"):
        return _format_map(message_fields(value), indent, full)
    if hasattr(value, "type_name") and hasattr(value, "fields"):  # UnknownMessage
        return _format_map(value.fields, indent, full)
    if isinstance(value, dict):
        return _format_map(value, indent, full)
    if isinstance(value, np.ndarray) and full and value.ndim == 2 and value.size:
        rows = "\n".join(f"{pad}- [{', '.join(str(v) for v in row)}]" for row in value.tolist())
        return f"{pad}# shape {tuple(value.shape)}, {value.dtype}\n{rows}"
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1)
        shown = flat if full else flat[:8]
        more = "" if len(shown) == len(flat) else ", ..."
        items = ", ".join(str(v) for v in shown.tolist())
        return f"array(shape={tuple(value.shape)}, dtype={value.dtype}, [{items}{more}])"
    if isinstance(value, list) and value and hasattr(value[0], "__dataclass_fields__"):
        return "\n" + "\n".join(f"{pad}- " + format_value(v, indent + 1, full).lstrip() for v in value)
    return repr(value) if isinstance(value, str) else str(value)


def stamp_text(stamp_ns: int) -> str:
    """A stamp in ns as ISO time (UTC), or as seconds where it is sim time (small numbers)."""
    import datetime

    if stamp_ns < 10**17:  # before 1973: a simulated clock counting from 0, not wall time
        return f"{stamp_ns / 1e9:.9f} s (sim time)"
    moment = datetime.datetime.fromtimestamp(stamp_ns // 10**9, datetime.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{stamp_ns % 10**9:09d}Z"


def _format_map(fields: dict[str, Any], indent: int, full: bool) -> str:
    pad = "  " * indent
    lines = []
    for name, value in fields.items():
        rows = full and isinstance(value, np.ndarray) and value.ndim == 2 and value.size
        nested = hasattr(value, "__dataclass_fields__") or (isinstance(value, dict) and value) or rows
        text = format_value(value, indent + 1, full)
        if nested:
            lines.append(f"{pad}{name}:\n{text}")
        else:
            lines.append(f"{pad}{name}: {text}")
    return "\n".join(lines)


def image_size(text: str) -> tuple[int, int]:
    """`640` or `480x640` (height x width), each a positive multiple of 32 (the network's stride)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or any(v <= 0 or v % 32 for v in values):
        raise argparse.ArgumentTypeError(
            f"{text}: expected H or HxW in pixels, each a multiple of 32 (e.g. 480x640 or 608x800)"
        )
    return (values[0], values[-1])


def rows_arg(text: str) -> tuple[int, int]:
    """`192,336`: the first and last image row (exclusive) of a band, top < bottom."""
    try:
        top, bottom = (int(v) for v in text.split(","))
    except ValueError:
        top, bottom = -1, -1
    if not 0 <= top < bottom:
        raise argparse.ArgumentTypeError(f"{text}: expected TOP,BOTTOM image rows with 0 <= TOP < BOTTOM")
    return (top, bottom)
