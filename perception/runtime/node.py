"""The node and its executor: publishers, subscriptions, timers, services and parameters on one thread.

A node owns a single-threaded executor, like rclpy's: `spin()` waits on all of the node's sockets and
timers and runs callbacks one at a time, so callbacks never race each other. Discovery runs on a
background thread (perception.runtime.registry_link) so a node that never spins still registers its
publishers. The endpoints themselves live in their own modules (publisher, subscription, timer, service,
client) and are made through the node's context.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket as socketlib
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import zmq

from perception.errors import MessageError, PerceptError
from perception.msgs import (
    GetParameters,
    Header,
    Message,
    NodeStats,
    ParameterValues,
    Result,
    SetParameters,
)
from perception.runtime import names
from perception.runtime.client import Client
from perception.runtime.context import Context
from perception.runtime.params import Parameters, read_parameter_files, type_name
from perception.runtime.publisher import Publisher
from perception.runtime.qos import KEEP_LAST, QoS
from perception.runtime.service import Service
from perception.runtime.settings import number_setting
from perception.runtime.stats import STATS_PERIOD_S, Throttle, as_int64
from perception.runtime.stopping import StopFlag
from perception.runtime.subscription import RECEIVE_HWM, Subscription
from perception.runtime.timer import Timer

M = TypeVar("M", bound=Message)
Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

STATS_TOPIC = "/percept/stats"
_MAX_POLL_MS = 100
_MAX_DISPATCH_ROUNDS = 100  # upper bound on how long a shutdown request can wait to be noticed
# After a message from a publisher on this host was handed to a callback, spin_once polls without
# sleeping for this long before it blocks, so a stream that keeps coming (a camera flat out, a burst)
# finds its node awake. Waking a node that sleeps costs its publisher 30 µs more per message than
# writing to one awake (a local channel's pipe write: 33 µs against 4 µs on machine C, flat out), and
# it costs the message a wake-up. Spinning for about what a wake-up costs, then blocking, never costs
# more than twice the better choice made in hindsight (spin-then-block's 2-competitive rule; Karlin et
# al., SOSP 1991). The CPU it takes is at most this much per message: 5% of a core at 1,000 a second.
SPIN_ENV = "PERCEPT_SPIN_US"
DEFAULT_SPIN_US = 50


def spin_seconds() -> float:
    """How long a node polls without sleeping after a message (PERCEPT_SPIN_US; 0 never spins). Never
    on a single CPU: there the spin would only hold off the publisher it waits for."""
    text = os.environ.get(SPIN_ENV, str(DEFAULT_SPIN_US))
    microseconds = number_setting(
        SPIN_ENV, text, lambda v: 0 <= v <= 1_000_000, "microseconds from 0 to 1000000", PerceptError
    )
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return microseconds / 1e6 if cpus > 1 else 0.0


__all__ = ["RECEIVE_HWM", "STATS_TOPIC", "Client", "Node", "Publisher", "Service", "Subscription", "Timer"]


class Node:
    """Base class of every node.

    Subclass it, create publishers, subscriptions, timers and services in `__init__`, and start it with
    `perception.run(MyNode)`; or make one directly and call `spin()`.
    """

    def __init__(
        self,
        name: str,
        *,
        namespace: str = "",
        parameters: dict[str, Any] | None = None,
        remappings: dict[str, str] | None = None,
        context: Context | None = None,
        stats_period_s: float = STATS_PERIOD_S,
    ) -> None:
        self.context = context or Context.default()
        overrides = self.context.overrides
        self.name = overrides.name or name
        names.validate("/" + self.name, "node")
        self.namespace = names.namespace_of(overrides.namespace or namespace)
        self.fqn = names.join(self.namespace, self.name)
        self.log = logging.getLogger(self.fqn)
        self.uid = uuid.uuid4().hex[:12]
        self._remappings = {**(remappings or {}), **overrides.remappings}
        self._names_used: set[str] = set()  # as resolved before remapping
        self._remaps_used: set[str] = set()  # the remappings' sources some name matched
        from_files = read_parameter_files(overrides.parameter_files, self.fqn)
        self.parameters = Parameters(self.fqn, {**(parameters or {}), **from_files, **overrides.parameters})
        # What pattern sections (/**) give every node: not this node's typo when it does not declare it.
        self._shared_parameters = overrides.shared_parameters | (
            from_files.shared - overrides.parameters.keys()
        )

        self._lock = threading.Lock()
        self._publishers: list[Publisher[Any]] = []
        self._subscriptions: list[Subscription[Any]] = []
        self._services: list[Service[Any, Any]] = []
        self._clients: list[Client[Any, Any]] = []
        self._timers: list[tuple[float, int, Timer]] = []
        self._timer_errors = 0
        self._timer_error_log = Throttle()  # a timer at 30 Hz must not flood the log
        self._timer_ids = itertools.count()
        self._handlers: dict[Any, Callable[[], None]] = {}
        self._wakers: list[tuple[int, int]] = []  # pipes of create_waker
        self._poller = zmq.Poller()
        self._shutdown = StopFlag()
        self._checked_overrides = False
        self._destroyed = False
        self._spin_s = spin_seconds()
        self._awake_until = 0.0  # spin_once polls without sleeping until then (a message just came)

        self._registry_link, self._wake = self.context.discovery(self.uid, self._registration, self.log)
        self._add_socket(self._wake, self._apply_endpoints)
        self.context.nodes.add(self)

        self._stats_publisher = self.create_publisher(NodeStats, STATS_TOPIC)
        self.create_timer(stats_period_s, self._publish_stats)
        self.create_service("~/get_parameters", GetParameters, ParameterValues, self._get_parameters)
        self.create_service("~/set_parameters", SetParameters, Result, self._set_parameters)
        self._names_used.clear()  # a remapping's warning lists the subclass's own names, not these
        self._registry_link.start()

    # -- creating things ---------------------------------------------------------------------------

    def resolve(self, name: str, kind: str = "topic") -> str:
        resolved, before, source = names.resolve_remapped(
            name, namespace=self.namespace, node_name=self.name, remappings=self._remappings, kind=kind
        )
        # The names the node uses and the remappings they took: one that none takes is a typo, told.
        self._names_used.add(before)
        if source is not None:
            self._remaps_used.add(source)
        return resolved

    def create_publisher(self, msg_type: type[M], topic: str, *, queue_depth: int = 100) -> Publisher[M]:
        """A publisher that never blocks: it queues at most `queue_depth` unsent messages per subscriber
        (a burst), then drops, and the subscriber counts the gap. Subscribers empty this queue
        continuously, so it only fills when a subscriber's process cannot keep up at all."""
        _check_message_type(msg_type, "create_publisher")
        publisher = Publisher(self.context, msg_type, self.resolve(topic), queue_depth)
        with self._lock:
            self._publishers.append(publisher)
        self._registry_link.changed()
        return publisher

    def create_subscription(
        self,
        msg_type: type[M] | None,
        topic: str,
        callback: Callable[[M], None],
        qos: QoS = KEEP_LAST,
        *,
        raw: bool = False,
    ) -> Subscription[M]:
        """Call `callback(msg)` on the node's thread for each message kept by `qos`.

        `msg_type=None` accepts any type (messages of types not imported here arrive as UnknownMessage).
        """
        if msg_type is not None:
            _check_message_type(msg_type, "create_subscription")
        subscription = Subscription(self.context, self.log, msg_type, self.resolve(topic), callback, qos, raw)
        with self._lock:
            self._subscriptions.append(subscription)
        if subscription._inlet.socket is not None:  # the in-process harness has no sockets
            self._poller.register(subscription._inlet.socket, zmq.POLLIN)
        if subscription._inlet.local_fd is not None:  # the same-host channel's pipe
            self._poller.register(subscription._inlet.local_fd, zmq.POLLIN)
        self._registry_link.changed()
        return subscription

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(period_s, callback)
        heapq.heappush(self._timers, (timer.next_due, next(self._timer_ids), timer))
        return timer

    def create_waker(self, callback: Callable[[], None]) -> Callable[[], None]:
        """A function any thread may call to have `callback` run on the node's thread soon after (a
        library's receive thread hands work over with it: the node's sockets stay on one thread).
        Calls that come while one is pending run `callback` once."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        self._wakers.append((read_fd, write_fd))

        def on_wake() -> None:
            with contextlib.suppress(BlockingIOError):
                os.read(read_fd, 4096)
            callback()

        def wake() -> None:
            with contextlib.suppress(BlockingIOError, OSError):  # full: a wake is pending; closed: done
                os.write(write_fd, b"\0")

        self._add_socket(read_fd, on_wake)
        return wake

    def create_service(
        self,
        name: str,
        request_type: type[Req],
        response_type: type[Resp],
        handler: Callable[[Req], Resp],
    ) -> Service[Req, Resp]:
        service = Service(
            self.context, self.log, self.resolve(name, "service"), request_type, response_type, handler
        )
        with self._lock:
            self._services.append(service)
        self._add_socket(service._socket, service._receive)
        self._registry_link.changed()
        return service

    def create_client(
        self, name: str, request_type: type[Req], response_type: type[Resp]
    ) -> Client[Req, Resp]:
        client = Client(self.context, self.resolve(name, "service"), request_type, response_type)
        self._clients.append(client)
        return client

    def declare_parameter(
        self,
        name: str,
        default: Any,
        description: str = "",
        *,
        read_only: bool = False,
        range: tuple[float, float] | None = None,
    ) -> Any:
        """Declare a typed parameter (its type is the default's) and return its value. A number may
        have a `range` (both ends included): a value outside it is refused at start and when set. A
        non-empty list default types its items too (`[1.0, 2.0]`: floats, ints widened), as ROS 2 types
        an array; an empty one takes any items."""
        return self.parameters.declare(name, default, description, read_only=read_only, range=range)

    def get_parameter(self, name: str) -> Any:
        return self.parameters.get(name)

    def header(self, frame_id: str = "") -> Header:
        """A header stamped now (ns since the epoch, this machine's clock) in `frame_id`.
        Its `seq` is 0: give one yourself where a frame count matters (subscribers count losses by the
        bus's own per-publisher numbers, not by it)."""
        return Header.now(frame_id)

    # -- running -----------------------------------------------------------------------------------

    def spin(self, duration_s: float | None = None) -> None:
        """Run callbacks until shutdown is requested (or for `duration_s`)."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not self._shutdown.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return
            self.spin_once(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))

    def spin_once(self, timeout_s: float = 0.1) -> None:
        """Wait up to `timeout_s` for work, then run what is due: timers, services, and the messages
        waiting in the subscriptions, a subscription at a time. A subscription's socket is emptied into
        its queue just before its queue is handed over, so a latest-only one always gets the newest."""
        if not self._checked_overrides:
            self._check_overrides()
        timeout_ms = min(_MAX_POLL_MS, int(timeout_s * 1000))
        if self._timers:
            until_timer = self._timers[0][0] - time.monotonic()
            timeout_ms = max(0, min(timeout_ms, int(until_timer * 1000) + 1))
        for socket, _ in self._poll(timeout_ms):
            handler = self._handlers.get(socket)
            if handler is not None:  # subscription sockets are read below
                handler()
        self._run_due_timers()
        # Bounded, so timers and services wait at most this many rounds under a flood.
        any_dispatched = False
        for _ in range(_MAX_DISPATCH_ROUNDS):
            dispatched = False
            for subscription in self._subscriptions:
                subscription._receive()
                dispatched |= subscription._dispatch()
            any_dispatched |= dispatched
            if not dispatched or self._shutdown.is_set():
                break
            if self._timers and self._timers[0][0] <= time.monotonic():
                break
        if any_dispatched and self._spin_s and self._fed_locally():
            self._awake_until = time.monotonic() + self._spin_s

    def _fed_locally(self) -> bool:
        """Whether a publisher on this host writes to one of this node's subscriptions through the local
        channel, where waking this node is the publisher's cost. Over TCP this node's own ZeroMQ thread
        wakes it, and spinning would take a core from that thread."""
        return any(s._inlet.local is not None and s._inlet.local.publisher_count for s in self._subscriptions)

    def _poll(self, timeout_ms: int) -> list[tuple[Any, int]]:
        """The poller's events: right after a message, polled without sleeping for up to the spin time
        (SPIN_ENV), then waited for as usual."""
        if timeout_ms > 0 and self._awake_until:
            until = min(self._awake_until, time.monotonic() + timeout_ms / 1000)
            self._awake_until = 0.0
            while time.monotonic() < until:
                events = self._poller.poll(0)
                if events:
                    return events
        return self._poller.poll(timeout_ms)

    def _check_overrides(self) -> None:
        """Overrides that match nothing the node made by its first spin: a typo, which would otherwise
        leave a default in force or a topic unconnected without a word."""
        self._checked_overrides = True
        for name in self.parameters.unused_overrides():
            if name in self._shared_parameters:
                continue
            self.log.warning(
                "parameter override %r matches no declared parameter (declared: %s)",
                name,
                ", ".join(self.parameters.names()),
            )
        for source in self._remappings:
            if source not in self._remaps_used:
                self.log.warning(
                    "remapping %s:=%s matches no name this node uses (its names: %s)",
                    source,
                    self._remappings[source],
                    ", ".join(sorted(self._names_used)) or "none",
                )

    def request_shutdown(self) -> None:
        """Make `spin()` return within 0.1 s; safe from signal handlers and other threads."""
        self._shutdown.set()

    @property
    def shutdown_requested(self) -> bool:
        return self._shutdown.is_set()

    def on_shutdown(self) -> None:
        """Override to release devices or files; called once by `destroy()`."""

    def destroy(self) -> None:
        """Unregister and close every socket. Idempotent."""
        with self._lock:  # from the node's thread and from its context's close(): once
            if self._destroyed:
                return
            self._destroyed = True
        self.context.nodes.discard(self)
        try:
            self.on_shutdown()
        finally:
            self._registry_link.stop(self.uid)
            for client in self._clients:
                client.close()
            closables: list[Any] = [*self._publishers, *self._subscriptions, *self._services]
            for closable in closables:
                closable._close()
            if self._wake is not None:
                self._wake.close()
            for read_fd, write_fd in self._wakers:
                self._poller.unregister(read_fd)
                os.close(read_fd)
                os.close(write_fd)

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- internals ---------------------------------------------------------------------------------

    def _add_socket(self, socket: Any, handler: Callable[[], None]) -> None:
        if socket is None:  # the in-process harness calls the handler itself
            return
        self._handlers[socket] = handler
        self._poller.register(socket, zmq.POLLIN)

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            # Schedule from the due time, not from now, so the rate does not drift; skip missed ticks.
            timer.next_due += timer.period_s
            if timer.next_due <= now:
                timer.next_due = now + timer.period_s
            heapq.heappush(self._timers, (timer.next_due, next(self._timer_ids), timer))
            try:
                timer.callback()
            except Exception:
                self._timer_errors += 1
                if self._timer_error_log.ready():
                    self.log.error(
                        "timer callback raised (%d so far):\n%s", self._timer_errors, traceback.format_exc()
                    )

    def _apply_endpoints(self) -> None:
        while self._wake is not None:
            try:
                self._wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        discovered = self._registry_link.take_endpoints()
        if discovered is None:
            return
        endpoints, local, server_keys = discovered
        for subscription in self._subscriptions:
            if subscription.topic in endpoints:
                found = endpoints[subscription.topic]
                for refused in subscription._inlet.set_endpoints(found, local, server_keys):
                    self.log.warning("cannot connect to a publisher of %s at %s", subscription.topic, refused)

    def _registration(self) -> dict[str, Any]:
        with self._lock:
            return {
                "uid": self.uid,
                "name": self.fqn,
                "pid": os.getpid(),
                "host": socketlib.gethostname(),
                "publishers": [
                    {
                        "topic": p.topic,
                        "type": p.msg_type.TYPE_NAME,
                        "endpoint": p.endpoint,
                        **({"local": p.local_address} if p.local_address else {}),
                    }
                    for p in self._publishers
                ],
                "subscriptions": [
                    {"topic": s.topic, "type": s.stats.type_name, "depth": s.qos.depth}
                    for s in self._subscriptions
                ],
                "services": [
                    {
                        "name": s.name,
                        "request": s.request_type.TYPE_NAME,
                        "response": s.response_type.TYPE_NAME,
                        "endpoint": s.endpoint,
                    }
                    for s in self._services
                ],
            }

    def _publish_stats(self) -> None:
        endpoints = [p.stats for p in self._publishers if p is not self._stats_publisher]
        endpoints += [s.stats for s in self._subscriptions]
        self._stats_publisher.publish(
            NodeStats(
                header=self.header(),
                node=self.fqn,
                pid=os.getpid(),
                topics=[e.snapshot() for e in endpoints],
                timer_errors=as_int64(self._timer_errors),
                service_errors=as_int64(sum(s.failures for s in self._services)),
                refused_connections=as_int64(self.context.refused_connections()),
            )
        )

    def _get_parameters(self, request: GetParameters) -> ParameterValues:
        params = self.parameters.describe(request.names or None)
        return ParameterValues(
            values={n: p.value for n, p in params.items()},
            types={n: type_name(p.type) for n, p in params.items()},
            descriptions={n: p.explained() for n, p in params.items()},
        )

    def _set_parameters(self, request: SetParameters) -> Result:
        try:
            self.parameters.set_many(request.values)  # all or none: `param load` of a file is one request
        except Exception as exc:  # a wrong type, or a change the node's own callback refused
            return Result(success=False, message=str(exc))
        return Result(success=True, message="")


def _check_message_type(msg_type: Any, where: str) -> None:
    if not (isinstance(msg_type, type) and issubclass(msg_type, Message) and msg_type.TYPE_NAME):
        raise MessageError(f"{where}: expected a registered message class, found {msg_type!r}")
