"""An in-process harness for one node, in the manner of dora's MockNode: feed messages to the node's
subscriptions, collect what it publishes, call its services and run its timers, with no socket, no
registry and no other process.

Messages still go through the wire format both ways (encoded, then decoded as a subscriber would), so
a field the wire cannot carry fails here as it would on the bus, and the node's stats count what it
received and dropped exactly as they do when it runs for real. Use it for node-adapter tests; tests of
the bus itself (discovery, processes, rates) keep real processes and real sockets.

    with NodeHarness(TrackerNode, parameters={"max_lost_s": 1.0}) as harness:
        harness.feed("/camera/camera_info", info)
        harness.feed("/detections", detections)
        tracks = harness.published("/tracks")
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import zmq

from perception.errors import ServiceUnavailable
from perception.msgs import Message
from perception.runtime import wire
from perception.runtime.context import Context, NodeOverrides
from perception.runtime.node import Node

N = TypeVar("N", bound=Node)


class _CapturingOutlet:
    """A publisher's outlet that keeps the frames it is given."""

    socket = None

    def __init__(self, topic: bytes) -> None:
        self.endpoint = f"inproc://harness{topic.decode()}"
        self.sent: list[list[Any]] = []

    def send(self, frames: list[Any], src: str = "", n: int = 0) -> int:
        # Copy now: a publisher may reuse its buffers after publish() returns, as it may on the bus.
        self.sent.append([bytes(memoryview(f)) if not isinstance(f, bytes) else f for f in frames])
        return 0

    def loan(self, shape: tuple[int, ...], dtype: Any) -> None:
        return None  # no shared memory in-process: the publisher hands out an ordinary array

    def subscriber_count(self) -> int:
        return 1  # the harness listens to everything

    def close(self) -> None:
        pass


class _FedInlet:
    """A subscription's inlet that hands over what the harness fed it."""

    socket = None
    local = None
    local_fd = None
    cut_off = 0  # nothing fed is ever too large to be read
    max_bytes = 0

    def __init__(self, topic: bytes) -> None:
        self.topic = topic
        self.endpoints: set[str] = set()
        self.pending: list[list[zmq.Frame]] = []

    def set_endpoints(
        self,
        endpoints: list[str],
        local: dict[str, str] | None = None,
        server_keys: dict[str, str] | None = None,
    ) -> list[str]:
        return []

    def drain(self, limit: int) -> list[list[zmq.Frame]]:
        taken, self.pending = self.pending[:limit], self.pending[limit:]
        return taken

    def close(self) -> None:
        pass


class _NoRegistry:
    """Discovery that does nothing: the harness wires the node's endpoints itself."""

    def start(self) -> None:
        pass

    def changed(self) -> None:
        pass

    def take_endpoints(self) -> None:
        return None

    def stop(self, uid: str) -> None:
        pass


class HarnessContext(Context):
    """A context whose endpoints are in-process stand-ins: no ZeroMQ socket is ever made."""

    def __init__(self, overrides: NodeOverrides | None = None) -> None:  # no ZeroMQ context either
        self.registry = "inproc://no-registry"
        self.host = "127.0.0.1"
        self.overrides = overrides or NodeOverrides()
        self.outlets: dict[str, list[_CapturingOutlet]] = {}
        self.inlets: dict[str, list[_FedInlet]] = {}
        self.nodes: weakref.WeakSet[Any] = weakref.WeakSet()

    def close(self) -> None:
        """Nothing to end: no ZeroMQ context, no ZAP handler."""

    def outlet(self, topic: bytes, send_hwm: int) -> Any:
        outlet = _CapturingOutlet(topic)
        self.outlets.setdefault(topic.decode(), []).append(outlet)
        return outlet

    def inlet(self, topic: bytes, receive_hwm: int, max_bytes: int) -> Any:
        inlet = _FedInlet(topic)
        self.inlets.setdefault(topic.decode(), []).append(inlet)
        return inlet

    def service_server(self, max_bytes: int, name: str) -> tuple[Any, str]:
        return None, "inproc://harness-service"

    def refused_connections(self) -> int:
        return 0  # nothing listens

    def service_client(self, endpoint: str, max_bytes: int, server_key: str | None = None) -> Any:
        raise ServiceUnavailable(f"the node harness has no service at {endpoint} to call")

    def discovery(self, uid: str, registration: Callable[[], dict[str, Any]], log: logging.Logger) -> Any:
        return _NoRegistry(), None


class NodeHarness(Generic[N]):
    """One node built in this process on a `HarnessContext`, and the means to drive it."""

    def __init__(
        self,
        node_class: Callable[[], N],
        *,
        parameters: dict[str, Any] | None = None,
        remappings: dict[str, str] | None = None,
        name: str | None = None,
        namespace: str | None = None,
    ) -> None:
        overrides = NodeOverrides(
            name=name,
            namespace=namespace,
            parameters=dict(parameters or {}),
            remappings=dict(remappings or {}),
        )
        self.context = HarnessContext(overrides)
        # Nodes take their context from the process default, as `perception.run` sets it.
        previous = Context._default
        Context.set_default(self.context)
        try:
            self.node: N = node_class()
        finally:
            Context.set_default(previous)
        self._read: dict[str, int] = {}
        self._fed_count: dict[str, int] = {}

    # -- driving the node --------------------------------------------------------------------------

    def feed(self, topic: str, msg: Message, *, dispatch: bool = True) -> None:
        """Deliver `msg` on `topic` (a resolved name) to every subscription of the node on it, and
        run their callbacks now unless `dispatch=False` (then `dispatch()` runs what is queued)."""
        inlets = self.context.inlets.get(topic)
        if not inlets:
            known = ", ".join(sorted(self.context.inlets)) or "none"
            raise KeyError(f"{self.node.fqn} subscribes to no topic {topic} (its subscriptions: {known})")
        sequence = self._fed_count[topic] = self._fed_count.get(topic, 0) + 1  # as a publisher's: no gap
        encoded = wire.encode(topic.encode(), msg, "harness", sequence)
        frames = [zmq.Frame(bytes(memoryview(f))) for f in encoded]
        for inlet in inlets:
            inlet.pending.append(frames)
        if dispatch:
            self.dispatch()

    def dispatch(self) -> None:
        """Run the callbacks for everything fed so far, as one turn of the node's executor does. A
        callback that raises is counted and logged as on the bus, and its exception is raised here once
        everything fed has been handed over: in a test it is a failure (as rclpy's executor raises it),
        not a log line under a passing test. `pytest.raises` around a feed tests a refusal."""
        failures: list[BaseException] = []
        for subscription in self.node._subscriptions:
            subscription._receive()
            callback = subscription._callback

            def recording(item: Any, callback: Callable[[Any], None] = callback) -> None:
                try:
                    callback(item)
                except Exception as exc:
                    failures.append(exc)
                    raise  # on to the subscription, which counts and logs it

            subscription._callback = recording
            try:
                subscription._dispatch()
            finally:
                subscription._callback = callback
        if failures:
            raise failures[0]

    def run_timers(self) -> None:
        """Run every timer's callback once, now (the node's stats timer included)."""
        for _, _, timer in sorted(self.node._timers):
            if not timer.cancelled:
                timer.callback()

    def call(self, service: str, request: Message) -> Message:
        """Call one of the node's services (a resolved name, or `~/name`) and return its response."""
        name = self.node.resolve(service, "service")
        for server in self.node._services:
            if server.name == name:
                request = wire.decode(wire.encode(name.encode(), request), server.request_type).msg
                response = server.respond(request)
                answer: Message = wire.decode(wire.encode(name.encode(), response), server.response_type).msg
                return answer
        known = ", ".join(s.name for s in self.node._services)
        raise ServiceUnavailable(f"{self.node.fqn} serves no {name} (its services: {known})")

    # -- what came out -----------------------------------------------------------------------------

    def published(self, topic: str, msg_type: type[Message] | None = None) -> list[Any]:
        """Everything the node has published on `topic` so far, decoded as a subscriber would. A topic
        the node has no publisher on is a KeyError naming those it has: a mistyped topic would
        otherwise read as "published nothing", which a test may well assert."""
        if topic not in self.context.outlets:
            known = ", ".join(sorted(self.context.outlets)) or "none"
            raise KeyError(f"{self.node.fqn} publishes no topic {topic} (its publishers: {known})")
        messages = []
        for outlet in self.context.outlets[topic]:
            for frames in outlet.sent:
                messages.append(wire.decode(frames, msg_type).msg)
        return messages

    def take(self, topic: str, msg_type: type[Message] | None = None) -> list[Any]:
        """What the node published on `topic` since the last `take` of it."""
        everything = self.published(topic, msg_type)
        start = self._read.get(topic, 0)
        self._read[topic] = len(everything)
        return everything[start:]

    @property
    def topics(self) -> list[str]:
        """The topics the node has publishers on."""
        return sorted(self.context.outlets)

    def close(self) -> None:
        self.node.destroy()

    def __enter__(self) -> NodeHarness[N]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
