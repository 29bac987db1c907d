"""Process-wide settings shared by the nodes of one process: the ZeroMQ context, where the registry is,
which address sockets bind, and the overrides a launcher or `percept run` passed on the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import zmq

from perception.registry import registry_address
from perception.transport import default_host


@dataclass
class NodeOverrides:
    """What the command line says about the node this process runs (like `--ros-args`)."""

    name: str | None = None
    namespace: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)


class Context:
    _default: Context | None = None

    def __init__(
        self,
        *,
        registry: str | None = None,
        host: str | None = None,
        overrides: NodeOverrides | None = None,
    ) -> None:
        self.zmq: zmq.Context[Any] = zmq.Context()
        self.registry = registry or registry_address()
        self.host = host or default_host()
        self.overrides = overrides or NodeOverrides()

    @classmethod
    def default(cls) -> Context:
        if cls._default is None:
            cls._default = cls()
        return cls._default

    @classmethod
    def set_default(cls, context: Context) -> None:
        cls._default = context
