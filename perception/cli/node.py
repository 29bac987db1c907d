"""percept node list | info"""

from __future__ import annotations

import argparse
import time
from typing import Any

from perception.cli.common import graph_node
from perception.errors import did_you_mean
from perception.msgs import NodeStats
from perception.runtime.graph import graph_nodes, tool_node
from perception.runtime.node import STATS_TOPIC
from perception.runtime.stats import SILENT_AFTER_S, problems, rate_text


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
    published = {pub["topic"] for other in graph_nodes(include_hidden=True) for pub in other["publishers"]}
    unpublished = 0
    for sub in node["subscriptions"]:
        # A mistyped remapping (`detections:=/detection`) listens to nothing, and its rate of 0 looks
        # like a quiet publisher: say it, with the topic it may have meant.
        alone = sub["topic"] not in published
        # Only one that names a published topic nearly is a problem: an input that comes only now and
        # then (the planner's attempts, without a pick loop) has no publisher by design.
        close = did_you_mean(sub["topic"], published) if alone else ""
        unpublished += bool(close)
        hint = f"  (no publisher{close})" if alone else ""
        print(f"    {sub['topic']}: {sub['type']}{hint}")
    print("  Services:")
    for srv in node["services"]:
        print(f"    {srv['name']}: {srv['request']} -> {srv['response']}")
    stats = _latest_stats(node["name"])
    if stats is None:  # as the launch status table puts it
        print(f"  Traffic: no stats from it within {SILENT_AFTER_S:g} s: in a long callback (or a tool's)")
        return 0
    print("  Traffic (msgs/s over its last second; > out, < in):")
    for topic in stats.topics:
        print(f"    {'>' if topic.direction == 'pub' else '<'}{topic.topic} {rate_text(topic)}")
    lonely = (
        f"{unpublished} subscription{'s' if unpublished > 1 else ''} with no publisher" if unpublished else ""
    )
    print(f"  Problems: {', '.join(filter(None, [problems(stats), lonely])) or 'none'}")
    return 0


def _latest_stats(name: str) -> NodeStats | None:
    """The node's next stats message (what the launcher's status table is made from)."""
    with tool_node("node_info") as listener:
        got: list[NodeStats] = []
        listener.create_subscription(
            NodeStats, STATS_TOPIC, lambda msg: got.append(msg) if msg.node == name else None
        )
        deadline = time.monotonic() + SILENT_AFTER_S
        while not got and time.monotonic() < deadline:
            listener.spin_once(0.1)
        return got[0] if got else None
