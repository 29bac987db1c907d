"""Starting a node process: `perception.run(MyNode)` in a script, or `percept run TARGET` for any node.

Both read the same command-line overrides, which is also how the launcher passes launch-file settings:
  --name NAME  --namespace NS  -p name:=value (YAML value)  -r from:=to  --params-json JSON
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import yaml

from perception.errors import LaunchError, ParameterError, PerceptError, did_you_mean
from perception.runtime.context import Context, NodeOverrides
from perception.runtime.node import Node
from perception.runtime.stopping import stop_signals_call


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="node name (overrides the class's default)")
    parser.add_argument("--namespace", "--ns", help="namespace for the node and its relative names")
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="set a parameter (value parsed as YAML); repeatable",
    )
    parser.add_argument(
        "-r", "--remap", action="append", default=[], metavar="FROM:=TO", help="remap a name; repeatable"
    )
    parser.add_argument(
        "--params-file",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="parameters from a YAML file (ROS 2's ros__parameters layout, `param dump`'s, or a plain map), "
        "the node's own section; repeatable, a later file wins, -p wins over all",
    )
    parser.add_argument("--params-json", help="parameters as one JSON object (used by the launcher)")
    parser.add_argument(
        "--shared-parameters",
        default="",
        metavar="NAMES",
        help="names among --params-json that a parameter file gives every node (/**): not warned about "
        "where the node does not declare them (used by the launcher)",
    )
    # `ros2 run PKG NODE --ros-args -r a:=b -p x:=1` is how an rclpy user's fingers type it: the marker
    # is taken and means nothing here, where every argument is the node's.
    parser.add_argument(
        "--ros-args", action="store_true", help="accepted and ignored, as ROS 2 writes it before -r and -p"
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,  # logging's names, in either case
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        default=os.environ.get("PERCEPT_LOG_LEVEL", "INFO"),
        help="what the node logs (default: $PERCEPT_LOG_LEVEL, else INFO)",
    )


def split_assignment(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition(":=")
    if not sep or not key:
        raise ParameterError(f"{what} {text!r}: expected NAME:=VALUE")
    return key, value


def yaml_assignments(items: Sequence[str] | None, what: str) -> dict[str, Any]:
    """NAME:=VALUE items as a command line gives them (parameters, launch arguments), each value read as
    YAML; an empty value is the empty string."""
    values: dict[str, Any] = {}
    for item in items or ():
        key, value = split_assignment(item, what)
        values[key] = yaml.safe_load(value) if value else ""
    return values


def overrides_from(args: argparse.Namespace) -> NodeOverrides:
    parameters: dict[str, Any] = {}
    if args.params_json:
        parameters.update(json.loads(args.params_json))
    given = yaml_assignments(args.param, "parameter")  # named one by one: checked, never shared
    parameters.update(given)
    remappings = dict(split_assignment(item, "remapping") for item in args.remap)
    # ROS 2's spellings of --name and --ns (`-r __node:=x -r __ns:=/robot`), which are no topic names.
    name, namespace = remappings.pop("__node", None), remappings.pop("__ns", None)
    return NodeOverrides(
        name=args.name or name,
        namespace=args.namespace or namespace,
        parameters=parameters,
        remappings=remappings,
        parameter_files=list(args.params_file),
        shared_parameters={name for name in args.shared_parameters.split(",") if name} - given.keys(),
    )


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="[%(levelname)s] [%(name)s] %(message)s",
        stream=sys.stderr,
    )


def load_node_class(target: str) -> type[Node]:
    """`package.module:Class`, `path/to/file.py:Class`, or a module (or file) holding one Node subclass."""
    module_ref, _, class_name = target.partition(":")
    module: ModuleType
    try:
        if module_ref.endswith(".py"):
            path = Path(module_ref)
            if not path.is_file():
                raise LaunchError(f"node {target!r}: file {path} not found")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_ref)
    except ImportError as exc:
        raise LaunchError(f"node {target!r}: cannot import {module_ref!r}: {exc}") from None
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Node)
        and obj is not Node
        and obj.__module__ == module.__name__
    ]
    names = [c.__name__ for c in found]
    if class_name:
        cls = getattr(module, class_name, None)
        if not (inspect.isclass(cls) and issubclass(cls, Node)):
            raise LaunchError(
                f"node {target!r}: {module_ref} has no Node subclass named {class_name!r}"
                f"{did_you_mean(class_name, names)} (Node subclasses here: {', '.join(names) or 'none'})"
            )
        return cls
    if len(found) != 1:
        raise LaunchError(
            f"node {target!r}: name the class as MODULE:CLASS (Node subclasses here: {', '.join(names) or 'none'})"
        )
    return found[0]


def run(node_class: type[Node], argv: Sequence[str] | None = None) -> int:
    """Build `node_class` with overrides from the command line, spin until SIGINT/SIGTERM, clean up."""
    parser = argparse.ArgumentParser(description=(node_class.__doc__ or "").strip().split("\n")[0])
    add_override_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(args.log_level)
    try:
        return spin_node(node_class, overrides_from(args))
    except PerceptError as exc:  # a node script run by hand ends as `percept run` does: one line, code 1
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


_SUITE = Path(__file__).resolve().parents[2]  # perception/ and sim/ lie here (and tests/, which is no user's)


def _in_users_code(exc: BaseException) -> str:
    """Where an error raised in a user's own node came from (file, line, type), which its one line
    would otherwise hide; nothing for our own nodes' errors, whose text names the thing."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    path = Path(last.filename).resolve()
    if any(path.is_relative_to(_SUITE / package) for package in ("perception", "sim")):
        return ""
    return f" ({type(exc).__name__} at {path.name}:{last.lineno}; --log-level debug for the traceback)"


def _discard(node: Node) -> None:
    """Unregister a node whose constructor failed, if it got as far as registering."""
    if getattr(node, "_registry_link", None) is None or not hasattr(node, "_wake"):
        return
    with contextlib.suppress(Exception):  # its on_shutdown may reach for what was never made
        node.destroy()


def spin_node(node_class: type[Node], overrides: NodeOverrides) -> int:
    Context.set_default(Context(overrides=overrides))
    # Made in two steps so that a constructor failing after Node.__init__ (which registers the node)
    # leaves a node to say goodbye with: the registry would otherwise keep it 3 s and then report it
    # as gone silent, at every respawn of a node that cannot start.
    node = node_class.__new__(node_class)
    try:
        cast(Callable[[Node], None], node_class.__init__)(node)  # it names itself; overrides rename it
    except BaseException as exc:
        _discard(node)
        if not isinstance(exc, (PerceptError, ValueError, RuntimeError)):
            raise
        # A bad parameter or scene at start-up: one clear line, not a traceback (DEBUG shows it).
        logging.getLogger(node_class.__name__).debug("start-up failed", exc_info=True)
        raise PerceptError(f"{node_class.__name__} did not start: {exc}{_in_users_code(exc)}") from None
    with stop_signals_call(node.request_shutdown):
        try:
            node.spin()
        finally:
            node.destroy()
    return 0
