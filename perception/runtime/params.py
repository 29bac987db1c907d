"""Typed node parameters: declared with a default, overridden from launch files or the command line,
read and changed at run time through the node's `~/get_parameters` and `~/set_parameters` services."""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from perception.errors import ParameterError

_TYPES: dict[type, str] = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


@dataclass(slots=True)
class Parameter:
    name: str
    value: Any
    type: type
    description: str = ""
    read_only: bool = False
    range: tuple[float, float] | None = None  # inclusive bounds of a number (ROS 2's FloatingPointRange)
    # A list's item type, from its default (ROS 2's typed arrays); None: any items.
    element: builtins.type | None = None

    def explained(self) -> str:
        """The description, with the range when there is one."""
        if self.range is None:
            return self.description
        bounds = f"{self.range[0]:g} to {self.range[1]:g}"
        return f"{self.description} ({bounds})" if self.description else bounds


def coerce(name: str, value: Any, kind: type) -> Any:
    """`value` as `kind`, or ParameterError. Integers widen to float, and become text where text is
    declared (`source:=0` on a command line is YAML's integer 0, meant as the string "0"); nothing else
    converts silently."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if kind is list and isinstance(value, tuple):
        return list(value)
    if kind is float and isinstance(value, float) and math.isnan(value):
        raise ParameterError(f"parameter {name!r}: expected a number, found nan")
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise ParameterError(
        f"parameter {name!r}: expected {_TYPES[kind]}, found {type(value).__name__} {value!r}"
    )


def element_type(default: Any) -> type | None:
    """The item type a list default declares, as ROS 2 types an array (bool, integer, double or string
    array): its items' one scalar type, float where ints and floats mix. None (any items) for an empty
    default, or one holding lists, maps or several types: nothing to infer a type from."""
    if not isinstance(default, list) or not default:
        return None
    kinds = {type(item) for item in default}
    if kinds == {int, float}:
        return float
    if len(kinds) == 1 and (kind := kinds.pop()) in (bool, int, float, str):
        return kind
    return None


def coerce_items(name: str, value: list[Any], element: type | None) -> list[Any]:
    """`value`'s items as `element` (by `coerce`'s rules: ints widen to float, and so on), or
    ParameterError naming the first item that is not one: a list of numbers given ['a', 'b'] would
    otherwise be taken and fail later, in the node's arithmetic."""
    if element is None:
        return value
    items = []
    for index, item in enumerate(value):
        try:
            items.append(coerce(name, item, element))
        except ParameterError:
            raise ParameterError(
                f"parameter {name!r}: expected a list of {_TYPES[element]}, found {type(item).__name__} "
                f"{item!r} at index {index}"
            ) from None
    return items


class Parameters:
    """A node's parameters. `overrides` win over declared defaults."""

    def __init__(self, owner: str, overrides: dict[str, Any] | None = None) -> None:
        self._owner = owner
        self._overrides = dict(overrides or {})
        self._params: dict[str, Parameter] = {}
        self._callbacks: list[Callable[[str, Any], None]] = []

    def declare(
        self,
        name: str,
        default: Any,
        description: str = "",
        *,
        read_only: bool = False,
        range: tuple[float, float] | None = None,
    ) -> Any:
        """Declare `name` with the type of `default`; `range` bounds a number, both ends included."""
        if name in self._params:
            raise ParameterError(f"parameter {name!r} of {self._owner} is already declared")
        kind = type(default)
        if kind not in _TYPES:
            raise ParameterError(
                f"parameter {name!r}: default must be one of {', '.join(_TYPES.values())}, "
                f"found {kind.__name__}"
            )
        if range is not None and kind not in (int, float):
            raise ParameterError(f"parameter {name!r}: a range bounds a number, found {kind.__name__}")
        param = Parameter(name, default, kind, description, read_only, range, element_type(default))
        _check_range(f"{self._owner}.{name}", default, param)  # the default too: a range is a promise
        value = _coerce(f"{self._owner}.{name}", self._overrides.get(name, default), param)
        _check_range(f"{self._owner}.{name}", value, param)
        param.value = value
        self._params[name] = param
        return value

    def get(self, name: str) -> Any:
        return self._lookup(name).value

    def set(self, name: str, value: Any) -> Any:
        param = self._lookup(name)
        if param.read_only:
            raise ParameterError(f"parameter {name!r} of {self._owner} is read-only")
        value = _coerce(f"{self._owner}.{name}", value, param)
        _check_range(f"{self._owner}.{name}", value, param)
        old = param.value
        param.value = value
        try:
            for callback in self._callbacks:
                callback(name, value)
        except Exception:
            param.value = old  # a callback that rejects the value keeps the old one
            raise
        return value

    def set_many(self, values: dict[str, Any]) -> None:
        """Set several at once, all or none (ROS 2's set_parameters_atomically): each value is checked
        before any is set, and when a change callback refuses one, those set before it are put back (their
        callbacks told again), so a request that fails has changed nothing, as its error says."""
        for name, value in values.items():  # every name, read-only flag, type and range first
            param = self._lookup(name)
            if param.read_only:
                raise ParameterError(f"parameter {name!r} of {self._owner} is read-only")
            _check_range(f"{self._owner}.{name}", _coerce(f"{self._owner}.{name}", value, param), param)
        done: list[tuple[str, Any]] = []
        try:
            for name, value in values.items():
                old = self._params[name].value
                self.set(name, value)
                done.append((name, old))
        except Exception as exc:
            stuck = []
            for name, old in reversed(done):
                try:
                    self.set(name, old)
                except Exception:  # its callback refused its own value back: say so, or the error lies
                    stuck.append(name)
            if stuck:
                raise ParameterError(f"{exc}; and {', '.join(stuck)} could not be put back") from exc
            raise

    def on_change(self, callback: Callable[[str, Any], None]) -> None:
        """Call `callback(name, value)` after each change; raising in it rejects the change."""
        self._callbacks.append(callback)

    def unused_overrides(self) -> list[str]:
        return sorted(set(self._overrides) - set(self._params))

    def describe(self, names: list[str] | None = None) -> dict[str, Parameter]:
        wanted = names or list(self._params)
        return {name: self._lookup(name) for name in wanted}

    def names(self) -> list[str]:
        return list(self._params)

    def _lookup(self, name: str) -> Parameter:
        try:
            return self._params[name]
        except KeyError:
            raise unknown_parameter(self._owner, name, list(self._params)) from None


def unknown_parameter(owner: str, name: str, declared: list[str]) -> ParameterError:
    """The error for a parameter `owner` does not declare (`percept param get` says it too)."""
    return ParameterError(f"{owner} has no parameter {name!r} (declared: {', '.join(declared) or 'none'})")


def _coerce(where: str, value: Any, param: Parameter) -> Any:
    value = coerce(where, value, param.type)
    return coerce_items(where, value, param.element) if param.type is list else value


def _check_range(where: str, value: Any, param: Parameter) -> None:
    if param.range is not None and not param.range[0] <= value <= param.range[1]:
        low, high = param.range
        raise ParameterError(f"parameter {where!r}: expected {low:g} to {high:g}, found {value!r}")


def type_name(kind: type) -> str:
    return _TYPES[kind]


# The keys a node's section of a parameter file holds its values under: `percept param dump` writes
# `parameters`, ROS 2 `ros__parameters`.
_SECTION_KEYS = ("parameters", "ros__parameters")


class FileValues(dict[str, Any]):
    """The values parameter files give one node. `shared`: the names given only by a pattern section
    (`/**`, `*`) that every node of a graph reads; a node that does not declare one leaves it alone
    without a warning, as ROS 2 does (one file's `/**: {use_sim_time: true}` is for the nodes that have
    it), where a name in the node's own section that it does not declare is a typo, and is warned about."""

    shared: frozenset[str] = frozenset()

    def then(self, later: dict[str, Any]) -> FileValues:
        """These values with a later file's or map's over them (a name it gives is no longer shared
        unless it too gives it only by a pattern)."""
        merged = FileValues({**self, **later})
        later_shared = later.shared if isinstance(later, FileValues) else frozenset()
        # A name this one gave in a node's own section stays the node's, whatever a later pattern gives.
        merged.shared = (self.shared - later.keys()) | (later_shared - (self.keys() - self.shared))
        return merged


def read_parameter_file(path: Path, node: str, *, required: bool = False) -> FileValues:
    """The values a parameter file gives the node `node` (a fully qualified name such as /arm/camera).
    It takes ROS 2's layout (sections `node: {ros__parameters: {...}}`, each keyed by a node's full name,
    a leading / implied as ROS 2 implies it, or a pattern: `/**` any node, `*` one name; the patterns'
    sections first and the node's own over them), `percept param dump`'s (the same with `parameters`),
    or a plain map of names to values. A file given to one node (`required`) must have its section;
    one shared by a launch file's nodes may have none for some."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ParameterError(f"parameter file {path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ParameterError(f"parameter file {path}: expected YAML text, found binary data") from None
    except yaml.YAMLError as exc:
        raise ParameterError(f"parameter file {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not data:
        raise ParameterError(f"parameter file {path}: expected a map of parameter names to values")
    sections = {
        str(key): next(value[k] for k in _SECTION_KEYS if k in value)
        for key, value in data.items()
        if isinstance(value, dict) and any(k in value for k in _SECTION_KEYS)
    }
    if not sections:
        return FileValues(data)  # a plain map: every name in it is the node's
    matching = [key for key in sections if "*" in key and _pattern(key).fullmatch(node)]
    matching += [key for key in sections if "*" not in key and "/" + key.lstrip("/") == node]
    if not matching and required:
        raise ParameterError(
            f"parameter file {path}: no section for {node} (sections: {', '.join(sections)}; a section "
            "is a node's full name, or a pattern such as /**)"
        )
    values = FileValues()
    for key in matching:  # the patterns' sections first, the node's own over them
        if not isinstance(sections[key], dict):
            raise ParameterError(f"parameter file {path}: {key}: expected a map of names to values")
        section = FileValues(sections[key])
        section.shared = frozenset(section) if "*" in key else frozenset()
        values = values.then(section)
    return values


def _pattern(key: str) -> re.Pattern[str]:
    """A section's node pattern as ROS 2 reads it: `**` any names (none included), `*` one name."""
    parts = []
    for token in key.lstrip("/").split("/"):
        if token == "**":
            parts.append("(/[^/]+)*")
        else:
            parts.append("/" + "[^/]+".join(re.escape(piece) for piece in token.split("*")))
    return re.compile("".join(parts))


def read_parameter_files(paths: Sequence[Path], node: str) -> FileValues:
    """Several files given to one node (`percept run --params-file`), as ROS 2 takes them: each must
    have the node's section, and a later file's value wins."""
    values = FileValues()
    for path in paths:
        values = values.then(read_parameter_file(path, node, required=True))
    return values
