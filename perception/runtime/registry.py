"""The registry: who publishes what, and where (the role roscore plays in ROS 1).

It only introduces peers: every publisher binds its own socket and subscribers connect to it directly,
so data never passes through the registry and connected nodes keep talking if it goes away. Nodes send
their full registration as a heartbeat every second, so a restarted registry rebuilds the graph within a
second; a node silent for `expiry_s` is forgotten.

Protocol (msgpack maps over a DEALER -> ROUTER socket, specified in docs/wire-format.md):
  sync    {op, id, node: {uid, name, pid, host, publishers, subscriptions, services}}
          -> {id, ok, version, events, endpoints: {topic: [endpoint, ...]}}
  bye     {op, id, uid} -> {id, ok}
  graph   {op, id} -> {id, ok, version, nodes: [...]}
  service {op, id, name} -> {id, ok, endpoint, request, response} or {id, ok: false, error}
The registry's PUB socket (`events` above) sends [b"graph", version] whenever the graph changes.

With a keystore (perception.runtime.security) both sockets are CURVE servers, only keys of the
keystore get in, a node may register only under its own enclave's name, each node's `key` is the one
its handshake proved, and `sync` and `service` replies carry the keys their endpoints serve with.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from typing import Any

import msgpack
import zmq
from zmq.utils.monitor import recv_monitor_message

from perception.errors import InvalidNameError, RegistryUnavailable, reason
from perception.runtime.gatekeeper import Gatekeeper
from perception.runtime.names import is_hidden, validate
from perception.runtime.security import KEYSTORE_ENV, REGISTRY, TOOLS, Keys, key_text, may_register
from perception.runtime.stopping import StopFlag
from perception.runtime.transport import BIND_ALL, default_host

DEFAULT_ADDRESS = "tcp://127.0.0.1:11511"
# Bounds ZeroMQ enforces before a request or reply is read whole: a registration of thousands of
# topics is well under the first, a graph of thousands of nodes under the second.
MAX_REQUEST_BYTES = 4 << 20
MAX_REPLY_BYTES = 64 << 20
log = logging.getLogger("percept.registry")


def registry_address() -> str:
    return os.environ.get("PERCEPT_REGISTRY", DEFAULT_ADDRESS)


class Registry:
    def __init__(
        self, address: str | None = None, *, expiry_s: float = 3.0, keys: Keys | bool | None = None
    ) -> None:
        """`keys`: the registry's (None: PERCEPT_KEYSTORE's, if set; False: none)."""
        self.keys = Keys.resolve(keys, REGISTRY)
        self.address = address or registry_address()
        self.expiry_s = expiry_s
        self.version = 0
        self._nodes: dict[str, dict[str, Any]] = {}
        self._last_seen: dict[str, float] = {}
        # uid -> when it said goodbye. A client that sends its goodbye on another connection than its
        # heartbeats (ours does not) can have its last heartbeat arrive after it: no return until expiry.
        self._departed: dict[str, float] = {}
        self._stop = StopFlag()
        self._context = zmq.Context()
        self._gatekeeper = Gatekeeper(self._context, self.keys)
        self._router = self._context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        self._events = self._context.socket(zmq.PUB)
        self._events.setsockopt(zmq.LINGER, 0)
        self._events.setsockopt(zmq.MAXMSGSIZE, 64 << 10)  # it reads subscriptions: a byte and "graph"
        self._gatekeeper.guard(self._router, "the registry")
        self._gatekeeper.guard(self._events, "the registry's events")
        try:
            self._router.bind(self.address)
        except zmq.ZMQError as exc:
            self._router.close()
            self._events.close()
            self._gatekeeper.stop()
            self._context.term()
            raise RegistryUnavailable(f"cannot bind the registry at {self.address}: {exc}") from None
        host = self.address.rsplit(":", 1)[0] if self.address.startswith("tcp://") else "tcp://127.0.0.1"
        port = self._events.bind_to_random_port(host)
        # Bound on every interface, it must still advertise an address others can connect to.
        advertised = host.replace("*", default_host()).replace("0.0.0.0", default_host())
        self.events_endpoint = f"{advertised}:{port}"

    def serve(self) -> None:
        """Answer requests until `stop()` is called."""
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if poller.poll(100):
                    frames = self._router.recv_multipart(copy=False)
                    if len(frames) < 2:
                        continue
                    # The client key its CURVE handshake proved (ZeroMQ's User-Id), with a keystore.
                    user = str(frames[1].get("User-Id")) if self.keys else None
                    reply = self._handle(frames[1].bytes, user)
                    self._router.send_multipart([frames[0].bytes, msgpack.packb(reply)])
                self._expire()
        finally:
            self._router.close()
            self._events.close()
            self._gatekeeper.stop()
            self._context.term()

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve, name="percept-registry", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Make `serve()` return within 0.1 s; safe from a signal handler."""
        self._stop.set()

    def _handle(self, payload: bytes, user: str | None = None) -> dict[str, Any]:
        try:
            request = msgpack.unpackb(payload)
        except Exception as exc:
            return {"ok": False, "id": 0, "error": f"malformed registry request: not msgpack ({reason(exc)})"}
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            found = (
                type(request).__name__
                if not isinstance(request, dict)
                else f"keys {sorted(request, key=repr)!r}"
            )
            return {
                "ok": False,
                "id": 0,
                "error": f"malformed registry request: expected a map with text 'op', found {found:.200}",
            }
        op, request_id = request["op"], request.get("id", 0)
        try:
            reply = self._answer(op, request, user)
        except Exception as exc:  # a bad request must not take the registry down
            why = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            reply = {"ok": False, "error": f"bad {op!r} request: {why}"}
        reply["id"] = request_id
        return reply

    def _answer(self, op: str, request: dict[str, Any], user: str | None) -> dict[str, Any]:
        reply: dict[str, Any]
        if op == "sync":
            reply = self._sync(request.get("node"), user)
        elif op == "bye":
            uid = self._own(_text(request, "uid"), user)  # with a keystore, only a node's own key reaches it
            if self.keys and uid not in self._nodes:
                return {"ok": True}  # nothing of this key's to forget (and nothing to remember it by)
            self._departed[uid] = time.monotonic()
            if self._nodes.pop(uid, None) is not None:
                self._last_seen.pop(uid, None)
                self._changed()
            reply = {"ok": True}
        elif op == "graph":
            reply = {"ok": True, "version": self.version, "nodes": list(self._nodes.values())}
        elif op == "service":
            reply = self._service(_text(request, "name"))
        else:
            reply = {"ok": False, "error": f"unknown registry op {op!r}"}
        return reply

    def _own(self, uid: str, user: str | None) -> str:
        """Where a node is filed: by its id, and with a keystore under its key too, so that no other
        key can reach it (say goodbye for it, or take its id over after a registry restart)."""
        return f"{user}/{uid}" if self.keys else uid

    def _sync(self, node: Any, user: str | None) -> dict[str, Any]:
        _check_registration(node)  # one malformed registration kept would break every later sync
        node = {**node, **{key: node.get(key, []) for key in _ENTRIES}}  # every list there, for the tools
        uid = self._own(node["uid"], user)
        if self.keys:
            refusal = self._refusal(node, user)
            if refusal:
                return {"ok": False, "error": refusal}
            node = {**node, "key": user}  # the key its handshake proved, whatever it claimed
        if uid in self._departed:
            return {"ok": False, "error": f"node {node.get('name')!r} ({node['uid']}) has said goodbye"}
        previous = self._nodes.get(uid)
        namesake = self._namesake_warning(uid, node) if previous is None else ""
        clash = self._type_clash_warning(uid, node, previous)
        self._nodes[uid] = node
        self._last_seen[uid] = time.monotonic()
        if previous != node:
            self._changed()
        wanted = {sub["topic"] for sub in node.get("subscriptions", [])}
        endpoints: dict[str, list[str]] = {topic: [] for topic in wanted}
        local: dict[str, str] = {}  # endpoint -> where a subscriber on the publisher's host joins it
        keys: dict[str, str] = {}  # endpoint -> the CURVE key it serves with (with a keystore)
        for other in self._nodes.values():
            for pub in other.get("publishers", []):
                if pub["topic"] in endpoints:
                    endpoints[pub["topic"]].append(pub["endpoint"])
                    if isinstance(pub.get("local"), str):
                        local[pub["endpoint"]] = pub["local"]
                    if isinstance(other.get("key"), str):
                        keys[pub["endpoint"]] = other["key"]
        reply = {
            "ok": True,
            "version": self.version,
            "events": self.events_endpoint,
            "endpoints": endpoints,
            "local": local,
        }
        if self.keys:
            reply["keys"] = keys
        if namesake or clash:  # told to the node that joined too, in its own terminal
            reply["warning"] = "; ".join(filter(None, (namesake, clash)))
        return reply

    def _refusal(self, node: dict[str, Any], user: str | None) -> str:
        """Why a key may not register this (with a keystore): another enclave's name, a service outside
        its own name, or an endpoint another key already serves."""
        assert self.keys is not None
        enclave = self.keys.enclave_of(user or "") or "?"
        name = node["name"]
        if not may_register(enclave, name):
            hint = "hidden names only" if enclave == TOOLS else f"only {'/' + enclave.replace('.', '/')}"
            return f"the key of enclave {enclave} may not register {name} ({hint})"
        for service in node.get("services", []):
            if not service["name"].startswith(name.rstrip("/") + "/"):
                return f"{name} may serve only services under its own name, not {service['name']}"
        mine = {e["endpoint"] for e in node.get("publishers", []) + node.get("services", [])}
        for other in self._nodes.values():
            if other.get("key") != user:
                taken = mine & {
                    e["endpoint"] for e in other.get("publishers", []) + other.get("services", [])
                }
                if taken:
                    return f"endpoint {sorted(taken)[0]} is served by {other['name']} with another key"
        return ""

    def _service(self, name: str) -> dict[str, Any]:
        # The most recently heard server first: a respawned node's, not the dead one's before it expires.
        by_recency = sorted(self._nodes, key=lambda uid: self._last_seen.get(uid, 0.0), reverse=True)
        for node in (self._nodes[uid] for uid in by_recency):
            for service in node.get("services", []):
                if service["name"] == name:
                    return {"ok": True, **service, **({"key": node["key"]} if "key" in node else {})}
        known = sorted(s["name"] for n in self._nodes.values() for s in n.get("services", []))
        return {"ok": False, "error": f"no server for service {name!r}", "known": known}

    def _namesake_warning(self, uid: str, node: dict[str, Any]) -> str:
        """A node joining under a name another live node has: said here (as `ros2 node list` does) and
        returned for the joining node to say, since a name's services and parameters then reach either."""
        name = node.get("name")
        if not isinstance(name, str) or is_hidden(name):  # tools' and launchers' own nodes may share one
            return ""
        for other_uid, other in self._nodes.items():
            if other_uid != uid and other.get("name") == name and _may_live(other):
                warning = (
                    f"two nodes are named {name}: pid {node.get('pid')} on {node.get('host')} joined beside "
                    f"pid {other.get('pid')} on {other.get('host')}; its parameters and services may reach "
                    "either (rename one: --name, or a launch file's name:)"
                )
                log.warning("%s", warning)
                return warning
        return ""

    def _type_clash_warning(self, uid: str, node: dict[str, Any], previous: dict[str, Any] | None) -> str:
        """A node publishing or subscribing to a topic with another type than the graph's others have:
        the messages between them are dropped as malformed at the subscriber, so say so when the entry
        joins, whichever side comes second (a node registers first and makes its entries after)."""
        clashes = []
        for kind, verb in (("publishers", "publishes"), ("subscriptions", "subscribes to")):
            known = {(e["topic"], e["type"]) for e in (previous or {}).get(kind, [])}
            for entry in node.get(kind, []):
                if (entry["topic"], entry["type"]) in known or entry["type"] == "*":
                    continue
                # A publisher meets publishers and subscribers of its topic; a subscriber, publishers.
                against = ("publishers", "subscriptions") if kind == "publishers" else ("publishers",)
                others = {
                    other_entry["type"]
                    for other_uid, other in self._nodes.items()
                    if other_uid != uid
                    for side in against
                    for other_entry in other.get(side, [])
                    if other_entry["topic"] == entry["topic"]
                    and other_entry["type"] not in ("*", entry["type"])
                }
                if others:
                    clashes.append(
                        f"{verb} {entry['topic']} as {entry['type']}, which the graph has as {', '.join(sorted(others))}"
                    )
        if not clashes:
            return ""
        warning = f"{node['name']} " + "; ".join(clashes) + " (those messages are dropped as malformed)"
        log.warning("%s", warning)
        return warning

    def _expire(self) -> None:
        deadline = time.monotonic() - self.expiry_s
        for uid in [uid for uid, when in self._departed.items() if when < deadline]:
            del self._departed[uid]
        silent = [uid for uid, seen in self._last_seen.items() if seen < deadline]
        for uid in silent:
            node = self._nodes.pop(uid, {})
            del self._last_seen[uid]
            log.warning(
                "forgot node %s (pid %s): silent for %.1f s", node.get("name"), node.get("pid"), self.expiry_s
            )
        if silent:
            self._changed()

    def _changed(self) -> None:
        self.version += 1
        self._events.send_multipart([b"graph", str(self.version).encode()])


def _may_live(node: dict[str, Any]) -> bool:
    """False for a node of this host whose process has gone (killed, not yet forgotten: its respawned
    successor is no namesake); True for any other, as far as this registry can tell."""
    pid = node.get("pid")
    if node.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _text(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str):
        raise ValueError(f"expected text {key!r}, found {value!r:.80}")
    return value


# Per list in a registration: the text fields every entry must have, and the types of optional ones.
_ENTRIES: dict[str, tuple[tuple[str, ...], dict[str, type]]] = {
    "publishers": (("topic", "type", "endpoint"), {"local": str}),
    "subscriptions": (("topic", "type"), {"depth": int}),
    "services": (("name", "endpoint", "request", "response"), {}),
}
_NAMES = {"name": "service", "topic": "topic"}  # entry fields that hold names, and what they name
MAX_ENTRIES = 1024  # publishers, subscriptions or services of one node
MAX_TEXT = 512  # characters of a name, topic, endpoint or type


def _check_endpoint(where: str, endpoint: str) -> None:
    """An address another process can connect a ZeroMQ socket to, or a one-line error: a bind address
    (tcp://*:port) or a typo is told to the node that made it, not to each of its subscribers."""
    transport, _, address = endpoint.partition("://")
    host, _, port = address.rpartition(":")
    if transport == "ipc" and address:
        return
    if transport == "tcp" and host not in ("", *BIND_ALL) and port.isdigit() and 0 < int(port) < 65536:
        return
    raise ValueError(
        f"{where}: 'endpoint' must be tcp://HOST:PORT (HOST not *, 0.0.0.0 or ::, PORT 1 to 65535) or ipc://PATH, "
        f"found {endpoint!r:.80}"
    )


def _check_name(where: str, field: str, name: str, kind: str) -> None:
    """A name as every node resolves its own (names.validate), or a one-line error."""
    try:
        if validate(name, kind) == "/":  # the root is a namespace, never a node's, topic's or service's
            raise InvalidNameError(kind, name, 1, "needs a name after the root '/'")
    except InvalidNameError as exc:
        raise ValueError(
            f"{where}: {field!r} is not a valid {kind} name: {str(exc).splitlines()[0]}"
        ) from None


def _check_registration(node: Any) -> None:
    """Refuse a registration that the registry could not serve back whole to every tool: each string
    field present and at most MAX_TEXT long, names absolute, optional fields of their type."""
    if not isinstance(node, dict):
        raise ValueError(f"a registration must be a map, found {type(node).__name__}")
    for key in ("uid", "name"):
        if not isinstance(node.get(key), str) or not 0 < len(node[key]) <= MAX_TEXT:
            raise ValueError(
                f"a registration needs text {key!r} of 1 to {MAX_TEXT} characters, found {node.get(key)!r:.80}"
            )
    name = node["name"]
    _check_name(f"registration of {name!r}", "name", name, "node")
    for key, expected in (("pid", int), ("host", str)):
        if key in node and (not isinstance(node[key], expected) or isinstance(node[key], bool)):
            raise ValueError(
                f"registration of {name!r}: {key!r} must be {expected.__name__}, found {node[key]!r:.80}"
            )
    for key, (required, optional) in _ENTRIES.items():
        entries = node.get(key, [])
        # Bounded, so that a few registrations cannot swell every subscriber's sync reply past its limit.
        if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
            raise ValueError(
                f"registration of {name!r}: {key!r} must be a list of at most {MAX_ENTRIES} maps"
            )
        for i, entry in enumerate(entries):
            where = f"registration of {name!r}: {key}[{i}]"
            if not isinstance(entry, dict):
                raise ValueError(f"{where} must be a map, found {type(entry).__name__}")
            for field in required:
                value = entry.get(field)
                if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
                    raise ValueError(
                        f"{where} needs text {field!r} of 1 to {MAX_TEXT} characters, found {value!r:.80}"
                    )
                if field in _NAMES:
                    _check_name(where, field, value, _NAMES[field])
                elif field == "endpoint":
                    _check_endpoint(where, value)
            for field, kind in optional.items():
                if field in entry and (not isinstance(entry[field], kind) or isinstance(entry[field], bool)):
                    raise ValueError(
                        f"{where}: {field!r} must be {kind.__name__}, found {entry[field]!r:.80}"
                    )


_request_ids = itertools.count(1)
# What a client of the registry watches for on its connection: the two refusals it can name.
REFUSALS = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL


def refusal(address: str, event: int, value: int, keys: Keys | None, caller: str = "this caller") -> str:
    """What a failed handshake with the registry at `address` tells its caller, as far as the caller can
    know it ("" where it cannot tell): its key refused (the registry sends an error naming a ZAP status,
    400, and nothing more), or no CURVE on one side only."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and keys is not None:
        if keys.enclave_of(key_text(keys.public)) is None:
            return (
                f"the registry at {address} refused {caller}'s key: enclave {keys.enclave} has no public key "
                f"in {keys.keystore}/public/ (expected {keys.keystore}/public/{keys.enclave}.key)"
            )
        # The key is in this host's public/; the registry read its allow-list when it started. ZeroMQ
        # never retries a connection its server refused: this process must start again too.
        return (
            f"the registry at {address} refused {caller}'s key (enclave {keys.enclave} of {keys.keystore}): "
            "a key added after the graph started is taken only after a restart (of the registry, and of "
            "this process: a refused connection is not retried), or the registry uses another keystore"
        )
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if keys is not None:
            return (
                f"the registry at {address} does not use CURVE (it was started without a keystore), and "
                f"{KEYSTORE_ENV} is set here: unset it, or start the graph with the keystore"
            )
        return (
            f"the registry at {address} takes CURVE clients only (its graph has a keystore): set "
            f"{KEYSTORE_ENV} to that keystore"
        )
    return ""


def query(
    op: str,
    *,
    address: str | None = None,
    timeout_s: float = 1.0,
    keys: Keys | bool | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One synchronous request to the registry (for the CLI and service clients). `keys`: the caller's
    CURVE keys (None: PERCEPT_KEYSTORE's, as the tools; False: none)."""
    address = address or registry_address()
    keys = Keys.resolve(keys)
    context: zmq.Context[Any] = zmq.Context.instance()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
    if keys is not None:
        keys.connect_to(socket, keys.registry_public)
    # A refused handshake is said at once, and why, rather than as a registry that never answers.
    monitor = socket.get_monitor_socket(REFUSALS)
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    try:
        socket.connect(address)
        request_id = next(_request_ids)
        socket.send(msgpack.packb({"op": op, "id": request_id, **fields}))
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            ready = dict(poller.poll(int(remaining * 1000) + 1))
            if monitor in ready:
                event = recv_monitor_message(monitor)
                refused = refusal(address, event["event"], event["value"], keys)
                if refused:
                    raise RegistryUnavailable(refused)
            if socket in ready:
                reply: dict[str, Any] = msgpack.unpackb(socket.recv())
                if reply.get("id") == request_id:
                    return reply
        keystore = os.environ.get("PERCEPT_KEYSTORE")
        secured = (  # a secured registry drops a caller without its key unanswered: it looks absent
            f"; or it refused this caller's key ({keystore}: the graph's keystore?)"
            if keystore
            else "; a graph launched with a keystore answers only callers with PERCEPT_KEYSTORE set to it"
        )
        raise RegistryUnavailable(
            f"the registry at {address} did not answer within {timeout_s:g} s; start one with "
            f"`percept registry` or `percept launch FILE`, or set PERCEPT_REGISTRY{secured}"
        )
    finally:
        socket.disable_monitor()
        monitor.close()
        socket.close()


def is_running(address: str | None = None, timeout_s: float = 0.3) -> bool:
    try:
        query("graph", address=address, timeout_s=timeout_s)
    except RegistryUnavailable:
        return False
    return True
