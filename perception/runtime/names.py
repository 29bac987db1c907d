"""Topic, service and node name rules and resolution (the ROS rules, trimmed).

Names are absolute (`/camera/image`), relative (`image`, resolved under the node's namespace) or private
(`~/stats`, resolved under the node's own name). Remappings apply to the resolved name.
"""

from __future__ import annotations

import re

from perception.errors import InvalidNameError

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_hidden(name: str) -> bool:
    """A tool's node or topic: a part of its name starts with '_'."""
    return any(part.startswith("_") for part in name.split("/"))


def validate(name: str, kind: str = "topic") -> str:
    """Return `name` if it is a valid absolute name, else raise InvalidNameError pointing at the fault."""
    if not name.startswith("/"):
        raise InvalidNameError(kind, name, 0, "must be absolute (start with '/')")
    if name == "/":
        return name
    if name.endswith("/"):
        raise InvalidNameError(kind, name, len(name) - 1, "must not end with '/'")
    position = 1
    for token in name[1:].split("/"):
        if token == "":
            raise InvalidNameError(kind, name, position, "empty segment ('//')")
        match = _TOKEN.match(token)
        if match is None or match.end() != len(token):
            bad = position + (0 if match is None else match.end())
            raise InvalidNameError(
                kind, name, bad, "segments are letters, digits and '_' and must not start with a digit"
            )
        position += len(token) + 1
    return name


def namespace_of(namespace: str) -> str:
    """Normalise a namespace to an absolute name ('' and '/' both mean the root)."""
    if namespace in ("", "/"):
        return "/"
    ns = namespace if namespace.startswith("/") else "/" + namespace
    return validate(ns.rstrip("/"), "namespace")


def join(parent: str, child: str) -> str:
    return parent + child if parent.endswith("/") else f"{parent}/{child}"


def resolve(
    name: str,
    *,
    namespace: str,
    node_name: str,
    remappings: dict[str, str] | None = None,
    kind: str = "topic",
) -> str:
    """Resolve a user-given name to an absolute one, then apply remappings."""
    return resolve_remapped(name, namespace=namespace, node_name=node_name, remappings=remappings, kind=kind)[
        0
    ]


def resolve_remapped(
    name: str,
    *,
    namespace: str,
    node_name: str,
    remappings: dict[str, str] | None = None,
    kind: str = "topic",
) -> tuple[str, str, str | None]:
    """`resolve`, the name before remapping, and the source of the remapping it took (None when none
    did): a node tells a remapping that no name of its takes, a typo."""
    if not name:
        raise InvalidNameError(kind, name, 0, "must not be empty")
    ns = namespace_of(namespace)
    if name.startswith("/"):
        resolved = name
    elif name == "~":
        resolved = join(ns, node_name)
    elif name.startswith("~/"):
        resolved = join(join(ns, node_name), name[2:])
    else:
        resolved = join(ns, name)
    resolved = validate(resolved, kind)
    if remappings:
        for source, target in remappings.items():
            source_abs = resolve(source, namespace=ns, node_name=node_name, kind=kind)
            if source_abs == resolved:
                return resolve(target, namespace=ns, node_name=node_name, kind=kind), resolved, source
    return resolved, resolved, None
