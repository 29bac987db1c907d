"""CURVE encryption and authentication of a graph (issue 22, item 8 and deliver 5), between real
processes: what a peer without an allowed key can no longer do, and what a key cannot take over."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from conftest import free_port, percept, read_until, spin_until, wait_for
from nodes import pattern

from perception import Node
from perception.errors import RegistryUnavailable
from perception.msgs import GetParameters, Image, NodeStats, ParameterValues, SetParameters, String
from perception.runtime import registry as registry_module
from perception.runtime import security
from perception.runtime.context import Context
from perception.runtime.gatekeeper import HANDSHAKE_TIMEOUT_S
from perception.runtime.registry import Registry
from perception.runtime.security import Keys
from perception.runtime.stats import problems


@pytest.fixture
def keystore(tmp_path: Path) -> Path:
    root = tmp_path / "keys"
    security.generate(root, ["camera", "checker", "intruder"])
    return root


@pytest.fixture
def secure_registry(keystore: Path, monkeypatch: pytest.MonkeyPatch):
    registry = Registry(f"tcp://127.0.0.1:{free_port()}", keys=Keys.load(keystore, security.REGISTRY))
    registry.serve_in_thread()
    monkeypatch.setenv("PERCEPT_REGISTRY", registry.address)
    yield registry
    registry.stop()


def _camera(spawn, keystore: Path):
    """A SeqPublisher named /camera publishing /frames at 50 Hz, with the camera's key."""
    env = {"PERCEPT_KEYSTORE": str(keystore), "PERCEPT_ENCLAVE": "camera"}
    return spawn(
        "--name", "camera", "-r", "frames:=/frames", "-p", "rate:=50.0", node="SeqPublisher", env=env
    )


def _endpoint(registry: Registry, name: str, topic: str = "/frames") -> str:
    """Where node `name` publishes `topic` (or serves the service named `topic`), from the registry."""
    nodes = registry_module.query("graph", address=registry.address, keys=_tools(registry))["nodes"]
    entries = [e for n in nodes if n["name"] == name for e in n["publishers"] + n["services"]]
    return next(e["endpoint"] for e in entries if topic in (e.get("topic"), e.get("name")))


def _tools(registry: Registry) -> Keys:
    return Keys.load(registry.keys.keystore, security.TOOLS)  # type: ignore[union-attr]


def test_keys_generate_makes_a_keystore_for_a_launch_file(tmp_path):
    root = tmp_path / "keys"
    result = percept("keys", "generate", str(root), "--launch", "tabletop_grasp", "--enclave", "arm")
    assert result.returncode == 0, result.stderr
    enclaves = sorted(p.stem for p in (root / "public").glob("*.key"))
    assert enclaves == ["arm", "detector", "grasp_planner", "pick_loop", "registry", "sim", "tools"]
    for secret in (root / "private").glob("*.key_secret"):
        assert secret.stat().st_mode & 0o077 == 0, secret
    assert (root / "private").stat().st_mode & 0o077 == 0
    again = percept("keys", "generate", str(root), "--enclave", "arm")
    assert "kept" in again.stdout  # an existing key is never replaced
    bad = percept("keys", "generate", str(tmp_path / "other"), "--node", "bad name!")  # made a key for it
    assert bad.returncode == 1 and "invalid node name '/bad name!'" in bad.stderr
    assert not (tmp_path / "other").exists()


def test_a_secured_graph_talks_and_a_stranger_gets_nothing_in_and_nothing_out(
    keystore, secure_registry, spawn
):
    _camera(spawn, keystore)
    context = Context(registry=secure_registry.address, keys=Keys.load(keystore, "checker"))
    with Node("checker", context=context) as checker:
        got: list[int] = []
        checker.create_subscription(Image, "/frames", lambda m: got.append(m.header.seq))
        spin_until(checker, lambda: len(got) >= 10, timeout_s=20, what="frames over CURVE")
        frames_at = _endpoint(secure_registry, "/camera")
        setter_at = _endpoint(secure_registry, "/camera", "/camera/set_parameters")
        plain = zmq.Context.instance()
        stranger_keys = zmq.curve_keypair()  # a key pair of its own, not in the keystore

        # It cannot ask the registry anything, nor register.
        with pytest.raises(RegistryUnavailable):
            registry_module.query("graph", address=secure_registry.address, timeout_s=1.0, keys=False)
        # It cannot subscribe: neither in plain text nor with a key the keystore does not list.
        for curve in (None, stranger_keys):
            sub = plain.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            if curve is not None:
                sub.curve_publickey, sub.curve_secretkey = curve
                sub.curve_serverkey = Keys.load(keystore, "camera").public
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(frames_at)
            assert not sub.poll(1500), f"a stranger ({'keyed' if curve else 'plain'}) received frames"
            sub.close()
        # It cannot call a service (a plain call once stopped the camera through set_parameters).
        dealer = plain.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(setter_at)
        from perception.runtime import wire

        dealer.send_multipart(
            [b"1", *wire.encode(b"/camera/set_parameters", SetParameters(values={"rate": 1.0}))]
        )
        assert not dealer.poll(1500), "a stranger's service call was answered"
        dealer.close()
        before = len(got)
        spin_until(checker, lambda: len(got) >= before + 20, what="frames at the old rate")
        # A graph member still can.
        client = checker.create_client("/camera/get_parameters", GetParameters, ParameterValues)
        assert client.call(GetParameters(names=["rate"]), timeout_s=5).values == {"rate": 50.0}
        # And the camera counted what it refused (a plain and a keyed subscriber, a plain service call:
        # 3 or more, as ZeroMQ may retry), where its other problems are counted: no log to read.
        stats: list[NodeStats] = []
        checker.create_subscription(NodeStats, "/percept/stats", stats.append)
        spin_until(checker, lambda: any(s.node == "/camera" for s in stats), what="the camera's stats")
        camera = [s for s in stats if s.node == "/camera"][-1]
        assert camera.refused_connections >= 3, camera
        assert f"{camera.refused_connections} refused connections" in problems(camera)


def test_a_key_cannot_take_another_nodes_name(keystore, secure_registry, spawn):
    _camera(spawn, keystore)
    tools = _tools(secure_registry)
    wait_for(
        lambda: any(
            n["name"] == "/camera"
            for n in registry_module.query("graph", address=secure_registry.address, keys=tools)["nodes"]
        ),
        timeout_s=20,
        what="the camera",
    )
    intruder = Context(registry=secure_registry.address, keys=Keys.load(keystore, "intruder"))
    with Node("camera", context=intruder) as impostor:
        impostor.create_publisher(Image, "/frames")
        impostor.spin(1.5)  # its registrations go out and are refused
        cameras = [
            n
            for n in registry_module.query("graph", address=secure_registry.address, keys=tools)["nodes"]
            if n["name"] == "/camera"
        ]
        assert len(cameras) == 1 and cameras[0]["pid"] != os.getpid()
    reply = registry_module.query(
        "sync",
        address=secure_registry.address,
        keys=Keys.load(keystore, "intruder"),
        node={"uid": "x", "name": "/camera", "pid": 1, "host": "h", "publishers": [], "subscriptions": []},
    )
    assert not reply["ok"] and "may not register /camera" in reply["error"]
    camera = next(
        n
        for n in registry_module.query("graph", address=secure_registry.address, keys=tools)["nodes"]
        if n["name"] == "/camera"
    )

    def sync(enclave: str, **node: object) -> dict:
        registration = {
            "uid": camera["uid"],
            "pid": 1,
            "host": "h",
            "publishers": [],
            "subscriptions": [],
            **node,
        }
        keys = Keys.load(keystore, enclave)
        return registry_module.query("sync", address=secure_registry.address, keys=keys, node=registration)

    # Nor serve a service under another node's name, nor advertise another node's endpoint, nor reach
    # another node's id (the camera's, taken from the graph) to say goodbye for it.
    service = {
        "name": "/camera/set_parameters",
        "endpoint": "tcp://127.0.0.1:1",
        "request": "a",
        "response": "b",
    }
    refused = sync(security.TOOLS, name="/_tool", services=[service])
    assert not refused["ok"] and "only services under its own name" in refused["error"]
    stolen = {"topic": "/frames", "type": "percept/Image", "endpoint": _endpoint(secure_registry, "/camera")}
    refused = sync("intruder", name="/intruder", publishers=[stolen])
    assert not refused["ok"] and "served by /camera with another key" in refused["error"]
    registry_module.query(
        "bye", address=secure_registry.address, keys=Keys.load(keystore, "intruder"), uid=camera["uid"]
    )
    assert any(
        n["name"] == "/camera"
        for n in registry_module.query("graph", address=secure_registry.address, keys=tools)["nodes"]
    )
    assert not security.may_register(security.REGISTRY, "/registry")  # no node takes an enclave's key


def test_curve_traffic_is_unreadable_on_the_wire(keystore, secure_registry, spawn):
    """A relay between a subscriber and the publisher records every byte on the link: the frames arrive
    whole at the subscriber, and no run of their bytes, nor the topic's name, is in the recording."""
    _camera(spawn, keystore)
    frames_at = _endpoint_when_up(secure_registry, "/camera")
    upstream_port = int(frames_at.rsplit(":", 1)[1])
    recorded = bytearray()
    listener = socket.create_server(("127.0.0.1", 0))
    relay_port = listener.getsockname()[1]
    threading.Thread(target=_relay, args=(listener, upstream_port, recorded), daemon=True).start()
    keys = Keys.load(keystore, "checker")
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    keys.connect_to(sub, Keys.load(keystore, "camera").public)
    sub.setsockopt(zmq.SUBSCRIBE, b"/frames")
    sub.connect(f"tcp://127.0.0.1:{relay_port}")
    from perception.runtime import wire

    received = []
    deadline = time.monotonic() + 20
    while len(received) < 5 and time.monotonic() < deadline:
        if sub.poll(200):
            received.append(wire.decode(sub.recv_multipart(), Image).msg)
    sub.close()
    assert len(received) == 5, "no frames through the relay"
    np.testing.assert_array_equal(received[-1].data, pattern(received[-1].header.seq))
    assert len(recorded) > 5 * received[-1].data.nbytes  # the frames did cross the relay
    for msg in received:
        assert bytes(msg.data.reshape(-1)[:64]) not in recorded
    assert b"/frames" not in recorded and b"percept/Image" not in recorded


def _endpoint_when_up(registry: Registry, name: str) -> str:
    found: list[str] = []

    def up() -> bool:
        try:
            found.append(_endpoint(registry, name))
        except StopIteration:
            return False
        return True

    wait_for(up, timeout_s=20, what=name)
    return found[-1]


def _relay(listener: socket.socket, upstream_port: int, recorded: bytearray) -> None:
    client, _ = listener.accept()
    server = socket.create_connection(("127.0.0.1", upstream_port))
    peers = {client: server, server: client}
    while True:
        ready, _, _ = select.select(list(peers), [], [], 1.0)
        for side in ready:
            data = side.recv(1 << 16)
            if not data:
                return
            recorded += data
            peers[side].sendall(data)


def test_without_a_keystore_nothing_changes(registry, spawn):
    """The default stays plain TCP (and shared memory): a graph with no keystore is unaffected."""
    context = Context(registry=registry.address)
    assert context.keys is None
    with Node("plain", context=context) as node:
        got: list[int] = []
        node.create_subscription(Image, "/frames", lambda m: got.append(m.header.seq))
        spawn("-r", "frames:=/frames", node="SeqPublisher")
        spin_until(node, lambda: len(got) >= 5, timeout_s=20, what="plain frames")


def test_a_launch_file_turns_curve_on_for_its_registry_and_every_node(tmp_path, monkeypatch):
    from conftest import ROOT, TESTS

    monkeypatch.setenv("PERCEPT_REGISTRY", f"tcp://127.0.0.1:{free_port()}")
    monkeypatch.delenv("PERCEPT_KEYSTORE", raising=False)
    graph = tmp_path / "graph.yaml"
    graph.write_text(
        f"""
security: {{keystore: keys}}
nodes:
  - name: camera
    node: {TESTS / "nodes.py"}:SeqPublisher
    parameters: {{rate: 50.0}}
    remappings: {{frames: /frames}}
  - name: counter
    node: {TESTS / "nodes.py"}:FrameCounter
    remappings: {{frames: /frames, count: /count}}
"""
    )
    made = percept("keys", "generate", str(tmp_path / "keys"), "--launch", str(graph), "--node", "/observer")
    assert made.returncode == 0, made.stderr
    launcher = subprocess.Popen(
        [sys.executable, "-m", "perception.cli", "launch", str(graph), "--status-period", "0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        context = Context(keys=Keys.load(tmp_path / "keys", "observer"))
        with Node("observer", context=context) as observer:
            counts: list[int] = []
            observer.create_subscription(String, "/count", lambda m: counts.append(int(m.data)))
            spin_until(observer, lambda: counts and counts[-1] > 20, timeout_s=30, what="frames counted")
        with pytest.raises(RegistryUnavailable):  # and without a key, nothing answers
            registry_module.query("graph", timeout_s=1.0, keys=False)
    finally:
        launcher.terminate()
        output, _ = launcher.communicate(timeout=30)
    assert "[launch] CURVE on: keystore" in output, output


def _threads() -> int:
    """This process's threads, native ones too (ZeroMQ's I/O and reaper threads are not Python's)."""
    return len(os.listdir("/proc/self/task"))


def test_closed_contexts_leave_no_thread_behind(keystore, secure_registry):
    """A process that makes contexts and outlives them (percept bench bus makes one per side and round)
    closes each: its ZAP handler's thread and ZeroMQ's own threads end with it. Ten CURVE contexts,
    each with a node registered and publishing, leave none."""
    before = _threads()
    for _ in range(10):
        context = Context(registry=secure_registry.address, keys=Keys.load(keystore, "checker"))
        with context, Node("closer", context=context) as node:
            node.create_publisher(String, "/closing").publish(String(data="bye"))
    wait_for(lambda: _threads() <= before, timeout_s=5, what=f"threads back to {before}")
    context.close()  # again: nothing more to do


def test_the_registry_closes_a_silent_connection_and_tells_its_refusals_a_line_a_second(keystore, spawn):
    """The audit held 1,101 idle TCP connections to the registry (its 1024 open files) and it took no
    node until they went; 200 clients with a key of their own left no trace. Now a connection that
    sends nothing is closed after HANDSHAKE_TIMEOUT_S, and refusals are told in a line a second."""
    address = f"tcp://127.0.0.1:{free_port()}"
    registry = spawn("registry", "--address", address, env={"PERCEPT_KEYSTORE": str(keystore)})
    tools = Keys.load(keystore, security.TOOLS)

    def answers() -> bool:
        try:
            return bool(registry_module.query("graph", address=address, timeout_s=0.5, keys=tools)["ok"])
        except RegistryUnavailable:
            return False

    wait_for(answers, timeout_s=30, what="the registry")
    host, port = address.removeprefix("tcp://").split(":")
    silent = socket.create_connection((host, int(port)))
    connected_at = time.monotonic()
    strangers = []
    stranger_public, stranger_secret = zmq.curve_keypair()  # a key of its own, in no keystore
    for _ in range(30):
        stranger = zmq.Context.instance().socket(zmq.DEALER)
        stranger.setsockopt(zmq.LINGER, 0)
        stranger.curve_publickey, stranger.curve_secretkey = stranger_public, stranger_secret
        stranger.curve_serverkey = tools.registry_public
        stranger.connect(address)
        strangers.append(stranger)
    # A key added to the keystore after the registry started: refused, and the caller told why.
    security.generate(keystore, ["latecomer"])
    with pytest.raises(
        RegistryUnavailable, match="added after the graph started is taken only after a restart"
    ):
        registry_module.query("graph", address=address, timeout_s=5.0, keys=Keys.load(keystore, "latecomer"))
    silent.settimeout(HANDSHAKE_TIMEOUT_S + 5)
    while silent.recv(4096):  # the registry's greeting, then its end of the connection
        pass
    closed_after = time.monotonic() - connected_at
    assert HANDSHAKE_TIMEOUT_S - 0.5 < closed_after < HANDSHAKE_TIMEOUT_S + 2, closed_after
    assert answers()  # a member still gets in
    time.sleep(1.1)  # the last line's second
    for stranger in strangers:
        stranger.close()
    silent.close()
    output = read_until(registry, "did not complete a handshake", timeout_s=10)
    lines = [line for line in output.splitlines() if line.startswith("refused ")]
    told = sum(int(line.split()[1]) for line in lines)
    # 30 strangers, the latecomer and the silent one, in at most a line a second
    assert told >= 32 and len(lines) <= closed_after + 2, output
    assert f"to the registry with a CURVE key not in {keystore}/public/ (from 127.0.0.1)" in output
    assert f"1 to the registry that did not complete a handshake within {HANDSHAKE_TIMEOUT_S:g} s" in output
