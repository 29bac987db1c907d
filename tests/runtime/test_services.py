"""Services, parameters and the registry, across real processes."""

from __future__ import annotations

import threading
import time

import msgpack
import pytest
from conftest import free_port, spin_until, wait_for

from perception import Node
from perception.errors import ServiceError, ServiceLost, ServiceTimeout, ServiceUnavailable
from perception.msgs import GetParameters, Image, ParameterValues, Result, SetParameters, String, Trigger
from perception.runtime.context import Context
from perception.runtime.registry import query


def _client(node: Node, name: str, request=Trigger, response=Result):
    client = node.create_client(name, request, response)
    assert client.wait_for_service(10), f"{name} never appeared"
    return client


def test_service_call_reply_error_and_timeout(context, spawn):
    spawn("-p", "delay:=1.0", node="Services")
    with Node("caller", context=context) as node:
        assert _client(node, "/services/ok").call(Trigger()).message == "ok"
        with pytest.raises(ServiceError, match="RuntimeError: the gripper is on fire"):
            _client(node, "/services/fail").call(Trigger())
        slow = _client(node, "/services/slow")
        with pytest.raises(ServiceTimeout, match=r"/services/slow did not answer within 0.2 s"):
            slow.call(Trigger(), timeout_s=0.2)
        # The late reply to the timed-out call must not be mistaken for the next one's.
        assert slow.call(Trigger(), timeout_s=5).message == "slow"


def test_a_server_that_dies_mid_request_fails_the_call_at_once_and_its_respawn_answers_the_next(
    context, spawn
):
    server = spawn("-p", "delay:=30.0", node="Services")
    with Node("caller", context=context) as node:
        slow = _client(node, "/services/slow")
        ok = _client(node, "/services/ok")
        assert ok.call(Trigger()).message == "ok"  # connected: a death from now on is seen
        time.sleep(0.2)
        threading.Timer(0.5, server.kill).start()
        started = time.monotonic()
        with pytest.raises(ServiceLost, match="/services/slow went away while the call waited"):
            slow.call(Trigger(), timeout_s=60)
        assert time.monotonic() - started < 3.0  # not the 60 s timeout
        spawn("-p", "delay:=0.1", node="Services")  # its respawn, on a new port
        answered = None
        deadline = time.monotonic() + 10
        while answered is None and time.monotonic() < deadline:
            try:  # the old connection ended: the client looks the server up again, never the dead port
                answered = ok.call(Trigger(), timeout_s=1.0).message
            except (ServiceUnavailable, ServiceTimeout):
                time.sleep(0.1)
        assert answered == "ok"


def test_calling_a_service_nobody_serves_names_the_known_ones(context, spawn):
    spawn(node="Services")
    with Node("caller", context=context) as node:
        _client(node, "/services/ok")
        with pytest.raises(ServiceUnavailable, match=r"no server for service /nobody/home .*/services/ok"):
            node.create_client("/nobody/home", Trigger, Result).call(Trigger())


def test_calling_without_a_registry_says_where_it_looked():
    context = Context(registry=f"tcp://127.0.0.1:{free_port()}")
    with (
        Node("alone", context=context) as node,
        pytest.raises(ServiceUnavailable, match=r"did not answer .* start one with `percept registry`"),
    ):
        node.create_client("/x", Trigger, Result).call(Trigger())


def test_parameters_from_the_command_line_and_at_run_time(context, spawn):
    spawn("-p", "rate:=5", "-p", "label:=wrist", "-p", "size:=[1280, 720]", node="Params")
    with Node("tuner", context=context) as node:
        get = _client(node, "/params/get_parameters", GetParameters, ParameterValues)
        values = get.call(GetParameters()).values
        assert values == {
            "rate": 5.0, "count": 3, "label": "wrist", "enabled": True, "size": [1280, 720], "device": "/dev/video0"
        }  # fmt: skip
        assert get.call(GetParameters(names=["rate"])).types == {"rate": "float"}
        setter = _client(node, "/params/set_parameters", SetParameters, Result)
        assert setter.call(SetParameters(values={"count": 7})).success
        refused = setter.call(SetParameters(values={"count": "many"}))
        assert not refused.success and "expected int, found str 'many'" in refused.message
        assert get.call(GetParameters(names=["count"])).values == {"count": 7}
        # A range is enforced at run time and shown with the description (issue 22, item 6).
        for hostile in (1e308, -1.0, float("nan")):
            refused = setter.call(SetParameters(values={"rate": hostile}))
            assert not refused.success and "parameter '/params.rate': expected" in refused.message
        assert get.call(GetParameters(names=["rate"])).descriptions == {"rate": "a float (0.1 to 1000)"}
        assert get.call(GetParameters(names=["rate"])).values == {"rate": 5.0}


def test_a_wrong_parameter_type_on_the_command_line_stops_the_node_with_a_clear_error(spawn, registry):
    process = spawn("-p", "count:=lots", node="Params")
    output, _ = process.communicate(timeout=20)
    assert process.returncode != 0
    assert "parameter '/params.count': expected int, found str 'lots'" in output


def test_nodes_keep_talking_when_the_registry_dies_and_rejoin_a_new_one(spawn, monkeypatch):
    address = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("PERCEPT_REGISTRY", address)
    registry = spawn("registry", "--address", address)
    wait_for(lambda: _graph_names(address) is not None, what="the registry")
    spawn("-p", "rate:=50.0", node="SeqPublisher")
    with Node("listener", context=Context(registry=address)) as node:
        got: list[int] = []
        node.create_subscription(Image, "/frames", lambda m: got.append(m.header.seq))
        spin_until(node, lambda: len(got) >= 5, what="frames while the registry runs")
        registry.terminate()
        registry.wait(timeout=10)
        before = len(got)
        spin_until(node, lambda: len(got) >= before + 50, timeout_s=5, what="frames after the registry died")
        spawn("registry", "--address", address)  # a new, empty registry: nodes re-register by heartbeat
        spin_until(
            node,
            lambda: {"/seq_publisher", "/listener"} <= set(_graph_names(address) or []),
            timeout_s=10,
            what="both nodes to re-register",
        )
        assert got == sorted(got)


def _graph_names(address: str) -> list[str] | None:
    try:
        return [n["name"] for n in query("graph", address=address, timeout_s=1.0)["nodes"]]
    except Exception:
        return None


def _listed(address: str, name: str) -> bool | None:
    """None when the registry did not answer in time: ask again (a slow registry is not "not listed")."""
    names = _graph_names(address)
    return None if names is None else name in names


def test_a_node_that_vanishes_is_forgotten_by_the_registry(context, spawn, registry):
    registry.expiry_s = 1.0
    process = spawn(node="Params")
    wait_for(lambda: _listed(registry.address, "/params") is True, what="registration")
    process.kill()  # no goodbye: the registry must notice the silence
    wait_for(lambda: _listed(registry.address, "/params") is False, timeout_s=5, what="expiry")


def test_a_clean_exit_unregisters_at_once(context, registry):
    node = Node("brief", context=context)
    publisher = node.create_publisher(String, "/brief")
    wait_for(lambda: _listed(registry.address, "/brief") is True, what="registration")
    assert publisher.endpoint.startswith("tcp://127.0.0.1:")  # loopback only by default
    node.destroy()
    start = time.monotonic()
    wait_for(lambda: _listed(registry.address, "/brief") is False, what="unregistration")
    assert time.monotonic() - start < registry.expiry_s


def test_a_heartbeat_that_arrives_after_the_goodbye_does_not_list_the_node_again(registry):
    # A client may send its goodbye on another connection than its heartbeats (ours does not), and then
    # they can arrive in either order.
    node = {"uid": "0123456789ab", "name": "/late", "pid": 1, "host": "h", "publishers": []}
    assert query("sync", address=registry.address, node=node)["ok"]
    assert query("bye", address=registry.address, uid=node["uid"])["ok"]
    late = query("sync", address=registry.address, node=node)
    assert not late["ok"] and "goodbye" in late["error"]
    assert _listed(registry.address, "/late") is False


MALFORMED_REGISTRATIONS = {  # what a foreign client may get wrong: (the node map, what the error says)
    "no-endpoint": (
        {"publishers": [{"topic": "/x", "type": "percept/String"}]},
        "publishers[0] needs text 'endpoint'",
    ),
    "no-type": ({"subscriptions": [{"topic": "/x"}]}, "subscriptions[0] needs text 'type'"),
    "type-not-text": (
        {"publishers": [{"topic": "/x", "type": 5, "endpoint": "tcp://127.0.0.1:1"}]},
        "publishers[0] needs text 'type' of 1 to 512 characters, found 5",
    ),
    "relative-topic": ({"subscriptions": [{"topic": "x", "type": "*"}]}, "'topic' is not a valid topic name"),
    "topic-with-space": (
        {"subscriptions": [{"topic": "/a b", "type": "*"}]},
        "subscriptions[0]: 'topic' is not a valid topic name: invalid topic name '/a b': segments are",
    ),
    "service-name-ends-in-slash": (
        {"services": [{"name": "/bad/", "endpoint": "tcp://127.0.0.1:1", "request": "a", "response": "b"}]},
        "services[0]: 'name' is not a valid service name",
    ),
    "pid-true": ({"pid": True}, "'pid' must be int, found True"),
    "depth-not-int": ({"subscriptions": [{"topic": "/x", "type": "*", "depth": "9"}]}, "'depth' must be int"),
    "bind-address": (
        {"publishers": [{"topic": "/x", "type": "percept/String", "endpoint": "tcp://*:5555"}]},
        "publishers[0]: 'endpoint' must be tcp://HOST:PORT (HOST not *, 0.0.0.0 or ::, PORT 1 to 65535) or "
        "ipc://PATH, found 'tcp://*:5555'",
    ),
    "endpoint-not-an-address": (
        {"services": [{"name": "/bad/s", "request": "a/B", "response": "a/C", "endpoint": "garbage"}]},
        "services[0]: 'endpoint' must be tcp://HOST:PORT",
    ),
    "port-out-of-range": (
        {"publishers": [{"topic": "/x", "type": "percept/String", "endpoint": "tcp://127.0.0.1:70000"}]},
        "found 'tcp://127.0.0.1:70000'",
    ),
    "entry-not-map": ({"services": ["/reset"]}, "services[0] must be a map, found str"),
    "pid-not-int": ({"pid": "12"}, "'pid' must be int"),
}


@pytest.mark.parametrize(
    ("node", "error"), MALFORMED_REGISTRATIONS.values(), ids=MALFORMED_REGISTRATIONS.keys()
)
def test_a_malformed_registration_is_refused_and_the_graph_goes_on(registry, node, error):
    """Every entry the tools read back is checked when it comes in: one kept without its type broke
    `percept topic list` for every user until the node expired."""
    reply = query("sync", address=registry.address, node={"uid": "bad000000000", "name": "/bad", **node})
    assert not reply["ok"] and error in reply["error"] and "'/bad'" in reply["error"]
    good = {"uid": "good00000000", "name": "/good", "subscriptions": [{"topic": "/x", "type": "*"}]}
    assert query("sync", address=registry.address, node=good)["endpoints"] == {"/x": []}
    assert _listed(registry.address, "/bad") is False


def test_a_minimal_registration_is_kept_with_every_list_the_tools_read(registry):
    assert query("sync", address=registry.address, node={"uid": "min000000000", "name": "/minimal"})["ok"]
    (node,) = [n for n in query("graph", address=registry.address)["nodes"] if n["name"] == "/minimal"]
    assert node["publishers"] == node["subscriptions"] == node["services"] == []


@pytest.mark.parametrize("name", ["rel", "/a//b", "/9x", "/"])
def test_a_node_name_that_no_node_could_have_is_refused(registry, name):
    reply = query("sync", address=registry.address, node={"uid": "rel000000000", "name": name})
    assert (
        not reply["ok"] and f"'name' is not a valid node name: invalid node name {name!r}" in reply["error"]
    )


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"\xc1", "malformed registry request: not msgpack ("),
        (msgpack.packb([1, 2]), "expected a map with text 'op', found list"),
        (msgpack.packb({"id": 3}), "expected a map with text 'op', found keys ['id']"),
        (msgpack.packb({"op": "bye", "id": 4}), "bad 'bye' request: expected text 'uid', found None"),
        (msgpack.packb({"op": "service", "id": 5, "name": 1}), "bad 'service' request: expected text 'name'"),
    ],
)
def test_a_malformed_registry_request_gets_a_reason(registry, payload, error):
    import zmq

    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(registry.address)
    try:
        socket.send(payload)
        assert socket.poll(5000)
        reply = msgpack.unpackb(socket.recv())
    finally:
        socket.close()
    assert reply["ok"] is False and error in reply["error"], reply


def test_a_service_is_looked_up_at_its_most_recently_heard_server(registry):
    def server(uid: str, endpoint: str) -> dict:
        service = {"name": "/reset", "request": "Trigger", "response": "Result", "endpoint": endpoint}
        return {"uid": uid, "name": "/resetter", "services": [service]}

    assert query("sync", address=registry.address, node=server("dead00000000", "tcp://127.0.0.1:1"))["ok"]
    time.sleep(0.01)  # the respawned server registers after the one that died
    assert query("sync", address=registry.address, node=server("live00000000", "tcp://127.0.0.1:2"))["ok"]
    assert query("service", address=registry.address, name="/reset")["endpoint"] == "tcp://127.0.0.1:2"


def test_a_request_for_another_service_name_gets_an_error_reply(context):
    """The service-name frame is the request's topic: a foreign client that sends another name (a stale
    lookup, a typo in its own table) is told so rather than served as if it had asked for this one."""
    import zmq

    from perception.runtime import wire

    with Node("server", context=context) as server:
        service = server.create_service("~/ok", Trigger, Result, lambda request: Result(True, "done"))
        client = zmq.Context.instance().socket(zmq.DEALER)
        client.setsockopt(zmq.LINGER, 0)
        client.connect(service.endpoint)
        try:
            client.send_multipart([b"1", *wire.encode(b"/server/other", Trigger())])
            client.send_multipart([b"2", *wire.encode(b"/server/ok", Trigger())])
            replies: list[list[bytes]] = []

            def answered() -> bool:
                while client.poll(0):
                    replies.append(client.recv_multipart())
                return len(replies) == 2

            spin_until(server, answered, what="both replies")
        finally:
            client.close()
    wrong, right = replies
    assert wrong[:2] == [b"1", b"error"]
    assert wrong[2].decode() == "ValueError: a request for service '/server/other' reached /server/ok"
    assert right[:2] == [b"2", b"ok"] and wire.decode(right[2:], Result).msg.message == "done"


def test_failed_service_requests_are_counted_in_stats_and_logged_once_a_second(context, caplog):
    """Issue 22, item 6: 400 hostile requests (not the protocol, or not the request type) cost one log
    line a second, and every one is counted in the node's stats."""
    import zmq

    from perception.msgs import NodeStats
    from perception.runtime.node import STATS_TOPIC

    with Node("server", context=context) as server, Node("watcher", context=context) as watcher:
        service = server.create_service("~/ok", Trigger, Result, lambda request: Result())
        reports: list[NodeStats] = []
        watcher.create_subscription(NodeStats, STATS_TOPIC, reports.append)
        attacker = zmq.Context.instance().socket(zmq.DEALER)
        attacker.setsockopt(zmq.LINGER, 0)
        attacker.connect(service.endpoint)
        for i in range(200):
            attacker.send(b"one frame")  # the server sees [identity, frame]: not the protocol
            attacker.send_multipart([str(i).encode(), b"\xc1 not msgpack"])  # not a Trigger
        with caplog.at_level("ERROR"):
            spin_until(server, lambda: service.failures == 400, what="400 failures counted")
        lines = [r for r in caplog.records if "service /server/ok failed" in r.getMessage()]
        assert 1 <= len(lines) <= 3, [r.getMessage() for r in lines]
        assert attacker.poll(2000), "a malformed request gets an error reply"
        attacker.close()

        def counted() -> bool:
            server.spin_once(0.05)
            return any(r.node == "/server" and r.service_errors == 400 for r in reports)

        spin_until(watcher, counted, timeout_s=10, what="service_errors 400 in the stats")
        # And it still answers (from a thread of its own: a call blocks the caller's thread).
        import threading

        client = _client(watcher, "/server/ok")
        serving = threading.Thread(target=server.spin, args=(5.0,), daemon=True)
        serving.start()
        assert client.call(Trigger(), timeout_s=5).success
        server.request_shutdown()
        serving.join()
