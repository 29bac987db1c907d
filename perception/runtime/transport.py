"""The one place that touches sockets for topics and services.

Nodes talk to `Outlet` (a publisher's socket), `Inlet` (a subscription's socket) and the service
socket factories below, never to ZeroMQ directly. Between two processes of one host an Outlet and an
Inlet also have a local channel (perception.runtime.local_channel: a pipe, and shared memory for large
messages), chosen per publisher-subscriber pair: a subscriber that can reach a publisher locally
registers there and does not connect to it over TCP, so each pair uses exactly one path, in order.

By default every socket binds 127.0.0.1 on a free port. Set `host` (or PERCEPT_HOST) to an interface
address to let other machines connect.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, cast

import zmq
from zmq.utils.monitor import recv_monitor_message

from perception.errors import PerceptError
from perception.runtime.gatekeeper import Gatekeeper
from perception.runtime.local_channel import LocalInlet, LocalOutlet
from perception.runtime.security import Keys, SecurityError

DEFAULT_HOST = "127.0.0.1"
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
# A connection ZeroMQ ends for a protocol error (a frame over ZMQ_MAXMSGSIZE) is not retried, where
# one that merely dropped is, within a reconnect interval (0.1-0.2 s): a disconnection followed by no
# retry within this long was a cut, and the inlet connects again itself.
CUT_OFF_AFTER_S = 2.0
MAX_SUBSCRIPTION_BYTES = 64 << 10  # a subscription frame: a flag byte and a topic name
# With shared memory on, how often the message path asks the XPUB whether a TCP subscriber came or
# went: asking costs more than the rest of a local message's publish after the frame has been written
# (13 µs of 99 on machine C at 1 kHz), and a new TCP subscriber then waits at most this long for its
# first message, as a new local one waits for the registration pipe (local_channel._REGISTRATIONS_S).
TCP_SUBSCRIBERS_CHECK_S = 0.01
_WATCHED = (
    zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_CONNECT_DELAYED
)


class Outlet:
    """A publisher's socket (an XPUB, so it can count its subscribers) and, with shared memory on, its
    local channel for subscribers on this host."""

    def __init__(
        self,
        context: zmq.Context[Any],
        host: str,
        topic: bytes,
        send_hwm: int,
        local: bool = False,
        gatekeeper: Gatekeeper | None = None,
    ) -> None:
        """`gatekeeper`: the context's, which makes the socket CURVE with a keystore (None: a bare
        socket, for tests)."""
        self.local = LocalOutlet() if local else None
        self.local_address = self.local.address if self.local else None
        self.socket: zmq.Socket[Any] = context.socket(zmq.XPUB)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_SUBSCRIPTION_BYTES)  # it reads subscriptions
        self.socket.setsockopt(zmq.SNDHWM, send_hwm)
        self.socket.setsockopt(zmq.LINGER, 200)
        # Pass every subscribe and unsubscribe up, so the count stays right with many subscribers.
        self.socket.setsockopt(zmq.XPUB_VERBOSER, 1)
        if gatekeeper is not None:
            gatekeeper.guard(self.socket, f"publisher {topic.decode(errors='replace')}")
        port = self.socket.bind_to_random_port(f"tcp://{host}")
        self.endpoint = f"tcp://{host}:{port}"
        self._topic = topic
        self._subscribers = 0
        self._subscribers_due = 0.0  # when the message path next reads the subscription events

    def send(self, frames: list[Any], src: str, n: int) -> int:
        """Send to every subscriber (`src` and `n`: the publisher id and sequence number in the
        header); returns how many local subscribers missed it (a full channel, or every
        shared-memory slot held)."""
        missed = self.local.send(frames[1:], src, n) if self.local is not None else 0
        # XPUB never blocks: a subscriber whose queue is full loses the message, which it sees as a
        # sequence gap. With no TCP subscriber, nothing is handed to ZeroMQ at all.
        if self.local is None or self._tcp_subscribers_when_due():
            self.socket.send_multipart(frames, copy=False)
        return missed

    def loan(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """A writable array in shared memory, or None (see Publisher.loan)."""
        return self.local.loan(shape, dtype) if self.local is not None else None

    def subscriber_count(self) -> int:
        local = self.local.peer_count if self.local is not None else 0
        return self._tcp_subscribers() + local

    def _tcp_subscribers_when_due(self) -> int:
        now = time.monotonic()
        if now >= self._subscribers_due:
            self._subscribers_due = now + TCP_SUBSCRIBERS_CHECK_S
            return self._tcp_subscribers()
        return self._subscribers

    def _tcp_subscribers(self) -> int:
        socket = self.socket
        while cast(int, socket.getsockopt(_EVENTS)) & _POLLIN:
            try:
                event = socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if event[1:] == self._topic:
                self._subscribers = max(0, self._subscribers + (1 if event[:1] == b"\x01" else -1))
        return self._subscribers

    def close(self) -> None:
        self.socket.close()
        if self.local is not None:
            self.local.close()


class Inlet:
    """A subscription's socket, connected to every publisher of its topic that is not reachable
    through the local channel."""

    def __init__(
        self,
        context: zmq.Context[Any],
        topic: bytes,
        receive_hwm: int,
        max_bytes: int,
        local: bool = False,
        keys: Keys | None = None,
    ) -> None:
        self.keys = keys
        self.server_keys: dict[str, str] = {}  # endpoint -> the CURVE key it serves with
        self.local = LocalInlet(topic) if local else None
        self.local_fd = self.local.fd if self.local is not None else None
        self.socket: zmq.Socket[Any] = context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, receive_hwm)
        self.socket.setsockopt(zmq.MAXMSGSIZE, max_bytes)  # a bigger frame cuts its sender off unread
        self.max_bytes = max_bytes
        self._monitor = self.socket.get_monitor_socket(_WATCHED)
        self._down: dict[str, float] = {}  # endpoint -> when it was seen disconnected, not yet retried
        self.cut_off = 0  # connections ended for a frame over max_bytes (each connected again)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SUBSCRIBE, topic)
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)  # back off retrying a vanished publisher
        self.topic = topic
        self.endpoints: set[str] = set()
        self.refused: set[str] = set()  # endpoints ZeroMQ would not connect to (a peer's bad address)
        self._connected = False  # connected over TCP to any publisher (not just the local channel)
        # Publishers joined through the local channel: their pipe -> (endpoint, CURVE key), for TCP
        # if one has no room for us (FULL).
        self._joined_locally: dict[str, tuple[str, str | None]] = {}
        self._tcp_only: set[str] = set()  # endpoints whose publisher had no row for us

    def set_endpoints(
        self,
        endpoints: list[str],
        local: dict[str, str] | None = None,
        server_keys: dict[str, str] | None = None,
    ) -> list[str]:
        """Connect to publishers not yet connected: through the local channel where `local` gives the
        publisher's local address and it is on this host, over TCP otherwise (as a CURVE client of the
        key `server_keys` gives, with a keystore: an endpoint without one is refused).

        Never disconnects: libzmq asserts when a SUB socket's pipe is torn down while a multipart
        message from it is half read (libzmq#2163), and disconnecting also throws away whatever that
        publisher had already queued here. A vanished publisher's endpoint is retried quietly, with
        backoff, and its last messages are still delivered.

        Returns what was refused this time, as "endpoint: reason": one peer advertising an address
        nobody can connect to (e.g. tcp://*:port) must not stop its subscribers.
        """
        refused = []
        local = local or {}
        for endpoint in set(endpoints) - self.endpoints - self.refused:
            address = local.get(endpoint)
            if (
                self.local is not None
                and isinstance(address, str)
                and endpoint not in self._tcp_only
                and self.local.register(address)
            ):
                self.endpoints.add(endpoint)
                key = (server_keys or {}).get(endpoint)
                self._joined_locally[address.partition(" ")[2]] = (endpoint, key)
                continue
            try:
                self._connect(endpoint, (server_keys or {}).get(endpoint))
            except (zmq.ZMQError, SecurityError) as exc:
                self.refused.add(endpoint)
                refused.append(f"{endpoint}: {exc}")
                continue
            self.endpoints.add(endpoint)
        return refused

    def drain(self, limit: int) -> list[Any]:
        """Messages already received, without waiting: up to `limit` from TCP, then what the local
        channel holds (at most one pipe read)."""
        batches: list[Any] = []
        socket = self.socket
        # Checking EVENTS first spares the exception a NOBLOCK receive raises on an empty socket.
        # (Reading parts one by one with Frame.more crashed libzmq under load: keep recv_multipart.)
        # With every publisher on the local channel the socket has no connection to read or watch.
        while self._connected and len(batches) < limit and cast(int, socket.getsockopt(_EVENTS)) & _POLLIN:
            try:
                batches.append(socket.recv_multipart(zmq.NOBLOCK, copy=False))
            except zmq.Again:
                break
        if self.local is not None:
            batches += self.local.drain()
            while self.local.full:  # a publisher with no row left for us: over TCP instead
                endpoint, key = self._joined_locally.pop(self.local.full.pop(), ("", None))
                if endpoint:
                    self._tcp_only.add(endpoint)
                    try:
                        self._connect(endpoint, key)
                    except (zmq.ZMQError, SecurityError):
                        self.endpoints.discard(endpoint)  # tried again, and refused aloud, at the next sync
        if self._connected and (cast(int, self._monitor.getsockopt(_EVENTS)) & _POLLIN or self._down):
            self._watch_connections()
        return batches

    def _watch_connections(self) -> None:
        """Connect again to a publisher whose connection ZeroMQ ended for good, and count it."""
        while cast(int, self._monitor.getsockopt(_EVENTS)) & _POLLIN:
            event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            endpoint = event["endpoint"].decode(errors="replace")
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self._down[endpoint] = time.monotonic()
            else:
                self._down.pop(endpoint, None)
        now = time.monotonic()
        for endpoint, since in list(self._down.items()):
            if now - since > CUT_OFF_AFTER_S:
                del self._down[endpoint]
                self.cut_off += 1
                # ZeroMQ keeps the ended connection on its books, and a second connect to the same
                # endpoint does nothing: forget it first. Its pipe is gone already (a protocol error
                # ends it at once), so nothing is half read (libzmq#2163, see set_endpoints).
                with contextlib.suppress(zmq.ZMQError):
                    self.socket.disconnect(endpoint)
                with contextlib.suppress(SecurityError):  # an endpoint as ZeroMQ resolved it: no key here
                    self._connect(endpoint, self.server_keys.get(endpoint))

    def _connect(self, endpoint: str, server_key: str | None) -> None:
        if self.keys is not None:
            if server_key is None:
                raise SecurityError(f"the registry gave no CURVE key for {endpoint}")
            self.keys.connect_to(self.socket, server_key)
            self.server_keys[endpoint] = server_key
        self.socket.connect(endpoint)
        self._connected = True

    def close(self) -> None:
        self.socket.disable_monitor()
        self._monitor.close()
        self.socket.close()
        if self.local is not None:
            self.local.close()


def service_server(
    context: zmq.Context[Any], host: str, max_bytes: int, gatekeeper: Gatekeeper | None, what: str
) -> tuple[zmq.Socket[Any], str]:
    """A service's socket, and where it listens; `what` names it in the gatekeeper's count."""
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, max_bytes)
    if gatekeeper is not None:
        gatekeeper.guard(socket, what)
    port = socket.bind_to_random_port(f"tcp://{host}")
    return socket, f"tcp://{host}:{port}"


def service_client(
    context: zmq.Context[Any],
    endpoint: str,
    max_bytes: int,
    keys: Keys | None = None,
    server_key: str | None = None,
) -> zmq.Socket[Any]:
    socket: zmq.Socket[Any] = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, max_bytes)
    if keys is not None:
        if server_key is None:
            raise SecurityError(f"the registry gave no CURVE key for the service at {endpoint}")
        keys.connect_to(socket, server_key)
    socket.connect(endpoint)
    return socket


# Addresses that bind every interface: a node advertises the address it binds, and no other process
# can connect to these.
BIND_ALL = ("*", "0.0.0.0", "::", "[::]")


def default_host() -> str:
    """PERCEPT_HOST: the address nodes bind and advertise (127.0.0.1 unless set)."""
    host = os.environ.get("PERCEPT_HOST", "").strip() or DEFAULT_HOST
    if host in BIND_ALL:
        raise PerceptError(
            "PERCEPT_HOST: expected the address other machines reach this one at (an interface address "
            f"or name), found {host!r}, which binds every interface and cannot be connected to"
        )
    return host
