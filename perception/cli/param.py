"""percept param list | get | set"""

from __future__ import annotations

import argparse
from typing import Any

from perception.cli.common import yaml_argument
from perception.errors import PerceptError
from perception.msgs import GetParameters, ParameterValues, Result, SetParameters
from perception.runtime.graph import tool_node


def register(verbs: Any) -> None:
    param = verbs.add_parser("param", help="Read and change node parameters.").add_subparsers(
        dest="action", required=True
    )
    p = param.add_parser("list", help="List a node's parameters with values and types.")
    p.add_argument("node")
    p.set_defaults(func=_list)
    p = param.add_parser("get", help="Print a parameter's value.")
    p.add_argument("node")
    p.add_argument("name")
    p.set_defaults(func=_get)
    p = param.add_parser("set", help="Set a parameter (value parsed as YAML).")
    p.add_argument("node")
    p.add_argument("name")
    p.add_argument("value")
    p.set_defaults(func=_set)
    for sub in (param.choices["list"], param.choices["get"], param.choices["set"]):
        sub.add_argument("--timeout", type=float, default=3.0)


def _values(node_name: str, names: list[str], timeout: float) -> ParameterValues:
    with tool_node("param") as node:
        client = node.create_client(f"{node_name}/get_parameters", GetParameters, ParameterValues)
        return client.call(GetParameters(names=names), timeout_s=timeout)


def _list(args: argparse.Namespace) -> int:
    reply = _values(args.node, [], args.timeout)
    for name in sorted(reply.values):
        description = f"  # {reply.descriptions[name]}" if reply.descriptions.get(name) else ""
        print(f"{name}: {reply.values[name]!r} ({reply.types[name]}){description}")
    return 0


def _get(args: argparse.Namespace) -> int:
    reply = _values(args.node, [args.name], args.timeout)
    print(f"{reply.types[args.name]} value is: {reply.values[args.name]!r}")
    return 0


def _set(args: argparse.Namespace) -> int:
    value = yaml_argument(args.value, "value")
    with tool_node("param") as node:
        client = node.create_client(f"{args.node}/set_parameters", SetParameters, Result)
        result = client.call(SetParameters(values={args.name: value}), timeout_s=args.timeout)
    if not result.success:
        raise PerceptError(f"setting {args.name} on {args.node} failed: {result.message}")
    print("Set parameter successful")
    return 0
