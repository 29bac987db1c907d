"""Looking at the running graph from a tool: a hidden node to subscribe or call with, and the nodes the
registry knows. The CLI verbs and the viewer both use these (neither imports the other)."""

from __future__ import annotations

import os
from typing import Any

from perception.runtime import registry
from perception.runtime.context import Context
from perception.runtime.names import is_hidden
from perception.runtime.node import Node


def tool_node(purpose: str) -> Node:
    """A hidden node (its name starts with '_') for a tool that needs to subscribe or call."""
    return Node(f"_percept_{purpose}_{os.getpid()}", context=Context(), stats_period_s=3600.0)


def graph_nodes(include_hidden: bool = False, timeout_s: float = 1.0) -> list[dict[str, Any]]:
    """The nodes the registry knows, by name; hidden ones (a name part starting with '_') on request."""
    nodes = registry.query("graph", timeout_s=timeout_s)["nodes"]
    if not include_hidden:
        nodes = [n for n in nodes if not is_hidden(n["name"])]
    return sorted(nodes, key=lambda n: n["name"])
