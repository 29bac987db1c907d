"""percept node list | info"""

from __future__ import annotations

import argparse
from typing import Any

from perception.cli.common import graph_node
from perception.runtime.graph import graph_nodes


def register(verbs: Any) -> None:
    node = verbs.add_parser("node", help="Inspect nodes.").add_subparsers(dest="action", required=True)
    p = node.add_parser("list", help="List running nodes.")
    p.add_argument("-a", "--all", action="store_true", help="include hidden nodes (names starting with _)")
    p.set_defaults(func=_list)
    p = node.add_parser("info", help="Show a node's publishers, subscriptions and services.")
    p.add_argument("name")
    p.set_defaults(func=_info)


def _list(args: argparse.Namespace) -> int:
    for node in graph_nodes(args.all):
        print(node["name"])
    return 0


def _info(args: argparse.Namespace) -> int:
    node = graph_node(args.name)
    print(f"{node['name']}  (pid {node['pid']} on {node['host']})")
    print("  Publishers:")
    for pub in node["publishers"]:
        print(f"    {pub['topic']}: {pub['type']}")
    print("  Subscriptions:")
    for sub in node["subscriptions"]:
        print(f"    {sub['topic']}: {sub['type']}")
    print("  Services:")
    for srv in node["services"]:
        print(f"    {srv['name']}: {srv['request']} -> {srv['response']}")
    return 0
