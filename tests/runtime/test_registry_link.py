"""A node's link to the registry across the registry's death (issue 22, item 3)."""

from __future__ import annotations

import time

import zmq
from conftest import free_port, wait_for

from perception import Node
from perception.msgs import String
from perception.runtime import registry
from perception.runtime.context import Context
from perception.runtime.registry import Registry


def _known(address: str, name: str) -> bool:
    reply = registry.query("graph", address=address, timeout_s=0.5)
    return any(node["name"] == name for node in reply["nodes"])


def test_a_registration_lost_with_the_registry_reaches_the_next_one_within_a_heartbeat(monkeypatch):
    """The registry dies with a node's request unanswered; the next one must not wait for that answer
    to time out before it hears from the node. The timeout is stretched to 60 s here, so waiting for it
    fails the 10 s deadline by far, while a loaded machine's delays cannot."""
    from perception.runtime import registry_link

    monkeypatch.setattr(registry_link, "REPLY_TIMEOUT_S", 60.0)
    address = f"tcp://127.0.0.1:{free_port()}"
    context = zmq.Context()
    dying = context.socket(zmq.ROUTER)  # takes the node's first request and dies without answering
    dying.bind(address)
    node = Node("survivor", context=Context(registry=address))
    node.create_publisher(String, "/x")
    assert dying.poll(5000), "the node sent no registration"
    dying.close(linger=0)
    context.term()
    successor = None
    deadline = time.monotonic() + 5
    while successor is None:
        try:
            successor = Registry(address)
        except Exception:  # the port is released a moment after the close
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    successor.serve_in_thread()
    try:
        wait_for(lambda: _known(address, "/survivor"), timeout_s=10, what="the node in the new registry")
    finally:
        node.destroy()
        successor.stop()


def test_a_node_joining_under_a_live_nodes_name_is_warned_of(caplog):
    """Two graphs' cameras both named /camera met with no word; a respawned node, whose killed
    predecessor is not yet forgotten, is no namesake."""
    import logging
    import os
    import socket
    import subprocess
    import sys

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)
    registry = Registry(f"tcp://127.0.0.1:{free_port()}", expiry_s=3600.0)
    host = socket.gethostname()
    try:
        with caplog.at_level(logging.WARNING, logger="percept.registry"):
            registry._sync({"uid": "killed", "name": "/camera", "pid": dead_pid, "host": host}, None)
            registry._sync({"uid": "respawned", "name": "/camera", "pid": os.getpid(), "host": host}, None)
            assert not [r for r in caplog.records if "two nodes are named" in r.getMessage()]
            for uid in ("launcher_a", "launcher_b"):  # hidden nodes, as two launchers' monitors: no namesakes
                registry._sync({"uid": uid, "name": "/_launcher", "pid": os.getpid(), "host": host}, None)
            first = registry._sync(
                {"uid": "respawned", "name": "/camera", "pid": os.getpid(), "host": host}, None
            )
            reply = registry._sync({"uid": "other", "name": "/camera", "pid": 1, "host": "robot"}, None)
        (warning,) = [r.getMessage() for r in caplog.records if "two nodes are named" in r.getMessage()]
        assert warning.startswith("two nodes are named /camera: pid 1 on robot joined beside pid ")
        # The node that joined is told as well, in its own terminal, once.
        assert reply["warning"] == warning and "warning" not in first
        again = registry._sync({"uid": "other", "name": "/camera", "pid": 1, "host": "robot"}, None)
        assert "warning" not in again
    finally:
        registry.stop()


def test_a_node_publishing_a_topic_with_another_type_than_the_graphs_is_warned_of(caplog):
    """Its messages reach the subscribers only to be counted as malformed there: say so when it joins."""
    import logging

    registry = Registry(f"tcp://127.0.0.1:{free_port()}", expiry_s=3600.0)
    detections = {"topic": "/detections", "type": "percept/Detections"}
    try:
        with caplog.at_level(logging.WARNING, logger="percept.registry"):
            registry._sync(
                {"uid": "det", "name": "/detector", "publishers": [{**detections, "endpoint": "tcp://h:1"}]},
                None,
            )
            agreeing = registry._sync({"uid": "trk", "name": "/tracker", "subscriptions": [detections]}, None)
            raw = registry._sync(
                {"uid": "rec", "name": "/_rec", "subscriptions": [{"topic": "/detections", "type": "*"}]},
                None,
            )
            wrong = {"topic": "/detections", "type": "percept/String", "endpoint": "tcp://h:2"}
            joined = registry._sync(
                {"uid": "pub", "name": "/_percept_pub"}, None
            )  # its publisher comes after
            reply = registry._sync({"uid": "pub", "name": "/_percept_pub", "publishers": [wrong]}, None)
            again = registry._sync({"uid": "pub", "name": "/_percept_pub", "publishers": [wrong]}, None)
        assert "warning" not in joined and "warning" not in again  # told once
        assert "warning" not in agreeing and "warning" not in raw
        assert reply["warning"] == (
            "/_percept_pub publishes /detections as percept/String, which the graph has as percept/Detections "
            "(those messages are dropped as malformed)"
        )
        # And a subscriber that comes after a publisher of another type.
        late = registry._sync(
            {
                "uid": "late",
                "name": "/counter",
                "subscriptions": [{"topic": "/detections", "type": "percept/Int64"}],
            },
            None,
        )
        assert late["warning"] == (
            "/counter subscribes to /detections as percept/Int64, which the graph has as percept/Detections, "
            "percept/String (those messages are dropped as malformed)"
        )
        assert [r.getMessage() for r in caplog.records] == [reply["warning"], late["warning"]]
    finally:
        registry.stop()


def test_a_registry_that_goes_and_comes_back_is_told_once_each_way(caplog):
    """A node's requests queued while the registry was away are answered a few ms apart when it comes
    back; each answer said "is back" and the wait for the next one had it "not answering" again: four
    pairs at a graph's start, and in `percept view`, which shows warnings only, eight "not answering"
    and no "is back" across one restart."""
    import logging

    address = f"tcp://127.0.0.1:{free_port()}"

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "/waiting"]

    with caplog.at_level(logging.WARNING):
        node = Node("waiting", context=Context(registry=address))
        try:
            node.create_publisher(String, "/x")
            gone = f"registry at {address} not answering; keeping existing connections"
            wait_for(
                lambda: gone in said(), timeout_s=10, what="the node to say the registry is not answering"
            )
            time.sleep(2.5)  # heartbeats queue up meanwhile, each answered when the registry comes
            successor = Registry(address)
            successor.serve_in_thread()
            try:
                wait_for(lambda: _known(address, "/waiting"), timeout_s=10, what="the node in the registry")
                time.sleep(3.0)  # longer than the reply timeout: a wait counted from the oldest would warn
            finally:
                successor.stop()
        finally:
            node.destroy()
    assert said()[:2] == [gone, f"registry at {address} is back"], said()
    # Stopping the registry before the node may add one "not answering" at the very end.
    assert said()[2:] in ([], [gone]), said()
