"""Process-wide settings shared by the nodes of one process: the ZeroMQ context, where the registry is,
which address sockets bind, and the overrides a launcher or `percept run` passed on the command line.

The context is also what makes a node's endpoints: publishers, subscriptions, services and clients ask
it for their outlet, inlet or socket, so they need the context and not the node, and the in-process
harness (perception.runtime.harness) swaps in endpoints that need no socket at all.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from perception.runtime import shm, transport
from perception.runtime.gatekeeper import Gatekeeper
from perception.runtime.registry import registry_address
from perception.runtime.registry_link import RegistryLink
from perception.runtime.security import Keys
from perception.runtime.transport import default_host

log = logging.getLogger(__name__)


@dataclass
class NodeOverrides:
    """What the command line says about the node this process runs (like `--ros-args`)."""

    name: str | None = None
    namespace: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)
    parameter_files: list[Path] = field(
        default_factory=list
    )  # read for the node's own name; `parameters` wins
    # Names among `parameters` given to every node by a pattern section (params.FileValues): a node
    # that does not declare one is not warned about it.
    shared_parameters: set[str] = field(default_factory=set)


class Context:
    _default: Context | None = None

    def __init__(
        self,
        *,
        registry: str | None = None,
        host: str | None = None,
        overrides: NodeOverrides | None = None,
        shared_memory: bool | None = None,
        keys: Keys | bool | None = None,
    ) -> None:
        """`keys`: this process's CURVE keys (None: PERCEPT_KEYSTORE's, if set; False: none)."""
        self.zmq: zmq.Context[Any] = zmq.Context()
        self.keys = Keys.resolve(keys)
        self._gatekeeper: Gatekeeper | None = Gatekeeper(self.zmq, self.keys)
        # Same-host pairs through a pipe and shared memory (PERCEPT_SHM=off turns it off everywhere).
        # They are not encrypted: with a keystore only PERCEPT_SHM=on in so many words keeps them.
        wanted = shm.asked_for() if self.keys else shm.enabled()
        self.shared_memory = wanted if shared_memory is None else shared_memory and shm.enabled()
        self.registry = registry or registry_address()
        self.host = host or default_host()
        self.overrides = overrides or NodeOverrides()
        # The nodes made on this context and not yet destroyed: close() destroys them first, or their
        # registry links' threads would meet closed sockets (a traceback each).
        self.nodes: weakref.WeakSet[Any] = weakref.WeakSet()

    def close(self) -> None:
        """Destroy the nodes still on this context, stop the gatekeeper's thread (the ZAP handler) and
        end the ZeroMQ context with its I/O thread, for a process that makes contexts and outlives them
        (a benchmark makes one per side and round; an application may make its own). Stop spinning its
        nodes first (a node is destroyed from the thread that closes). Closing twice does nothing; a
        process that ends needs none of it."""
        for node in list(self.nodes):
            try:
                node.destroy()
            except Exception:  # its on_shutdown raised: the others, and the context, still close
                log.exception("destroying %s while closing its context", node.fqn)
        if self._gatekeeper is not None:
            self._gatekeeper.stop()
            self._gatekeeper = None
        if not self.zmq.closed:
            self.zmq.destroy(linger=0)

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refused_connections(self) -> int:
        """Connections to this process's sockets refused so far (perception.runtime.gatekeeper)."""
        return self._gatekeeper.refused if self._gatekeeper is not None else 0

    @classmethod
    def default(cls) -> Context:
        if cls._default is None:
            cls._default = cls()
        return cls._default

    @classmethod
    def set_default(cls, context: Context | None) -> None:
        cls._default = context

    # -- endpoints ---------------------------------------------------------------------------------

    def outlet(self, topic: bytes, send_hwm: int) -> transport.Outlet:
        return transport.Outlet(
            self.zmq, self.host, topic, send_hwm, local=self.shared_memory, gatekeeper=self._gatekeeper
        )

    def inlet(self, topic: bytes, receive_hwm: int, max_bytes: int) -> transport.Inlet:
        return transport.Inlet(
            self.zmq, topic, receive_hwm, max_bytes, local=self.shared_memory, keys=self.keys
        )

    def service_server(self, max_bytes: int, name: str) -> tuple[Any, str]:
        return transport.service_server(self.zmq, self.host, max_bytes, self._gatekeeper, f"service {name}")

    def service_client(self, endpoint: str, max_bytes: int, server_key: str | None = None) -> Any:
        return transport.service_client(self.zmq, endpoint, max_bytes, self.keys, server_key)

    def discovery(
        self, uid: str, registration: Callable[[], dict[str, Any]], log: logging.Logger
    ) -> tuple[RegistryLink, Any]:
        """The node's link to the registry and the socket that wakes its executor when the link has
        learnt new publisher endpoints (ZeroMQ sockets are not thread-safe: the executor connects)."""
        wake_endpoint = f"inproc://percept-wake-{uid}"
        wake = self.zmq.socket(zmq.PULL)
        wake.setsockopt(zmq.LINGER, 0)
        wake.bind(wake_endpoint)
        return RegistryLink(self.zmq, self.registry, registration, wake_endpoint, log, self.keys), wake
