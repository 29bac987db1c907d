"""The node: publishers, subscriptions, timers, services and parameters on one thread.

A node owns a single-threaded executor, like rclpy's: `spin()` waits on all of the node's sockets and
timers and runs callbacks one at a time, so callbacks never race each other. Discovery runs on a
background thread (perception.graph) so a node that never spins still registers its publishers.
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
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import zmq

from perception import names, transport, wire
from perception.context import Context
from perception.errors import (
    MalformedMessage,
    MessageError,
    PerceptError,
    RegistryUnavailable,
    ServiceError,
    ServiceTimeout,
    ServiceUnavailable,
)
from perception.msgs import (
    GetParameters,
    Header,
    Message,
    NodeStats,
    ParameterValues,
    Result,
    SetParameters,
)
from perception.params import Parameters, type_name
from perception.qos import KEEP_LAST, QoS
from perception.registry import query
from perception.registry_link import RegistryLink
from perception.stats import EndpointStats, Throttle
from perception.stopping import StopFlag

M = TypeVar("M", bound=Message)
Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

STATS_TOPIC = "/percept/stats"
RECEIVE_HWM = 1000  # messages a subscription socket may hold while its node is busy
_MAX_POLL_MS = 100
_MAX_DISPATCH_ROUNDS = 100  # upper bound on how long a shutdown request can wait to be noticed
_LATENCY_LIMIT_NS = 60 * 1_000_000_000  # stamps further off than this are not wall-clock stamps


class Publisher(Generic[M]):
    """Sends messages of one type on one topic. Safe to call from any thread.

    `publish` hands the message's arrays to the transport without copying: do not change an array
    after publishing it (publish a copy if you reuse a buffer).
    """

    def __init__(self, node: Node, msg_type: type[M], topic: str, send_hwm: int) -> None:
        self.msg_type = msg_type
        self.topic = topic
        self._topic_bytes = topic.encode()
        self._outlet = transport.Outlet(node.context.zmq, node.context.host, self._topic_bytes, send_hwm)
        self.endpoint = self._outlet.endpoint
        self._id = uuid.uuid4().hex[:12]
        self._count = 0
        self._lock = threading.Lock()  # publish() may come from any thread, destroy() from the node's
        self._closed = False
        self.stats = EndpointStats(topic, msg_type.TYPE_NAME, "pub")

    def publish(self, msg: M) -> None:
        if type(msg) is not self.msg_type:
            raise TypeError(
                f"publisher on {self.topic} expects {self.msg_type.__name__}, got {type(msg).__name__}"
            )
        with self._lock:
            if self._closed:
                raise PerceptError(f"publisher on {self.topic} is closed: its node was destroyed")
            self._count += 1
            frames = wire.encode(self._topic_bytes, msg, self._id, self._count)
            self._outlet.send(frames)
            self.stats.record_arrival(sum(_nbytes(f) for f in frames))

    def publish_frames(self, frames: list[Any]) -> None:
        """Send a message already in wire frames (the frames after the topic, e.g. from a recording),
        unchanged: replay is byte-identical, sequence numbers included."""
        with self._lock:
            if self._closed:
                raise PerceptError(f"publisher on {self.topic} is closed: its node was destroyed")
            self._outlet.send([self._topic_bytes, *frames])
            self.stats.record_arrival(sum(_nbytes(f) for f in frames))

    @property
    def subscriber_count(self) -> int:
        """Subscriptions currently connected (they will receive what is published next)."""
        with self._lock:
            return self._outlet.subscriber_count()

    def wait_for_subscribers(self, count: int = 1, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.subscriber_count < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            self._outlet.close()


class Subscription(Generic[M]):
    """Receives one topic into a keep-last queue and hands messages to a callback on the node's thread.

    With `raw=True` the callback gets the undecoded frames (for recorders and rate meters).
    """

    def __init__(
        self,
        node: Node,
        msg_type: type[M] | None,
        topic: str,
        callback: Callable[[Any], None],
        qos: QoS,
        raw: bool = False,
    ) -> None:
        self.msg_type = msg_type
        self.topic = topic
        self.qos = qos
        self.raw = raw
        self._node = node
        self._callback = callback
        # libzmq's own I/O thread keeps moving arrivals into this socket's queue while a callback
        # runs; keeping that queue large means a backlog waits here, not at the publisher (whose full
        # queue would drop the *newest* messages), and the next drain keeps the newest `depth`.
        self._inlet = transport.Inlet(node.context.zmq, topic.encode(), receive_hwm=RECEIVE_HWM)
        self._queue: deque[Any] = deque(maxlen=qos.depth)
        self._last_seq: dict[str, int] = {}
        self._error_log = Throttle()  # at most one line a second per subscription
        self.stats = EndpointStats(topic, msg_type.TYPE_NAME if msg_type else "*", "sub")

    @property
    def publisher_count(self) -> int:
        """Publishers this subscription has connected to (including ones that have since gone)."""
        return len(self._inlet.endpoints)

    def _receive(self) -> None:
        """Move everything that has arrived into the keep-last queue, evicting (and counting) the
        oldest. Frames are decoded only when handed to the callback, so a flood costs little."""
        queue = self._queue
        stats = self.stats
        # At most what the socket can hold per round, so that in a flood callbacks still run
        # between drains; a latest-only queue still ends up holding the newest arrival.
        topic = self._inlet.topic
        for frames in self._inlet.drain(RECEIVE_HWM):
            if frames[0].bytes != topic:
                continue  # a longer topic matching ours as a prefix (a reused port): not for us
            stats.record_arrival(sum(len(f) for f in frames))
            if len(queue) == queue.maxlen:
                stats.dropped_queue += 1
                evicted = queue.popleft()
                try:
                    self._count_gap(*wire.peek_sequence(evicted))
                except MalformedMessage:
                    stats.malformed += 1
            queue.append(frames)

    def _count_gap(self, src: str, n: int) -> None:
        # Eviction and dispatch both take the queue's oldest entry, so this sees arrival order.
        last = self._last_seq.get(src)
        if last is not None and n > last + 1:
            self.stats.dropped_gap += n - last - 1
        self._last_seq[src] = n

    def _dispatch(self) -> bool:
        """Hand what is queued now to the callback, oldest first. True if there was anything."""
        queue = self._queue
        if not queue:
            return False
        for _ in range(len(queue)):
            frames = queue.popleft()
            try:
                if self.raw:
                    self._count_gap(*wire.peek_sequence(frames))
                    item: Any = frames
                else:
                    received = wire.decode(frames, self.msg_type)  # reads the header once
                    self._count_gap(received.src, received.n)
                    item = received.msg
                    self.stats.record_latency(_latency_ns(item))
            except Exception as exc:  # MalformedMessage, or anything else a foreign peer can provoke
                self.stats.malformed += 1
                # It arrived, so it is no gap: its sequence counts, where its header can be read.
                with contextlib.suppress(Exception):
                    self._count_gap(*wire.peek_sequence(frames))
                self._log_error(f"dropped a malformed message on {self.topic}: {exc}")
                continue
            try:
                self._callback(item)
            except Exception:
                self.stats.callback_errors += 1
                self._log_error(f"callback for {self.topic} raised:\n{traceback.format_exc()}")
        return True

    def _log_error(self, text: str) -> None:
        if self._error_log.ready():
            self._node.log.error(text)

    def _close(self) -> None:
        self._inlet.close()


class Timer:
    def __init__(self, period_s: float, callback: Callable[[], None]) -> None:
        if period_s <= 0:
            raise ValueError(f"timer period must be positive, found {period_s}")
        self.period_s = period_s
        self.callback = callback
        self.next_due = time.monotonic() + period_s
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Service(Generic[Req, Resp]):
    """Answers requests on the node's thread; a handler that raises sends the error text back."""

    def __init__(
        self,
        node: Node,
        name: str,
        request_type: type[Req],
        response_type: type[Resp],
        handler: Callable[[Req], Resp],
    ) -> None:
        self.name = name
        self.request_type = request_type
        self.response_type = response_type
        self._node = node
        self._handler = handler
        self._socket, self.endpoint = transport.service_server(node.context.zmq, node.context.host)

    def _receive(self) -> None:
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if len(frames) < 3:
                continue  # not our protocol
            identity, request_id = frames[0].bytes, frames[1].bytes
            try:
                request = wire.decode(frames[2:], self.request_type).msg
                response = self._handler(request)
                if type(response) is not self.response_type:
                    raise TypeError(
                        f"handler returned {type(response).__name__}, expected {self.response_type.__name__}"
                    )
                reply = [b"ok", *wire.encode(self.name.encode(), response)]
            except Exception as exc:
                self._node.log.error("service %s failed: %s", self.name, exc)
                reply = [b"error", f"{type(exc).__name__}: {exc}".encode()]
            self._socket.send_multipart([identity, request_id, *reply], copy=False)

    def _close(self) -> None:
        self._socket.close()


class Client(Generic[Req, Resp]):
    """Calls a service; blocks the calling thread until the reply or the timeout."""

    def __init__(self, node: Node, name: str, request_type: type[Req], response_type: type[Resp]) -> None:
        self.name = name
        self.request_type = request_type
        self.response_type = response_type
        self._context = node.context
        self._socket: zmq.Socket[Any] | None = None
        self._endpoint = ""
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def wait_for_service(self, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._lookup()
                return True
            except ServiceUnavailable:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)

    def call(self, request: Req, timeout_s: float = 5.0) -> Resp:
        if type(request) is not self.request_type:
            raise TypeError(
                f"service {self.name} expects {self.request_type.__name__}, got {type(request).__name__}"
            )
        with self._lock:
            socket = self._connect()
            request_id = str(next(self._ids)).encode()
            socket.send_multipart([request_id, *wire.encode(self.name.encode(), request)], copy=False)
            deadline = time.monotonic() + timeout_s
            while (remaining := deadline - time.monotonic()) > 0:
                if not socket.poll(int(remaining * 1000) + 1):
                    continue
                frames = socket.recv_multipart(copy=False)
                if len(frames) < 3 or frames[0].bytes != request_id:
                    continue  # the answer to an earlier call that timed out, or not our protocol
                status = frames[1].bytes
                if status == b"ok":
                    return wire.decode(frames[2:], self.response_type).msg  # type: ignore[no-any-return]
                raise ServiceError(f"service {self.name} failed: {frames[2].bytes.decode()}")
            self._reset()  # the server may have moved; look it up again next time
            raise ServiceTimeout(f"service {self.name} did not answer within {timeout_s:g} s")

    def _lookup(self) -> str:
        try:
            reply = query("service", address=self._context.registry, timeout_s=1.0, name=self.name)
        except RegistryUnavailable as exc:
            raise ServiceUnavailable(f"cannot look up service {self.name}: {exc}") from None
        if not reply.get("ok"):
            known = ", ".join(reply.get("known", [])) or "none"
            raise ServiceUnavailable(f"no server for service {self.name} (services known: {known})")
        if (
            reply["request"] != self.request_type.TYPE_NAME
            or reply["response"] != self.response_type.TYPE_NAME
        ):
            raise ServiceUnavailable(
                f"service {self.name} takes {reply['request']} -> {reply['response']}, this client uses "
                f"{self.request_type.TYPE_NAME} -> {self.response_type.TYPE_NAME}"
            )
        return str(reply["endpoint"])

    def _connect(self) -> zmq.Socket[Any]:
        if self._socket is None:
            self._endpoint = self._lookup()
            self._socket = transport.service_client(self._context.zmq, self._endpoint)
        return self._socket

    def _reset(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._socket = None

    def close(self) -> None:
        with self._lock:
            self._reset()


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
        stats_period_s: float = 1.0,
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
        self.parameters = Parameters(self.fqn, {**(parameters or {}), **overrides.parameters})

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
        self._poller = zmq.Poller()
        self._shutdown = StopFlag()
        self._checked_overrides = False
        self._destroyed = False

        wake_endpoint = f"inproc://percept-wake-{self.uid}"
        self._wake = self.context.zmq.socket(zmq.PULL)
        self._wake.setsockopt(zmq.LINGER, 0)
        self._wake.bind(wake_endpoint)
        self._add_socket(self._wake, self._apply_endpoints)
        self._registry_link = RegistryLink(
            self.context.zmq, self.context.registry, self._registration, wake_endpoint, self.log
        )

        self._stats_publisher = self.create_publisher(NodeStats, STATS_TOPIC)
        self.create_timer(stats_period_s, self._publish_stats)
        self.create_service("~/get_parameters", GetParameters, ParameterValues, self._get_parameters)
        self.create_service("~/set_parameters", SetParameters, Result, self._set_parameters)
        self._registry_link.start()

    # -- creating things ---------------------------------------------------------------------------

    def resolve(self, name: str, kind: str = "topic") -> str:
        return names.resolve(
            name, namespace=self.namespace, node_name=self.name, remappings=self._remappings, kind=kind
        )

    def create_publisher(self, msg_type: type[M], topic: str, *, queue_depth: int = 100) -> Publisher[M]:
        """A publisher that never blocks: it queues at most `queue_depth` unsent messages per subscriber
        (a burst), then drops, and the subscriber counts the gap. Subscribers empty this queue
        continuously, so it only fills when a subscriber's process cannot keep up at all."""
        _check_message_type(msg_type, "create_publisher")
        publisher = Publisher(self, msg_type, self.resolve(topic), queue_depth)
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
        subscription = Subscription(self, msg_type, self.resolve(topic), callback, qos, raw)
        with self._lock:
            self._subscriptions.append(subscription)
        self._poller.register(subscription._inlet.socket, zmq.POLLIN)
        self._registry_link.changed()
        return subscription

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(period_s, callback)
        heapq.heappush(self._timers, (timer.next_due, next(self._timer_ids), timer))
        return timer

    def create_service(
        self,
        name: str,
        request_type: type[Req],
        response_type: type[Resp],
        handler: Callable[[Req], Resp],
    ) -> Service[Req, Resp]:
        service = Service(self, self.resolve(name, "service"), request_type, response_type, handler)
        with self._lock:
            self._services.append(service)
        self._add_socket(service._socket, service._receive)
        self._registry_link.changed()
        return service

    def create_client(
        self, name: str, request_type: type[Req], response_type: type[Resp]
    ) -> Client[Req, Resp]:
        client = Client(self, self.resolve(name, "service"), request_type, response_type)
        self._clients.append(client)
        return client

    def declare_parameter(
        self, name: str, default: Any, description: str = "", *, read_only: bool = False
    ) -> Any:
        """Declare a typed parameter (its type is the default's) and return its value."""
        return self.parameters.declare(name, default, description, read_only=read_only)

    def get_parameter(self, name: str) -> Any:
        return self.parameters.get(name)

    def header(self, frame_id: str = "") -> Header:
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
        for socket, _ in self._poller.poll(timeout_ms):
            handler = self._handlers.get(socket)
            if handler is not None:  # subscription sockets are read below
                handler()
        self._run_due_timers()
        # Bounded, so timers and services wait at most this many rounds under a flood.
        for _ in range(_MAX_DISPATCH_ROUNDS):
            dispatched = False
            for subscription in self._subscriptions:
                subscription._receive()
                dispatched |= subscription._dispatch()
            if not dispatched or self._shutdown.is_set():
                break
            if self._timers and self._timers[0][0] <= time.monotonic():
                break

    def _check_overrides(self) -> None:
        self._checked_overrides = True
        for name in self.parameters.unused_overrides():
            self.log.warning(
                "parameter override %r matches no declared parameter (declared: %s)",
                name,
                ", ".join(self.parameters.names()),
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
        if self._destroyed:
            return
        self._destroyed = True
        try:
            self.on_shutdown()
        finally:
            self._registry_link.stop(self.uid)
            for client in self._clients:
                client.close()
            closables: list[Any] = [*self._publishers, *self._subscriptions, *self._services]
            for closable in closables:
                closable._close()
            self._wake.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- internals ---------------------------------------------------------------------------------

    def _add_socket(self, socket: Any, handler: Callable[[], None]) -> None:
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
        while True:
            try:
                self._wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        endpoints = self._registry_link.take_endpoints()
        if endpoints is None:
            return
        for subscription in self._subscriptions:
            if subscription.topic in endpoints:
                for refused in subscription._inlet.set_endpoints(endpoints[subscription.topic]):
                    self.log.warning("cannot connect to a publisher of %s at %s", subscription.topic, refused)

    def _registration(self) -> dict[str, Any]:
        with self._lock:
            return {
                "uid": self.uid,
                "name": self.fqn,
                "pid": os.getpid(),
                "host": socketlib.gethostname(),
                "publishers": [
                    {"topic": p.topic, "type": p.msg_type.TYPE_NAME, "endpoint": p.endpoint}
                    for p in self._publishers
                ],
                "subscriptions": [{"topic": s.topic, "type": s.stats.type_name} for s in self._subscriptions],
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
                timer_errors=self._timer_errors,
            )
        )

    def _get_parameters(self, request: GetParameters) -> ParameterValues:
        params = self.parameters.describe(request.names or None)
        return ParameterValues(
            values={n: p.value for n, p in params.items()},
            types={n: type_name(p.type) for n, p in params.items()},
            descriptions={n: p.description for n, p in params.items()},
        )

    def _set_parameters(self, request: SetParameters) -> Result:
        try:
            for name, value in request.values.items():
                self.parameters.set(name, value)
        except Exception as exc:  # a wrong type, or a change the node's own callback refused
            return Result(success=False, message=str(exc))
        return Result(success=True, message="")


def _check_message_type(msg_type: Any, where: str) -> None:
    if not (isinstance(msg_type, type) and issubclass(msg_type, Message) and msg_type.TYPE_NAME):
        raise MessageError(f"{where}: expected a registered message class, found {msg_type!r}")


def _latency_ns(msg: Any) -> int | None:
    header = getattr(msg, "header", None)
    if not isinstance(header, Header) or header.stamp <= 0:
        return None
    latency = time.time_ns() - header.stamp
    return latency if 0 <= latency < _LATENCY_LIMIT_NS else None


def _nbytes(frame: Any) -> int:
    return frame.nbytes if hasattr(frame, "nbytes") else len(frame)
