"""percept service list | type | call"""

from __future__ import annotations

import argparse
from typing import Any

from perception import msgs
from perception.cli.common import did_you_mean, format_value, positive_float, yaml_argument
from perception.cli.topic import build_message
from perception.errors import ServiceUnavailable
from perception.runtime.graph import graph_nodes, tool_node
from perception.runtime.names import is_hidden
from perception.runtime.registry import query


def register(verbs: Any) -> None:
    service = verbs.add_parser("service", help="List and call services.").add_subparsers(
        dest="action", required=True
    )
    p = service.add_parser("list", help="List services.")
    p.add_argument(
        "-t", "--show-types", action="store_true", help="show each service's request and response types"
    )
    p.add_argument("-a", "--all", action="store_true", help="include hidden nodes' services")
    p.set_defaults(func=_list)
    p = service.add_parser("type", help="Print a service's request and response types.")
    p.add_argument("name")
    p.set_defaults(func=_type)
    p = service.add_parser("call", help="Call a service with a request built from YAML.")
    p.add_argument("name")
    p.add_argument(
        "values", nargs="?", default="{}", help="request fields as YAML (default {}: the type's defaults)"
    )
    p.add_argument(
        "--timeout", type=positive_float, default=10.0, help="seconds to wait for the answer (default 10)"
    )
    p.set_defaults(func=_call)


def _list(args: argparse.Namespace) -> int:
    services = sorted(
        (s["name"], s["request"], s["response"]) for n in graph_nodes(args.all) for s in n["services"]
    )
    for name, request, response in services:
        print(f"{name} [{request} -> {response}]" if args.show_types else name)
    return 0


def _known_service(name: str) -> dict[str, Any]:
    """The registry's entry for service `name` (its request and response types); an unknown one is a
    ServiceUnavailable with "did you mean" among the services `service list` shows (not tools' hidden ones)."""
    found = query("service", name=name)
    if not found.get("ok"):
        visible = [known for known in found.get("known", []) if not is_hidden(known)]
        raise ServiceUnavailable(
            f"no service {name} in the graph{did_you_mean(name, visible)} (percept service list)"
        )
    return found


def _type(args: argparse.Namespace) -> int:
    found = _known_service(args.name)
    print(f"{found['request']} -> {found['response']}")  # as `service list -t` shows it
    return 0


def _call(args: argparse.Namespace) -> int:
    found = _known_service(args.name)
    request_type = msgs.message_type(found["request"])
    response_type = msgs.message_type(found["response"])
    request = build_message(request_type.TYPE_NAME, yaml_argument(args.values, "request") or {})
    with tool_node("call") as node:
        client = node.create_client(args.name, request_type, response_type)
        print(f"requester: making request: {format_value(request)}".replace("\n", " "))
        response = client.call(request, timeout_s=args.timeout)
    print("response:")
    print(format_value(response, indent=1))
    return 0
