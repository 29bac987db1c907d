"""percept launch | run | registry"""

from __future__ import annotations

import argparse
import importlib.util
import pkgutil
from pathlib import Path
from typing import Any

from perception.cli.common import did_you_mean, non_negative_float, positive_float
from perception.errors import PerceptError
from perception.runtime import launch_file, runner
from perception.runtime.registry import DEFAULT_ADDRESS, Registry, registry_address
from perception.runtime.stopping import stop_signals_call


def register(verbs: Any) -> None:
    p = verbs.add_parser("launch", help="Run the nodes of a launch file, with a live status.")
    p.add_argument("file", nargs="?", help="a YAML launch file, or the name of one that ships (see --list)")
    p.add_argument("--list", action="store_true", help="list the launch files that ship, and exit")
    p.add_argument(
        "--show-args", action="store_true", help="list the file's arguments with defaults, and exit"
    )
    p.add_argument("arguments", nargs="*", metavar="NAME:=VALUE", help="launch arguments")
    p.add_argument(
        "--duration", type=positive_float, help="stop after this many seconds (default: until stopped)"
    )
    p.add_argument(
        "--status-period",
        type=non_negative_float,
        default=5.0,
        help="seconds between status tables (default 5; 0: off)",
    )
    p.add_argument(
        "--stop-timeout",
        type=non_negative_float,
        default=5.0,
        help="seconds a node gets to exit on Ctrl-C (default 5)",
    )
    p.set_defaults(func=_launch)

    p = verbs.add_parser("run", help="Run one node in this process.")
    p.add_argument(
        "target",
        help="MODULE:CLASS, FILE.py:CLASS, a module holding one Node subclass, or a node that ships by its "
        f"module's name ({', '.join(shipped_nodes())})",
    )
    runner.add_override_arguments(p)
    p.set_defaults(func=_run)

    p = verbs.add_parser("registry", help="Run the registry (the launcher starts one when none runs).")
    p.add_argument(
        "--address",
        default=None,
        help=f"ZeroMQ endpoint (default: $PERCEPT_REGISTRY, else {DEFAULT_ADDRESS})",
    )
    p.set_defaults(func=_registry)


def _launch(args: argparse.Namespace) -> int:
    from perception.errors import PerceptError
    from perception.installed import find_launch_file, launch_files
    from perception.runtime.launcher import Launcher

    if args.list:
        for name, path in launch_files().items():
            print(f"{name:<20} {_first_comment(path)}")
        return 0
    if args.file is None:
        raise PerceptError("launch: name a launch file or one that ships (percept launch --list)")

    if args.show_args:
        path = find_launch_file(args.file)
        declared = launch_file.declared_arguments(path)  # a bad one is refused before the heading
        print(f"Arguments of {path} (NAME:=VALUE):")
        for name, default, what in declared:
            shown = "required" if default is None else f"default {default!r}"
            print(f"  {name:<16} {shown}" + (f"  # {what}" if what else ""))
        return 0
    given = runner.yaml_assignments(args.arguments, "launch argument")
    description = launch_file.load(find_launch_file(args.file), given)
    launcher = Launcher(description, status_period_s=args.status_period, stop_timeout_s=args.stop_timeout)
    return launcher.run(args.duration)


def _run(args: argparse.Namespace) -> int:
    runner.configure_logging(args.log_level)
    target = node_target(args.target)
    return runner.spin_node(runner.load_node_class(target), runner.overrides_from(args))


SHIPPED_NODES = "perception.nodes"  # where `percept run NAME` looks, as `ros2 run` in a package


def shipped_nodes() -> list[str]:
    package = importlib.util.find_spec(SHIPPED_NODES)
    locations = package.submodule_search_locations if package else None
    return sorted(m.name for m in pkgutil.iter_modules(list(locations or [])) if not m.name.startswith("_"))


def node_target(target: str) -> str:
    """A node that ships, by its module's name (`test_camera`), where no module of that name is found
    (a module of the user's by that name comes first); any other target as given."""
    if not target.isidentifier() or importlib.util.find_spec(target) is not None:
        return target
    shipped = shipped_nodes()
    if target in shipped:
        return f"{SHIPPED_NODES}.{target}"
    raise PerceptError(
        f"node {target!r}: no module of that name, nor a node that ships "
        f"({', '.join(shipped)}){did_you_mean(target, shipped)}"
    )


def _registry(args: argparse.Namespace) -> int:
    registry = Registry(args.address or registry_address())
    print(f"registry listening at {registry.address}", flush=True)
    with stop_signals_call(registry.stop):
        registry.serve()
    return 0


def _first_comment(path: Path) -> str:
    """What a launch file runs: the first sentence of its opening comment (the first line alone was cut
    mid-sentence, or ended in the colon before its examples), up to its first colon when that is long."""
    words: list[str] = []
    for line in path.read_text().splitlines():
        if not line.startswith("#") or line.startswith("#  "):  # the comment's end, or its examples
            break
        words.append(line.lstrip("# ").strip())
        if words[-1].endswith((".", ":")):
            break
    sentence = " ".join(words).split(". ")[0].rstrip(".:")
    if len(sentence) > 110 and ": " in sentence:
        sentence = sentence.split(": ")[0]
    return sentence
