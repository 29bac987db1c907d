"""percept param list | get | describe | set | dump | load"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from perception.cli.common import graph_node, positive_float, yaml_argument
from perception.errors import PerceptError
from perception.msgs import GetParameters, ParameterValues, Result, SetParameters
from perception.runtime.graph import graph_nodes, tool_node
from perception.runtime.params import read_parameter_file, unknown_parameter


def register(verbs: Any) -> None:
    param = verbs.add_parser("param", help="Read and change node parameters.").add_subparsers(
        dest="action", required=True
    )
    p = param.add_parser("list", help="List a node's parameters with values and types (every node's).")
    p.add_argument("node", nargs="?", help="the node (default: every node, as ros2 param list)")
    p.set_defaults(func=_list)
    p = param.add_parser("get", help="Print a parameter's value.")
    p.add_argument("node")
    p.add_argument("name")
    p.set_defaults(func=_get)
    p = param.add_parser("describe", help="Print a parameter's type, value and description (with its range).")
    p.add_argument("node")
    p.add_argument("name")
    p.set_defaults(func=_describe)
    p = param.add_parser("set", help="Set a parameter (value parsed as YAML).")
    p.add_argument("node")
    p.add_argument("name")
    p.add_argument("value")
    p.set_defaults(func=_set)
    p = param.add_parser(
        "dump", help="Print a node's parameters as YAML (percept param dump NODE > file.yaml)."
    )
    p.add_argument("node")
    p.set_defaults(func=_dump)
    p = param.add_parser("load", help="Set a node's parameters from a YAML file that `param dump` wrote.")
    p.add_argument("node")
    p.add_argument("file", type=Path)
    p.set_defaults(func=_load)
    for sub in param.choices.values():
        sub.add_argument(
            "--timeout",
            type=positive_float,
            default=3.0,
            help="seconds to wait for the node's answer (default 3)",
        )


def _known_node(name: str) -> str:
    """The node's full name; an unknown one gets "did you mean" (its services would time out)."""
    return str(graph_node(name)["name"])


def _values(node_name: str, names: list[str], timeout: float) -> ParameterValues:
    """`node_name` as `_known_node` gave it."""
    with tool_node("param") as node:
        client = node.create_client(f"{node_name}/get_parameters", GetParameters, ParameterValues)
        return client.call(GetParameters(names=names), timeout_s=timeout)


def _list(args: argparse.Namespace) -> int:
    if args.node is not None:
        _print_parameters(_values(_known_node(args.node), [], args.timeout))
        return 0
    # Every node's, a heading each; one that does not answer is the error, after the others are listed.
    failures = []
    for entry in graph_nodes():
        if not any(s["name"] == f"{entry['name']}/get_parameters" for s in entry["services"]):
            continue
        try:
            reply = _values(entry["name"], [], args.timeout)
        except PerceptError as exc:
            failures.append(str(exc))
            continue
        print(f"{entry['name']}:")
        _print_parameters(reply, indent="  ")
    if failures:
        raise PerceptError("; ".join(failures))
    return 0


def _print_parameters(reply: ParameterValues, indent: str = "") -> None:
    for name in sorted(reply.values):
        description = f"  # {reply.descriptions[name]}" if reply.descriptions.get(name) else ""
        print(f"{indent}{name}: {reply.values[name]!r} ({reply.types[name]}){description}")


def _get(args: argparse.Namespace) -> int:
    reply = _value(_known_node(args.node), args.name, args.timeout)
    print(f"{reply.types[args.name]} value is: {reply.values[args.name]!r}")
    return 0


def _describe(args: argparse.Namespace) -> int:
    """As `ros2 param describe`. Whether a parameter is read-only the get_parameters service does not say;
    a range it gives inside the description."""
    reply = _value(_known_node(args.node), args.name, args.timeout)
    print(f"Parameter name: {args.name}")
    print(f"  Type: {reply.types[args.name]}")
    print(f"  Value: {reply.values[args.name]!r}")
    print(f"  Description: {reply.descriptions.get(args.name) or '(none)'}")
    return 0


def _value(node_name: str, name: str, timeout: float) -> ParameterValues:
    """The node's parameters, `name` among them. All are asked for, so that an unknown name is said as the
    node says it, not as a service's failure (its name and the exception's class before the reason)."""
    reply = _values(node_name, [], timeout)
    if name not in reply.values:
        raise unknown_parameter(node_name, name, list(reply.values))
    return reply


def _set(args: argparse.Namespace) -> int:
    value = yaml_argument(args.value, "value")  # a bad value is named before the graph is asked
    _set_values(_known_node(args.node), {args.name: value}, args.timeout)
    print("Set parameter successful")
    return 0


def _set_values(node_name: str, values: dict[str, Any], timeout: float) -> None:
    """`node_name` as `_known_node` gave it."""
    with tool_node("param") as node:
        client = node.create_client(f"{node_name}/set_parameters", SetParameters, Result)
        result = client.call(SetParameters(values=values), timeout_s=timeout)
    if not result.success:
        raise PerceptError(f"setting {', '.join(values)} on {node_name} failed: {result.message}")


def _dump(args: argparse.Namespace) -> int:
    """The layout `ros2 param dump` writes: {node: {ros__parameters: {name: value}}} (here `parameters`)."""
    full = _known_node(args.node)
    reply = _values(full, [], args.timeout)
    print(yaml.safe_dump({full: {"parameters": dict(sorted(reply.values.items()))}}, sort_keys=False), end="")
    return 0


def _load(args: argparse.Namespace) -> int:
    full = _known_node(args.node)
    # `param dump`'s layout, ROS 2's (ros__parameters; the node's own section and /**) or a plain map.
    data = read_parameter_file(args.file, full, required=True)
    # Only what differs from the node's values is set, so a file that `param dump` wrote loads back into
    # the node it came from though it names read-only parameters (a camera's size, fixed once it runs).
    current = _values(full, [], args.timeout).values
    # What the file gives every node (/**) and this one does not declare is for other nodes (ROS 2's
    # use_sim_time for all), not an error that would refuse the whole file.
    others = [name for name in data if name in data.shared and name not in current]
    changed = {
        name: value
        for name, value in data.items()
        if name not in others and (name not in current or current[name] != value)
    }
    unchanged = [name for name in data if name not in changed and name not in others]
    if changed:
        _set_values(full, changed, args.timeout)
    kept = f" ({len(unchanged)} unchanged: {', '.join(unchanged)})" if unchanged else ""
    left = f" (left out, from a section for every node, which {full} does not declare: {', '.join(others)})"
    parameters = "parameter" if len(changed) == 1 else "parameters"
    print(
        f"Set {len(changed)} {parameters} on {full}{': ' if changed else ''}{', '.join(changed)}{kept}"
        f"{left if others else ''}"
    )
    return 0
