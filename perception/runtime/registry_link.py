"""A node's link to the registry, on a background thread, so registration and discovery go on while
the node's own thread is busy in a callback, or never spins at all (a publish-only script).

The node's registration goes out on every change and once a second (the heartbeat); the replies carry
the publisher endpoints of the node's subscriptions, handed to the node's thread (which owns the
subscription sockets: ZeroMQ sockets are not thread-safe) through `take_endpoints()` and a wake-up
message. If the registry stops answering, existing connections stay: connected nodes keep talking, and
the link keeps sending its registration every heartbeat (ZeroMQ holds the last few while the registry
is away and delivers them as it reconnects), so a restarted registry knows this node within about a
tenth of a second of binding its address, and answers with the endpoints it needs.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack
import zmq
from zmq.utils.monitor import recv_monitor_message

from perception.runtime.registry import MAX_REPLY_BYTES, REFUSALS, refusal
from perception.runtime.security import Keys

HEARTBEAT_S = 1.0
REPLY_TIMEOUT_S = 2.0  # a registry this late is "not answering" (said once, in the log)
# Publisher endpoints per topic; endpoint -> local address for publishers that have one; endpoint ->
# the CURVE key it serves with (with a keystore).
Discovered = tuple[dict[str, list[str]], dict[str, str], dict[str, str]]
GOODBYE_TIMEOUT_S = 1.0  # on 2 busy cores the registry took over 0.3 s to answer once (the test suite)


class RegistryLink:
    def __init__(
        self,
        context: zmq.Context[Any],
        registry: str,
        registration: Callable[[], dict[str, Any]],
        wake_endpoint: str,
        log: logging.Logger,
        keys: Keys | None = None,
    ) -> None:
        self._context = context
        self._keys = keys
        self._registry = registry
        self._registration = registration
        self._wake_endpoint = wake_endpoint
        self._log = log
        self._lock = threading.Lock()
        self._endpoints: Discovered = ({}, {}, {})
        self._pending: Discovered | None = None
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._goodbye_uid: str | None = None
        self._control_endpoint = f"{wake_endpoint}-control"
        self._control_in = context.socket(zmq.PULL)  # handed to the thread; bound before it starts
        self._control_in.bind(self._control_endpoint)
        self._control_out = context.socket(zmq.PUSH)
        self._control_out.setsockopt(zmq.LINGER, 0)
        self._control_out.connect(self._control_endpoint)
        self._thread = threading.Thread(target=self._run, name="percept-registry-link", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def changed(self) -> None:
        """The node's publishers, subscriptions or services changed: tell the registry now."""
        self._dirty.set()
        self._poke()

    def take_endpoints(self) -> Discovered | None:
        """Publisher endpoints per subscribed topic, and the local addresses of those that have one,
        if they changed since the last call."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def stop(self, uid: str) -> None:
        """Stop, saying goodbye so the graph forgets this node now rather than after expiry."""
        self._goodbye_uid = uid
        self._stop.set()
        self._poke()
        self._thread.join(timeout=REPLY_TIMEOUT_S + GOODBYE_TIMEOUT_S)
        with self._lock:
            self._control_out.close()

    def _poke(self) -> None:
        with self._lock:
            if not self._control_out.closed:
                try:
                    self._control_out.send(b"", zmq.NOBLOCK)
                except zmq.Again:
                    pass  # the thread has a wake-up queued already

    def _run(self) -> None:
        dealer = self._context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.SNDHWM, 4)
        dealer.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
        if self._keys is not None:
            self._keys.connect_to(dealer, self._keys.registry_public)
        refusals = dealer.get_monitor_socket(REFUSALS)  # a refused key is said, not "not answering"
        dealer.connect(self._registry)
        events = self._context.socket(zmq.SUB)
        events.setsockopt(zmq.LINGER, 0)
        if self._keys is not None:
            self._keys.connect_to(events, self._keys.registry_public)
        events.setsockopt(zmq.SUBSCRIBE, b"graph")
        wake = self._context.socket(zmq.PUSH)
        wake.setsockopt(zmq.LINGER, 0)
        wake.setsockopt(zmq.SNDHWM, 1)
        wake.connect(self._wake_endpoint)
        control = self._control_in
        poller = zmq.Poller()
        for socket in (dealer, events, control, refusals):
            poller.register(socket, zmq.POLLIN)
        ids = itertools.count(1)
        events_endpoint = ""
        answered = 0  # the id of the newest request answered
        latest = 0  # the id of the newest request sent
        waiting_since: float | None = None  # when the oldest unanswered request went out
        last_sent = -HEARTBEAT_S
        next_sync = 0.0
        resync_at: float | None = None
        warned = False
        synced = False  # a registration went out, so there is something to say goodbye to
        refused: str | None = None
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if resync_at is not None and now >= resync_at:
                    resync_at = None
                    self._dirty.set()
                if waiting_since is not None and now - waiting_since > REPLY_TIMEOUT_S and not warned:
                    self._log.warning(
                        "registry at %s not answering; keeping existing connections", self._registry
                    )
                    warned = True
                # One request at a time while the registry answers; while it does not, one a heartbeat
                # (a request it lost as it died is never answered; a later one reaches its successor).
                may_send = waiting_since is None or now - last_sent >= HEARTBEAT_S
                if may_send and (self._dirty.is_set() or now >= next_sync):
                    self._dirty.clear()
                    request_id = next(ids)
                    request = {"op": "sync", "id": request_id, "node": self._registration()}
                    try:
                        dealer.send(msgpack.packb(request), zmq.NOBLOCK)
                        latest, last_sent = request_id, now
                        if waiting_since is None:
                            waiting_since = now
                        synced = True
                    except zmq.Again:
                        pass  # four are queued for a registry that is away: enough
                    next_sync = now + HEARTBEAT_S
                wake_at = min(next_sync, resync_at or next_sync)
                timeout_ms = max(1, min(250, int((wake_at - time.monotonic()) * 1000) + 1))
                for socket, _ in poller.poll(timeout_ms):
                    if socket is control:
                        while _has_message(control):
                            pass
                    elif socket is events:
                        events.recv_multipart()
                        self._dirty.set()
                    elif socket is refusals:
                        event = recv_monitor_message(refusals)
                        why = refusal(self._registry, event["event"], event["value"], self._keys, "this node")
                        if why and why != refused:
                            refused = why
                            self._log.error("%s", why)
                            warned = True  # said why; "is back" follows if it ever answers
                    else:
                        reply = msgpack.unpackb(dealer.recv())
                        reply_id = reply.get("id")
                        if not isinstance(reply_id, int) or reply_id <= answered:
                            continue  # an answer older than one already taken
                        answered = reply_id
                        # The registry answers: the requests still out are waited for from now. (Counted
                        # from the oldest, the ones queued while it was away, answered a few ms apart as
                        # it came back, had it "not answering" again between each two: 4 times at once.)
                        waiting_since = None if reply_id == latest else time.monotonic()
                        if warned:
                            # At the warning's level: tools show warnings only, and whoever was told it
                            # went must be told it came back.
                            self._log.warning("registry at %s is back", self._registry)
                            warned = False
                        if not reply.get("ok", False):  # refused (a malformed registration): say so once
                            if reply.get("error") != refused:
                                refused = reply.get("error")
                                self._log.error("the registry refused this node: %s", refused)
                            continue
                        refused = None
                        if isinstance(reply.get("warning"), str):  # about this node (a name taken)
                            self._log.warning("%s", reply["warning"])
                        if reply.get("events") and reply["events"] != events_endpoint:
                            if events_endpoint:
                                events.disconnect(events_endpoint)
                            events_endpoint = reply["events"]
                            events.connect(events_endpoint)
                            # A change announced before this subscription completes is lost (a SUB
                            # socket misses what was sent while it joined): ask again shortly.
                            resync_at = time.monotonic() + 0.05
                        local, keys = reply.get("local"), reply.get("keys")
                        self._deliver(
                            reply.get("endpoints", {}),
                            local if isinstance(local, dict) else {},
                            keys if isinstance(keys, dict) else {},
                            wake,
                        )
            if synced and self._goodbye_uid is not None:
                # On the heartbeats' own connection, so it cannot overtake the last of them.
                self._say_goodbye(dealer, next(ids), self._goodbye_uid)
        except Exception:  # a dead link would let the registry forget a node that is still running
            self._log.exception("registry link failed; the registry will forget this node")
        finally:
            dealer.disable_monitor()
            for socket in (refusals, dealer, events, wake, control):
                socket.close()

    def _say_goodbye(self, dealer: zmq.Socket[Any], request_id: int, uid: str) -> None:
        try:
            dealer.send(msgpack.packb({"op": "bye", "id": request_id, "uid": uid}), zmq.NOBLOCK)
        except zmq.Again:
            return  # the registry is not reading: it will forget us at expiry
        deadline = time.monotonic() + GOODBYE_TIMEOUT_S
        while (remaining := deadline - time.monotonic()) > 0:
            if (
                dealer.poll(int(remaining * 1000) + 1)
                and msgpack.unpackb(dealer.recv()).get("id") == request_id
            ):
                return

    def _deliver(
        self,
        endpoints: dict[str, list[str]],
        local: dict[str, str],
        keys: dict[str, str],
        wake: zmq.Socket[Any],
    ) -> None:
        discovered = ({topic: sorted(set(eps)) for topic, eps in endpoints.items()}, local, keys)
        if discovered == self._endpoints:
            return
        self._endpoints = discovered
        with self._lock:
            self._pending = discovered
        try:
            wake.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass  # the node's thread has a wake-up queued already


def _has_message(socket: zmq.Socket[Any]) -> bool:
    try:
        socket.recv(zmq.NOBLOCK)
    except zmq.Again:
        return False
    return True
