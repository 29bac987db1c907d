"""Pub/sub between real processes over real sockets: order, integrity, discovery, QoS, bad input."""

from __future__ import annotations

import signal
import time

import msgpack
import numpy as np
import pytest
from conftest import spin_until, wait_for
from nodes import pattern

from perception import KEEP_LAST, LATEST_ONLY, Node, QoS
from perception.msgs import Header, Image, NodeStats, String
from perception.runtime.context import Context
from perception.runtime.registry import query


def test_frames_arrive_in_order_and_intact(context, spawn):
    with Node("checker", context=context) as node:
        got: list[Image] = []
        node.create_subscription(Image, "/frames", got.append, QoS(depth=1000))
        spawn("-p", "count:=200", "-p", "rate:=400.0", "-p", "wait_for_subscribers:=1", node="SeqPublisher")
        spin_until(node, lambda: len(got) == 200, what="200 frames")
        assert [m.header.seq for m in got] == list(range(200))
        for msg in got:
            np.testing.assert_array_equal(msg.data, pattern(msg.header.seq))
        assert not got[0].data.flags.writeable  # a view of the received frame, not a copy


@pytest.mark.parametrize("subscriber_first", [True, False], ids=["subscriber-first", "publisher-first"])
def test_nodes_find_each_other_in_any_start_order(context, spawn, subscriber_first):
    got: list[int] = []
    with Node("late", context=context) as node:
        if not subscriber_first:
            spawn("-p", "rate:=100.0", node="SeqPublisher")
            # The publisher is well under way before anyone listens: its own stats count what it sent.
            stats: list[NodeStats] = []
            node.create_subscription(NodeStats, "/percept/stats", stats.append)
            spin_until(
                node,
                lambda: any(
                    t.topic == "/frames" and t.direction == "pub" and t.count > 0
                    for s in stats
                    for t in s.topics
                ),
                what="the publisher's stats counting frames sent",
            )
        node.create_subscription(Image, "/frames", lambda m: got.append(m.header.seq))
        if subscriber_first:
            spawn("-p", "rate:=100.0", node="SeqPublisher")
        spin_until(node, lambda: len(got) >= 20, what="frames from a publisher")
    if not subscriber_first:
        assert got[0] > 0  # a late joiner gets the live stream, not history
    assert got == sorted(got)


def test_two_publishers_on_one_topic(context, spawn):
    by_tag: dict[str, list[int]] = {"a": [], "b": []}
    with Node("both", context=context) as node:
        node.create_subscription(
            Image, "/frames", lambda m: by_tag[m.header.frame_id].append(m.header.seq), QoS(depth=1000)
        )
        spawn("--name", "pub_a", "-p", "tag:=a", "-p", "rate:=100.0", node="SeqPublisher")
        spawn("--name", "pub_b", "-p", "tag:=b", "-p", "rate:=100.0", node="SeqPublisher")
        spin_until(node, lambda: min(len(v) for v in by_tag.values()) >= 20, what="frames from both")
    for seqs in by_tag.values():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # each stream complete and in order


def test_slow_keep_last_subscriber_counts_every_message(context, spawn):
    """Everything published is either delivered or counted as dropped: nothing vanishes silently."""
    delivered: list[int] = []

    def slow(msg: Image) -> None:
        delivered.append(msg.header.seq)
        time.sleep(0.05)

    with Node("slow", context=context) as node:
        subscription = node.create_subscription(Image, "/frames", slow, QoS(depth=5))
        spawn("-p", "count:=300", "-p", "rate:=300.0", "-p", "wait_for_subscribers:=1", node="SeqPublisher")
        spin_until(node, lambda: delivered and delivered[-1] == 299, timeout_s=30, what="the last frame")
        stats = subscription.stats
        assert stats.dropped_queue > 0
        assert len(delivered) + stats.dropped_queue + stats.dropped_gap == 300
        assert delivered == sorted(delivered)


def test_latest_only_subscriber_always_gets_a_fresh_frame(context, spawn):
    ages_ms: list[float] = []

    def slow(msg: Image) -> None:
        ages_ms.append((time.time_ns() - msg.header.stamp) / 1e6)
        time.sleep(0.1)  # ten frames arrive while this runs

    with Node("detector", context=context) as node:
        subscription = node.create_subscription(Image, "/frames", slow, LATEST_ONLY)
        spawn("-p", "rate:=100.0", node="SeqPublisher")
        spin_until(node, lambda: len(ages_ms) >= 15, timeout_s=20, what="15 frames")
        # A backlog would make frames ever older (0.1 s more per callback); the newest is < 1 period old
        # plus the time to wake up and decode (60 ms leaves room for 2 busy cores).
        assert float(np.median(ages_ms[5:])) < 60.0, ages_ms
        assert subscription.stats.dropped_queue >= 5 * len(ages_ms) // 2


def test_a_frozen_subscriber_never_blocks_the_publisher(context, spawn):
    counter = spawn(node="FrameCounter")
    with Node("fast", context=context) as node:
        publisher = node.create_publisher(Image, "/frames")
        assert publisher.wait_for_subscribers(1, timeout_s=10)
        counter.send_signal(signal.SIGSTOP)  # the subscriber's process stops reading altogether
        try:
            frame = np.zeros((480, 640, 3), np.uint8)
            start = time.monotonic()
            for seq in range(2000):  # 1.8 GB: far more than any buffer between the two
                publisher.publish(Image(header=Header(seq=seq), data=frame))
            elapsed = time.monotonic() - start
        finally:
            counter.send_signal(signal.SIGCONT)
        # A blocking publisher would hang here forever; the bound is loose on purpose (not a speed test).
        assert elapsed < 60
        counts: list[int] = []
        node.create_subscription(String, "/count", lambda m: counts.append(int(m.data)))
        spin_until(node, lambda: counts and counts[-1] > 0, what="the counter to resume")


def test_malformed_and_mistyped_messages_are_dropped_and_counted(context, spawn):
    counter = spawn(node="FrameCounter")
    with Node("vandal", context=context) as node:
        stats: list[NodeStats] = []
        node.create_subscription(
            NodeStats, "/percept/stats", lambda m: stats.append(m) if m.node == "/frame_counter" else None
        )
        frames = node.create_publisher(Image, "/frames")
        assert frames.wait_for_subscribers(1, timeout_s=10)
        outlet = frames._outlet
        outlet.send([b"/frames", b"\xc1 not msgpack"], "", 0)
        outlet.send([b"/frames"], "", 0)
        outlet.send([b"/frames", b"\x93\x01\x02\x03"], "", 0)  # msgpack, but not a header map
        wrong_type = node.create_publisher(String, "/frames")
        assert wrong_type.wait_for_subscribers(1, timeout_s=10)
        wrong_type.publish(String(data="not an image"))
        for seq in range(3):
            frames.publish(Image(header=Header(seq=seq), data=pattern(seq)))

        def counted() -> bool:
            if not stats:
                return False
            topic = next(t for t in stats[-1].topics if t.topic == "/frames")
            return topic.malformed == 4 and topic.count >= 7

        spin_until(node, counted, what="the counter's stats to show 4 malformed messages")
        counts: list[int] = []
        node.create_subscription(String, "/count", lambda m: counts.append(int(m.data)))
        spin_until(node, lambda: counts and counts[-1] == 3, what="the 3 good frames to be counted")
    assert counter.poll() is None  # still running


def test_publish_rejects_the_wrong_message_type(context):
    with Node("strict", context=context) as node:
        publisher = node.create_publisher(Image, "/frames")
        with pytest.raises(TypeError, match="publisher on /frames expects Image, got String"):
            publisher.publish(String(data="x"))  # type: ignore[arg-type]


def _registered(address: str, name: str) -> bool:
    return any(node["name"] == "/" + name for node in query("graph", address=address)["nodes"])


def test_closing_a_context_destroys_the_nodes_still_on_it(registry):
    """A context closed with a node still on it ended the ZeroMQ context under the node's registry
    link, whose thread died in a 'Socket operation on non-socket' traceback; the node is destroyed
    first now, and its endpoints say so."""
    import threading

    failures: list[BaseException | None] = []
    hook, threading.excepthook = threading.excepthook, lambda args: failures.append(args.exc_value)
    try:
        context = Context(registry=registry.address)
        node = Node("left_open", context=context)
        publisher = node.create_publisher(String, "/left_open")
        wait_for(lambda: _registered(registry.address, "left_open"), what="its registration")
        context.close()
        time.sleep(0.2)  # the link's thread has ended or died by now
    finally:
        threading.excepthook = hook
    assert failures == []
    assert not context.nodes
    wait_for(lambda: not _registered(registry.address, "left_open"), what="its unregistration")
    with pytest.raises(Exception, match="closed: its node was destroyed"):
        publisher.publish(String(data="after"))


def test_keep_last_is_the_default_and_drops_the_oldest(context):
    assert KEEP_LAST.depth == 10 and LATEST_ONLY.depth == 1
    with Node("pub", context=context) as pub_node, Node("sub", context=context) as sub_node:
        got: list[int] = []
        subscription = sub_node.create_subscription(
            String, "/burst", lambda m: got.append(int(m.data)), QoS(depth=3)
        )
        publisher = pub_node.create_publisher(String, "/burst")
        spin_until(sub_node, lambda: publisher.subscriber_count == 1, what="discovery")
        for i in range(10):
            publisher.publish(String(data=str(i)))

        def all_ten_queued() -> bool:  # taken in before any is handed to the callback
            subscription._receive()
            return subscription.stats.count == 10

        wait_for(all_ten_queued, what="the burst")
        spin_until(sub_node, lambda: got, what="the burst's delivery")
        assert got == [7, 8, 9] and subscription.stats.dropped_queue == 7


def test_nodes_on_another_address_talk_over_tcp(registry):
    """PERCEPT_HOST (here Context(host=...)) moves a node's sockets to another interface: the multi-host
    setting, shown on a second loopback address."""
    remote = Context(registry=registry.address, host="127.0.0.2")
    local = Context(registry=registry.address)
    with Node("remote_cam", context=remote) as far, Node("local", context=local) as near:
        publisher = far.create_publisher(String, "/far")
        assert publisher.endpoint.startswith("tcp://127.0.0.2:")
        got: list[str] = []
        near.create_subscription(String, "/far", lambda m: got.append(m.data))
        spin_until(near, lambda: publisher.subscriber_count == 1, what="discovery across addresses")
        publisher.publish(String(data="over tcp"))
        spin_until(near, lambda: got == ["over tcp"], what="the message")


def test_a_publisher_with_an_address_nobody_can_reach_does_not_stop_its_subscribers(
    registry, context, caplog
):

    broken = {
        "uid": "broken000000",
        "name": "/broken",
        "publishers": [{"topic": "/shared", "type": "percept/String", "endpoint": "tcp://no such host:1"}],
    }
    assert query("sync", address=registry.address, node=broken)["ok"]
    with Node("pub", context=context) as pub_node, Node("sub", context=context) as sub_node:
        got: list[str] = []
        sub_node.create_subscription(String, "/shared", lambda m: got.append(m.data))
        publisher = pub_node.create_publisher(String, "/shared")
        spin_until(sub_node, lambda: publisher.subscriber_count == 1, what="discovery")
        publisher.publish(String(data="still here"))
        spin_until(sub_node, lambda: got == ["still here"], what="the message")
    assert "cannot connect to a publisher of /shared at tcp://no such host:1" in caplog.text


def test_a_callback_that_raises_is_counted_and_the_node_goes_on(context):
    with Node("pub", context=context) as pub_node, Node("sub", context=context) as sub_node:
        seen: list[str] = []

        def fragile(msg: String) -> None:
            seen.append(msg.data)
            if msg.data == "bad":
                raise RuntimeError("a bug in user code")

        subscription = sub_node.create_subscription(String, "/fragile", fragile)
        publisher = pub_node.create_publisher(String, "/fragile")
        spin_until(sub_node, lambda: publisher.subscriber_count == 1, what="discovery")
        for text in ("bad", "good", "bad"):
            publisher.publish(String(data=text))
        spin_until(sub_node, lambda: len(seen) == 3, what="all three messages")
        assert subscription.stats.snapshot().callback_errors == 2  # reported in /percept/stats


def test_a_message_that_fails_to_decode_is_malformed_and_not_also_a_gap(context):
    from perception.runtime import wire

    with Node("pub", context=context) as pub_node, Node("sub", context=context) as sub_node:
        got: list[int] = []
        subscription = sub_node.create_subscription(Image, "/torn", lambda m: got.append(m.header.seq))
        publisher = pub_node.create_publisher(Image, "/torn")
        spin_until(sub_node, lambda: publisher.subscriber_count == 1, what="discovery")
        publisher.publish(Image(header=Header(seq=1), data=pattern(1)))
        torn = wire.encode(b"/torn", Image(header=Header(seq=2), data=pattern(2)), publisher._id, 2)
        torn[-1] = bytes(torn[-1])[:10]  # a header that reads, an array that does not
        publisher._outlet.send(torn, publisher._id, 2)
        publisher._count = 2
        publisher.publish(Image(header=Header(seq=3), data=pattern(3)))
        spin_until(sub_node, lambda: got == [1, 3], what="the two whole frames")
        assert subscription.stats.malformed == 1 and subscription.stats.dropped_gap == 0


@pytest.mark.parametrize("shared_memory", [True, False], ids=["shm", "tcp"])
def test_a_peer_cannot_poison_sequence_accounting_or_stats(registry, shared_memory):
    """Issue 22, item 1: extreme sequence numbers (even in messages that do not decode) once overflowed
    `dropped_gap`, after which the node's stats could never be encoded again."""
    from perception.runtime import wire
    from perception.runtime.subscription import MAX_PUBLISHERS_TRACKED

    context = Context(registry=registry.address, shared_memory=shared_memory)
    with Node("vandal", context=context) as vandal, Node("victim", context=context) as victim:
        got: list[int] = []
        subscription = victim.create_subscription(
            Image, "/frames", lambda m: got.append(m.header.seq), QoS(depth=2000)
        )  # deep enough that every forged message is read, not evicted unread
        reports: list[NodeStats] = []
        victim.create_subscription(NodeStats, "/percept/stats", reports.append)
        publisher = vandal.create_publisher(Image, "/frames")
        spin_until(victim, lambda: publisher.subscriber_count == 1, what="discovery")
        outlet = publisher._outlet
        for n in (-(2**63), 2**64 - 1, 2**63):  # outside int64: malformed, whatever else they carry
            frames = wire.encode(b"/frames", Image(header=Header(seq=9), data=pattern(9)), "forged", 0)
            header = msgpack.unpackb(
                frames[1], strict_map_key=False, ext_hook=lambda c, d: msgpack.ExtType(c, d)
            )
            frames[1] = msgpack.packb({**header, "n": n})
            outlet.send(frames, "forged", 0)
        # In range but a jump no real publisher makes, then ids invented by the thousand.
        forged = [("liar", 1), ("liar", 2**62), *((f"id{i}", 1) for i in range(MAX_PUBLISHERS_TRACKED + 10))]
        for i, (src, n) in enumerate(forged):
            outlet.send(wire.encode(b"/frames", Image(header=Header(seq=7), data=pattern(7)), src, n), src, n)
            if i % 50 == 0:
                victim.spin_once(0.01)  # in batches a sending queue of 100 holds
        publisher._count = 0
        publisher.publish(Image(header=Header(seq=1), data=pattern(1)))
        spin_until(victim, lambda: got[-1:] == [1], what="a real frame after the forged ones")
        stats = subscription.stats
        assert stats.malformed == 3 and stats.dropped_gap == 0
        assert len(subscription._last_seq) <= MAX_PUBLISHERS_TRACKED
        stats.dropped_gap = 2**70  # however a counter got there, the report still goes out
        reports.clear()
        spin_until(victim, lambda: any(r.node == "/victim" for r in reports), what="the victim's stats")


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


@pytest.mark.parametrize("shared_memory", [True, False], ids=["shm", "tcp"])
def test_a_frame_over_the_size_limit_is_refused_unread_and_counted(registry, spawn, shared_memory):
    """Issue 22, item 5: a 1 GiB frame was received whole (subscriber RSS 35 -> 1,039 MiB) before it was
    refused. Now a frame over the type's limit never reaches the subscriber's memory: over TCP ZeroMQ
    cuts the sender off before reading it (its sequence number then counts it as lost in transit), in
    shared memory it is never mapped in (counted as malformed); the frames after it arrive."""
    limit_mib = 4
    env = {"PERCEPT_MAX_MESSAGE_MB": str(limit_mib), "PERCEPT_SHM": "1" if shared_memory else "0"}
    counter = spawn("-r", "frames:=/frames", "-r", "count:=/count", node="FrameCounter", env=env)
    context = Context(registry=registry.address, shared_memory=shared_memory)
    with Node("sender", context=context) as node:
        counts: list[int] = []
        reports: list[NodeStats] = []
        node.create_subscription(String, "/count", lambda m: counts.append(int(m.data)))
        node.create_subscription(NodeStats, "/percept/stats", reports.append)
        publisher = node.create_publisher(Image, "/frames")
        spin_until(node, lambda: publisher.subscriber_count == 1 and counts, timeout_s=20, what="discovery")
        small = Image(header=Header(seq=1), data=pattern(1))
        for _ in range(5):
            publisher.publish(small)
            node.spin_once(0.02)
        spin_until(node, lambda: counts[-1] == 5, what="5 small frames")
        baseline = _peak_rss_mib(counter.pid)
        huge = np.zeros((10 * limit_mib * 1024, 1024), np.uint8)  # ten times the limit: 40 MiB
        publisher.publish(Image(header=Header(seq=2), data=huge, encoding="mono8"))
        deadline = time.monotonic() + 20
        while counts[-1] < 10 and time.monotonic() < deadline:  # TCP reconnects after the cut
            publisher.publish(small)
            node.spin_once(0.2)
        assert counts[-1] >= 10, f"small frames after the huge one: {counts[-1] - 5}"
        assert _peak_rss_mib(counter.pid) - baseline < 2 * limit_mib  # never read whole, nor mapped

        def refused() -> bool:
            mine = [r for r in reports if r.node == "/frame_counter"]
            topic = [t for t in mine[-1].topics if t.topic == "/frames"] if mine else []
            return bool(topic) and topic[0].malformed + topic[0].dropped_gap >= 1

        spin_until(node, refused, timeout_s=10, what="the huge frame counted")


def test_a_publisher_says_once_that_its_messages_are_over_what_subscribers_take(monkeypatch, caplog):
    """A 5000 x 5000 image was dropped by every subscriber (counted there as malformed) while the
    publisher, where it can be fixed, said nothing."""
    import logging

    from perception.runtime.harness import NodeHarness

    monkeypatch.setenv("PERCEPT_MAX_MESSAGE_MB", "1")

    class Big(Node):
        def __init__(self) -> None:
            super().__init__("big")
            self.images = self.create_publisher(Image, "/big")

    with caplog.at_level(logging.WARNING), NodeHarness(Big) as harness:
        for _ in range(3):
            harness.node.images.publish(Image(header=Header(seq=1), data=np.zeros((1024, 1024, 3), np.uint8)))
    assert [r.getMessage() for r in caplog.records] == [
        "/big: Image messages of 3.0 MiB are over the 1 MiB its subscribers take (PERCEPT_MAX_MESSAGE_MB, set in "
        "theirs): they drop it, counted as malformed"
    ]
