"""Frames between processes of one host through the local channel and shared memory: intact, in order,
held frames never overwritten, fan-out, drop accounting as on TCP, kill -9 of either side, the TCP
fallback. Real processes, real pipes and segments in /dev/shm."""

from __future__ import annotations

import errno
import os
import signal
import time
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from perception import Node, QoS
from perception.msgs import Header, Image, String
from perception.runtime import shm
from perception.runtime.context import Context
from tests.conftest import percept, read_until, spin_until
from tests.nodes import pattern

pytestmark = pytest.mark.skipif(not shm.enabled(), reason="shared memory needs Linux and /dev/shm")


def _files_of(pid: int) -> list[str]:
    return [n for n in os.listdir(shm.SHM_DIR) if n.startswith(f"{shm.PREFIX}{pid}-")]


def _local_publishers(node: Node) -> int:
    """Publishers the node's subscriptions reach through the local channel (not TCP)."""
    return sum(len(s._inlet.local._publishers) for s in node._subscriptions if s._inlet.local is not None)


def _counts(subscription: object) -> tuple[int, int]:
    stats = subscription.stats  # type: ignore[attr-defined]
    return stats.dropped_queue, stats.dropped_gap


def test_frames_arrive_intact_in_order_through_shared_memory(context, spawn):
    with Node("checker", context=context) as node:
        seqs: list[int] = []
        intact: list[bool] = []
        held: deque[Image] = deque(maxlen=40)  # 35 MiB held, within the 64 MiB a publisher may use

        def check(msg: Image) -> None:
            seqs.append(msg.header.seq)
            intact.append(np.array_equal(msg.data, pattern(msg.header.seq, (480, 640, 3))))
            held.append(msg)

        subscription = node.create_subscription(Image, "/frames", check, QoS(depth=1000))
        # 100 frames/s: the check takes 7 ms a frame on a 2-core AVX2 machine. Faster, the backlog and
        # the 40 frames held outgrow the 72 slots, and the oldest unread are taken back (counted).
        spawn(
            "-p", "count:=150", "-p", "rate:=100.0", "-p", "wait_for_subscribers:=1",
            "-p", "height:=480", "-p", "width:=640",
            node="SeqPublisher",
        )  # fmt: skip
        spin_until(node, lambda: len(seqs) == 150, what="150 frames")
        assert _local_publishers(node) == 1  # the pair is on one host: no TCP connection was made
        assert seqs == list(range(150)) and all(intact)
        for msg in held:  # held by this test all along, across the publisher's slot reuse
            np.testing.assert_array_equal(msg.data, pattern(msg.header.seq, (480, 640, 3)))
        assert not held[0].data.flags.writeable
        assert _counts(subscription) == (0, 0)


def test_a_held_frame_stays_intact_while_the_publisher_reuses_slots(context, spawn):
    # A 2 MiB budget: eight 230 KiB slots, four of them held here in the end, so 200 frames reuse the
    # other slots dozens of times around the held ones.
    with Node("holder", context=context) as node:
        held: list[Image] = []
        seen: list[int] = []

        def keep_every_fiftieth(msg: Image) -> None:
            seen.append(msg.header.seq)
            if msg.header.seq % 50 == 0:
                held.append(msg)

        subscription = node.create_subscription(Image, "/frames", keep_every_fiftieth, QoS(depth=2))
        spawn(
            "-p", "count:=200", "-p", "rate:=300.0", "-p", "wait_for_subscribers:=1",
            "-p", "height:=240", "-p", "width:=320",
            node="SeqPublisher", env={"PERCEPT_SHM_MB": "2"},
        )  # fmt: skip
        spin_until(node, lambda: seen and seen[-1] == 199, what="the last frame")
        assert _local_publishers(node) == 1
        assert [m.header.seq for m in held] == [0, 50, 100, 150]
        for msg in held:
            np.testing.assert_array_equal(msg.data, pattern(msg.header.seq, (240, 320, 3)))
        dropped_queue, dropped_gap = _counts(subscription)
        assert len(seen) + dropped_queue + dropped_gap == 200  # everything is delivered or counted


def test_one_publisher_four_subscribers(registry, spawn):
    nodes = [Node(f"fan{i}", context=Context(registry=registry.address)) for i in range(4)]
    try:
        got: list[list[int]] = [[] for _ in nodes]
        for node, into in zip(nodes, got, strict=True):
            node.create_subscription(
                Image,
                "/frames",
                lambda m, into=into: (
                    into.append(m.header.seq)
                    if np.array_equal(m.data, pattern(m.header.seq, (120, 160, 3)))
                    else into.append(-1)
                ),
                QoS(depth=1000),
            )
        spawn(
            "-p", "count:=80", "-p", "rate:=100.0", "-p", "wait_for_subscribers:=4",
            "-p", "height:=120", "-p", "width:=160",
            node="SeqPublisher",
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while any(len(g) < 80 for g in got) and time.monotonic() < deadline:
            for node in nodes:
                node.spin_once(0.01)
        assert all(g == list(range(80)) for g in got)  # all of them, intact, in order, to each
        assert all(_local_publishers(node) == 1 for node in nodes)
    finally:
        for node in nodes:
            node.destroy()


@pytest.mark.parametrize("shared_memory", [True, False], ids=["shm", "tcp"])
def test_a_slow_keep_last_subscriber_counts_as_on_tcp(registry, spawn, shared_memory):
    """A subscriber slower than its publisher keeps its newest `depth` frames and counts the rest as
    dropped from its queue, the same way over shared memory as over TCP."""
    context = Context(registry=registry.address, shared_memory=shared_memory)
    with Node("slow", context=context) as node:
        seqs: list[int] = []

        def slow(msg: Image) -> None:
            seqs.append(msg.header.seq)
            time.sleep(0.03)

        subscription = node.create_subscription(Image, "/frames", slow, QoS(depth=3))
        spawn(
            "-p", "count:=100", "-p", "rate:=200.0", "-p", "wait_for_subscribers:=1",
            "-p", "height:=240", "-p", "width:=320",
            node="SeqPublisher",
        )  # fmt: skip
        spin_until(node, lambda: seqs and seqs[-1] == 99, timeout_s=30, what="the last frame")
        assert _local_publishers(node) == (1 if shared_memory else 0)
        dropped_queue, dropped_gap = _counts(subscription)
        assert dropped_gap == 0
        assert dropped_queue > 0 and len(seqs) + dropped_queue == 100
        assert seqs == sorted(seqs)


def test_a_backlog_larger_than_the_budget_is_superseded_oldest_first(context, spawn):
    # 1 MiB: four slots. A subscriber that falls 40 frames behind cannot keep them all in shared
    # memory: the publisher takes back the oldest unread slots, and they count as dropped from the queue.
    with Node("behind", context=context) as node:
        seqs: list[int] = []
        subscription = node.create_subscription(
            Image, "/frames", lambda m: seqs.append(m.header.seq), QoS(depth=100)
        )
        publisher = spawn(
            "-p", "count:=40", "-p", "rate:=400.0", "-p", "wait_for_subscribers:=1",
            "-p", "height:=240", "-p", "width:=320",
            node="SeqPublisher", env={"PERCEPT_SHM_MB": "1"},
        )  # fmt: skip
        spin_until(node, lambda: _local_publishers(node) == 1, what="registration")
        # The whole burst is sent while nothing is read.
        assert "published 40" in read_until(publisher, "published 40", 60)
        spin_until(node, lambda: seqs and seqs[-1] == 39, what="the last frame")
        dropped_queue, dropped_gap = _counts(subscription)
        assert dropped_gap == 0 and dropped_queue >= 30  # at most four slots were left unread
        assert len(seqs) + dropped_queue == 40
        assert seqs == sorted(seqs) and seqs[-1] == 39  # the newest survive


def test_kill_9_of_a_publisher_leaves_nothing_after_a_respawn(context, spawn):
    with Node("survivor", context=context) as node:
        got: list[tuple[str, int]] = []
        node.create_subscription(Image, "/frames", lambda m: got.append((m.header.frame_id, m.header.seq)))
        vga = ("-p", "rate:=100.0", "-p", "width:=640", "-p", "height:=480")
        first = spawn("-p", "tag:=first", *vga, node="SeqPublisher")
        spin_until(node, lambda: len(got) > 10, what="frames from the first publisher")
        assert _files_of(first.pid)  # its pipe and segment
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        assert _files_of(first.pid)  # kill -9: nobody removed them
        spawn("-p", "tag:=second", *vga, node="SeqPublisher")
        spin_until(node, lambda: got[-1][0] == "second" and got[-1][1] > 10, what="frames from the respawn")
        assert not _files_of(first.pid)  # the respawn's first shared-memory use swept them


def test_kill_9_of_a_subscriber_leaves_the_publisher_working(context, spawn):
    with Node("source", context=context) as node:
        publisher = node.create_publisher(Image, "/frames")
        counts: list[int] = []
        node.create_subscription(String, "/count", lambda m: counts.append(int(m.data)))
        first = spawn(node="FrameCounter")
        spin_until(node, lambda: publisher.subscriber_count == 1, what="the first counter")
        seq = 0

        def publish_some(n: int) -> None:
            nonlocal seq
            for _ in range(n):
                publisher.publish(Image(header=Header(seq=seq), data=pattern(seq, (480, 640, 3))))
                seq += 1
                node.spin_once(0.005)

        publish_some(20)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        publish_some(20)  # writes to a dead subscriber's pipe fail quietly; its row is freed
        assert publisher._outlet.local.peer_count == 0
        counts.clear()
        spawn(node="FrameCounter")
        spin_until(node, lambda: publisher.subscriber_count == 1, what="the respawned counter")
        assert not _files_of(first.pid)
        for _ in range(50):
            publish_some(1)
            if counts and counts[-1] >= 10:
                break
            time.sleep(0.02)
        spin_until(node, lambda: counts and counts[-1] >= 10, what="the respawn counting frames")


def _publish_until(node, publisher, done, what: str, shape=(240, 320, 3), timeout_s: float = 60.0) -> int:
    """Publish pattern frames, spinning between them, until `done()`; how many were published."""
    seq, deadline = 0, time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        publisher.publish(Image(header=Header(seq=seq), data=pattern(seq, shape)))
        seq += 1
        node.spin_once(0.01)
    return seq


def _latest(counts: dict[str, int], key: str):
    return lambda m: counts.__setitem__(key, int(m.data))


def test_a_subscriber_that_keeps_every_frame_does_not_stop_the_others(context, spawn, monkeypatch):
    """Each may hold its share of the slots (together they leave one free); past it, a frame comes as a
    copy and its slot goes back at once. One that kept every frame used to take every slot in turn, and
    then nobody got a frame."""
    monkeypatch.setenv("PERCEPT_SHM_MB", "2")  # eight slots of 240 x 320 x 3
    with Node("source", context=context) as node:
        publisher = node.create_publisher(Image, "/frames")
        counts: dict[str, int] = {}
        node.create_subscription(String, "/hoarded", _latest(counts, "hoarder"))
        node.create_subscription(String, "/counted", _latest(counts, "counter"))
        spawn("-p", "hoard:=true", "-r", "count:=/hoarded", node="FrameCounter")
        spawn("-r", "count:=/counted", node="FrameCounter")
        spin_until(node, lambda: publisher.subscriber_count == 2, what="both subscribers")
        published = _publish_until(
            node, publisher, lambda: counts.get("counter", 0) >= 60, what="60 frames at the counter"
        )
        spin_until(
            node,
            lambda: counts.get("counter") == counts.get("hoarder") == published,
            what="every frame at both",
        )
        assert publisher._outlet.local.peer_count == 2  # both through shared memory
        assert publisher.stats.dropped_queue == 0
        segment = publisher._outlet.local._segment
        held = [slot for slot in range(segment.layout.slots) if segment._holding(slot, {0, 1})]
        assert len(held) <= 3, held  # the hoarder's share: (8 - 1) // 2


def test_a_subscriber_killed_while_holding_slots_frees_them(context, spawn, monkeypatch):
    """No write may reach a subscriber that was killed while it held slots (every slot held, or no
    message since), so its slots stayed taken for good; the publisher looks for its process once a
    second."""
    monkeypatch.setenv("PERCEPT_SHM_MB", "2")
    with Node("source", context=context) as node:
        publisher = node.create_publisher(Image, "/frames")
        counts: dict[str, int] = {}
        node.create_subscription(String, "/count", _latest(counts, "latest"))
        hoarder = spawn("-p", "hoard:=true", node="FrameCounter")
        spin_until(node, lambda: publisher.subscriber_count == 1, what="the hoarder")
        _publish_until(node, publisher, lambda: counts.get("latest", 0) >= 10, what="ten frames")
        segment = publisher._outlet.local._segment
        assert not segment.idle({0})
        os.kill(hoarder.pid, signal.SIGKILL)
        hoarder.wait(timeout=10)
        spin_until(node, lambda: publisher._outlet.local._housekeeping_at < time.monotonic(), what="a second")
        publisher._outlet.local._housekeeping()
        assert publisher._outlet.local.peer_count == 0 and segment.idle(set(range(shm.ROWS)))
        counts.clear()
        spawn(node="FrameCounter")
        _publish_until(node, publisher, lambda: counts.get("latest", 0) >= 10, what="the next subscriber")


def test_a_subscriber_beyond_the_rows_of_a_publisher_gets_its_frames_over_tcp(registry, spawn):
    """A publisher has rows for 16 local subscribers; it tells the 17th so, which then connects over
    TCP. It used to wait for frames that never came."""
    with Node("many", context=Context(registry=registry.address)) as node:
        got: list[list[int]] = [[] for _ in range(shm.ROWS + 1)]
        subscriptions = [
            node.create_subscription(
                Image, "/frames", lambda m, into=into: into.append(m.header.seq), QoS(depth=1000)
            )
            for into in got
        ]
        spawn(
            "-p", "count:=30", "-p", "rate:=100.0", "-p", f"wait_for_subscribers:={shm.ROWS + 1}",
            "-p", "height:=120", "-p", "width:=160",
            node="SeqPublisher",
        )  # fmt: skip
        spin_until(node, lambda: all(len(g) == 30 for g in got), what="30 frames at each subscription")
        assert all(g == list(range(30)) for g in got)
        local = [len(s._inlet.local._publishers) for s in subscriptions]
        assert sorted(local) == [0] + [1] * shm.ROWS


def test_a_malformed_record_in_the_registration_pipe_does_not_stop_later_registrations():
    """Any process of the user can write to a publisher's registration pipe. A record whose length was
    wrong left its bytes behind, which garbled every later registration: nobody could join again."""
    from perception.runtime.local_channel import REGISTER, LocalInlet, LocalOutlet, _record
    from perception.runtime.wire import encode

    outlet = LocalOutlet()
    inlets: list[LocalInlet] = []
    try:
        with open(outlet.path, "wb", buffering=0) as pipe:
            for garbage in (
                _record(REGISTER, b"/dev/shm/percept-1-1-x.sub")[:-4],  # its length says 4 bytes more
                b"\x06\x00\x03" + b"z" * 29,  # a length of 6 for 32 bytes
                b"\xff\xff\x03abc",  # longer than any record can be
                b"\x01",
            ):
                pipe.write(garbage)
                assert outlet.peer_count == len(inlets)  # read, and left out
                inlet = LocalInlet(b"/t")
                inlets.append(inlet)
                assert inlet.register(outlet.address)
                assert outlet.peer_count == len(inlets), garbage
        frames = encode(b"/t", String(data="hello"))
        outlet.send(frames[1:], "src", 0)
        for inlet in inlets:
            (message,) = inlet.drain()
            assert bytes(message[1].buffer) == bytes(frames[1])
        assert outlet.malformed_registrations >= 2
    finally:
        outlet.close()
        for inlet in inlets:
            inlet.close()


def test_a_subscriber_writes_only_into_a_pipe_of_its_own_user(tmp_path, monkeypatch):
    """A publisher advertises any path it likes. A local user who linked /dev/shm/percept-*.pub to one of
    our files had our subscriber write its registration into that file; a file that is no pipe (one of
    our segments, named as a pipe) would be written over the same way. Each is refused: TCP instead."""
    from perception.runtime.local_channel import LocalInlet

    canary = tmp_path / "canary.txt"
    canary.write_bytes(b"secret settings\n")
    inlet = LocalInlet(b"/t")
    link = shm.new_path("pub")
    not_a_pipe = shm.new_path("pub")
    someone_elses = shm.new_path("pub")
    try:
        os.symlink(canary, link)
        with open(not_a_pipe, "wb") as file:
            file.write(b"\0" * 64)
        os.mkfifo(someone_elses, 0o600)
        reader = os.open(someone_elses, os.O_RDONLY | os.O_NONBLOCK)  # so that opening it to write works
        for path in (link, not_a_pipe):
            assert not inlet.register(f"{shm.host_id()} {path}")
        assert canary.read_bytes() == b"secret settings\n"
        assert Path(not_a_pipe).read_bytes() == b"\0" * 64
        assert inlet.register(f"{shm.host_id()} {someone_elses}")  # ours: taken
        os.close(inlet._publishers.pop(someone_elses))
        monkeypatch.setattr(os, "geteuid", lambda: os.stat(someone_elses).st_uid + 1)  # now another's
        assert not inlet.register(f"{shm.host_id()} {someone_elses}")
        with pytest.raises(PermissionError, match="not a pipe of this user's"):
            shm.open_own(someone_elses, os.O_WRONLY | os.O_NONBLOCK, "pipe")
        os.close(reader)
    finally:
        inlet.close()
        for path in (link, not_a_pipe, someone_elses):
            shm.remove(path)


def _no_room(fd: int, offset: int, length: int) -> None:
    """os.posix_fallocate on a full /dev/shm."""
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_dev_shm_sends_the_local_subscribers_to_tcp(monkeypatch, caplog):
    """On a full /dev/shm the first write to a sparse segment's page killed the publisher with SIGBUS,
    and it was restarted into the same death. A segment's memory is now reserved before its first
    write; when that fails, the local subscribers are told to take the topic over TCP (as when no row
    is left for them), the message in hand is counted as missed, and it is said once."""
    from perception.runtime.local_channel import LocalInlet, LocalOutlet
    from perception.runtime.wire import encode

    reserve = os.posix_fallocate
    outlet = LocalOutlet()
    inlets = [LocalInlet(b"/t"), LocalInlet(b"/t")]
    try:
        for inlet in inlets:
            assert inlet.register(outlet.address)
        frames = encode(b"/t", Image(header=Header(), data=np.zeros((120, 160, 3), np.uint8)))
        assert outlet.send(frames[1:], "src", 0) == 0  # a segment, its first slot reserved
        for inlet in inlets:
            (message,) = inlet.drain()
            message.let_go()  # read and done with: the slot is free again

        monkeypatch.setattr(os, "posix_fallocate", _no_room)
        assert outlet.send(frames[1:], "src", 1) == 0  # into the slot reserved already: fine
        assert outlet.no_room is None
        held = [inlet.drain()[0].take() for inlet in inlets]  # held: the next message needs a new slot
        with caplog.at_level("WARNING", logger="percept.shm"):
            assert outlet.send(frames[1:], "src", 2) == 2
            assert outlet.send(frames[1:], "src", 3) == 0  # no local subscriber left
        assert outlet.no_room is not None and "has no room for" in outlet.no_room
        assert [r.getMessage() for r in caplog.records].count(
            f"shared memory: {outlet.no_room}; the local subscribers of this topic go over TCP"
        ) == 1
        for inlet in inlets:
            inlet.drain()
            assert inlet.full == [outlet.path] and not inlet._publishers
        late = LocalInlet(b"/t")
        inlets.append(late)
        assert late.register(outlet.address)
        assert outlet.peer_count == 0
        late.drain()
        assert late.full == [outlet.path]  # a subscriber that comes later is sent to TCP too
        del held
    finally:
        monkeypatch.setattr(os, "posix_fallocate", reserve)
        outlet.close()
        for inlet in inlets:
            inlet.close()


def test_a_full_dev_shm_met_while_growing_a_segment_or_by_a_slow_subscriber(monkeypatch):
    """The other ways to meet a full /dev/shm: a larger frame's new segment (the old one was retired
    before the new one was made, and the publisher's close then failed on it), a loan, and a subscriber
    whose pipe is full at that moment, which must still be told to go over TCP (it would otherwise wait
    for this publisher for good)."""
    from perception.runtime.local_channel import LocalInlet, LocalOutlet
    from perception.runtime.wire import encode

    small = encode(b"/t", Image(header=Header(), data=np.zeros((120, 160, 3), np.uint8)))
    large = encode(b"/t", Image(header=Header(), data=np.zeros((480, 640, 3), np.uint8)))
    tiny = encode(b"/t", String(data="x"))
    for meet in ("a larger frame", "a loan"):
        outlet, slow, quick = LocalOutlet(), LocalInlet(b"/t"), LocalInlet(b"/t")
        try:
            assert slow.register(outlet.address) and quick.register(outlet.address)
            assert outlet.send(small[1:], "src", 0) == 0
            quick.drain()
            while outlet.send(tiny[1:], "src", 1) == 0:  # the slow one reads nothing: its pipe fills
                quick.drain()
            with monkeypatch.context() as patched:
                patched.setattr(os, "posix_fallocate", _no_room)
                if meet == "a loan":
                    assert outlet.loan((480, 640, 3), np.dtype(np.uint8)) is None
                else:
                    assert outlet.send(large[1:], "src", 2) == 2
            assert outlet.no_room is not None and outlet.peer_count == 0
            quick.drain()
            assert quick.full == [outlet.path]
            for _ in range(2000):  # the slow one reads at last; the word reaches it once there is room
                slow.drain()
                outlet.send(tiny[1:], "src", 3)
                if slow.full:
                    break
                time.sleep(0.001)
            assert slow.full == [outlet.path], meet
        finally:
            outlet.close()  # it failed on the segment retired and kept at once
            slow.close()
            quick.close()


def test_pairs_on_different_hosts_use_tcp(context, spawn):
    with Node("elsewhere", context=context) as node:
        got: list[Image] = []
        node.create_subscription(Image, "/frames", got.append, QoS(depth=100))
        spawn("-p", "count:=30", "-p", "rate:=100.0", "-p", "wait_for_subscribers:=1", node="SeqPublisher",
              env={"PERCEPT_HOST_ID": "another-host"})  # fmt: skip
        spin_until(node, lambda: len(got) == 30, what="30 frames over TCP")
        assert _local_publishers(node) == 0
        for msg in got:
            np.testing.assert_array_equal(msg.data, pattern(msg.header.seq))


def test_a_tcp_subscriber_joining_a_stream_served_locally_gets_it(context, spawn):
    """The message path asks the publisher's socket for TCP subscribers only every 10 ms
    (transport.TCP_SUBSCRIBERS_CHECK_S): one that joins while a local subscriber is served still gets
    the stream, and the local one keeps it."""
    with Node("here", context=context) as node:
        local: list[int] = []
        counts: list[int] = []
        node.create_subscription(Image, "/frames", lambda m: local.append(m.header.seq), QoS(depth=100))
        node.create_subscription(String, "/count", lambda m: counts.append(int(m.data)))
        # Publishing from the start: only its message path finds out who has joined.
        spawn("-p", "rate:=200.0", node="SeqPublisher")
        spin_until(node, lambda: len(local) >= 20, what="20 frames through shared memory")
        spawn(node="FrameCounter", env={"PERCEPT_HOST_ID": "another-host"})
        spin_until(node, lambda: bool(counts) and counts[-1] >= 20, what="20 frames to the TCP subscriber")
        before = len(local)
        spin_until(node, lambda: len(local) >= before + 20, what="20 more frames to the local subscriber")
        assert _local_publishers(node) == 1


def test_doctor_removes_a_dead_process_leftovers():
    dead = f"{shm.SHM_DIR}/{shm.PREFIX}999999999-1-abcdef012345.seg"
    with open(dead, "wb") as f:
        f.write(b"left behind by kill -9")
    result = percept("doctor")
    assert not os.path.exists(dead)
    assert "shared memory" in result.stdout


def test_a_loaned_frame_is_published_without_a_copy(registry):
    context = Context(registry=registry.address)
    with Node("camera", context=context) as camera, Node("viewer", context=context) as viewer:
        publisher = camera.create_publisher(Image, "/frames")
        assert type(publisher.loan((4, 4, 3))) is np.ndarray  # no subscriber yet: an ordinary array
        got: list[Image] = []
        viewer.create_subscription(Image, "/frames", got.append)
        spin_until(viewer, lambda: publisher.subscriber_count == 1, what="the viewer joining")
        for seq in range(3):
            frame = publisher.loan((1080, 1920, 3))
            frame[...] = pattern(seq, (1080, 1920, 3))
            publisher.publish(Image(header=Header(seq=seq), data=frame))
        spin_until(viewer, lambda: len(got) == 3, what="three loaned frames")
        for msg in got:
            np.testing.assert_array_equal(msg.data, pattern(msg.header.seq, (1080, 1920, 3)))
        frame[0, 0, 0] = 255 - frame[0, 0, 0]  # breaking the loan's rule shows that nothing was copied
        assert got[-1].data[0, 0, 0] == frame[0, 0, 0]
        # Not the loaned array itself but a view that starts where it does (the loan still held):
        # still not copied.
        loaned = publisher.loan((1080, 1920, 3))
        view = loaned.reshape(1080, 1920, 3)
        assert view is not loaned
        view[...] = pattern(3, (1080, 1920, 3))
        publisher.publish(Image(header=Header(seq=3), data=view))
        spin_until(viewer, lambda: len(got) == 4, what="a view of a loaned frame")
        np.testing.assert_array_equal(got[-1].data, pattern(3, (1080, 1920, 3)))
        view[0, 0, 0] = 255 - view[0, 0, 0]
        assert got[-1].data[0, 0, 0] == view[0, 0, 0]


def test_a_busy_subscriber_loses_no_small_message_that_tcp_would_have_queued(registry):
    # 300 messages of 1 KiB while the subscriber does not read: 330 KB, past a pipe's default 64 KiB.
    context = Context(registry=registry.address)
    with Node("talker", context=context) as talker, Node("busy", context=context) as busy:
        publisher = talker.create_publisher(String, "/chatter")
        got: list[str] = []
        subscription = busy.create_subscription(
            String, "/chatter", lambda m: got.append(m.data), QoS(depth=1000)
        )
        spin_until(busy, lambda: publisher.subscriber_count == 1, what="the subscriber joining")
        assert _local_publishers(busy) == 1
        for i in range(300):
            publisher.publish(String(data=f"{i:04d}" + "x" * 1020))
        spin_until(busy, lambda: len(got) == 300, what="all 300 messages")
        assert [int(s[:4]) for s in got] == list(range(300))
        assert _counts(subscription) == (0, 0)


@pytest.mark.parametrize(("host", "spins"), [("", True), ("another-host", False)], ids=["local", "tcp"])
def test_a_node_fed_through_shared_memory_stays_awake_briefly_after_a_message(context, spawn, host, spins):
    """Right after a message from a publisher on this host, spin_once polls without sleeping for
    PERCEPT_SPIN_US, so that the publisher's next write finds it awake; fed over TCP it does not spin
    (its own ZeroMQ thread wakes it, and spinning would take that thread's core)."""
    with Node("fed", context=context) as node:
        got: list[int] = []
        node.create_subscription(Image, "/frames", lambda m: got.append(m.header.seq), QoS(depth=100))
        env = {"PERCEPT_HOST_ID": host} if host else {}
        spawn("-p", "rate:=100.0", "-p", "wait_for_subscribers:=1", node="SeqPublisher", env=env)
        spin_until(node, lambda: len(got) >= 3, what="3 frames")
        assert _local_publishers(node) == (1 if spins else 0)
        assert (node._awake_until > 0) is spins
        before = len(got)
        spin_until(node, lambda: len(got) >= before + 3, what="3 more frames")


def test_the_spin_setting_is_read_once_and_a_bad_one_named(monkeypatch):
    from perception.errors import PerceptError
    from perception.runtime.node import DEFAULT_SPIN_US, SPIN_ENV, spin_seconds

    monkeypatch.delenv(SPIN_ENV, raising=False)
    assert spin_seconds() == DEFAULT_SPIN_US / 1e6
    monkeypatch.setenv(SPIN_ENV, "0")
    assert spin_seconds() == 0.0
    monkeypatch.setenv(SPIN_ENV, "50")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert spin_seconds() == 0.0  # one CPU: spinning would only hold off the publisher
    for bad in ("fast", "-5", "2e6"):
        monkeypatch.setenv(SPIN_ENV, bad)
        with pytest.raises(
            PerceptError, match=f"{SPIN_ENV}: expected microseconds from 0 to 1000000, found '{bad}'"
        ):
            spin_seconds()


def test_a_percept_shm_setting_that_is_neither_on_nor_off_is_refused(monkeypatch):
    """PERCEPT_SHM=maybe read as on, silently."""
    from perception.errors import PerceptError
    from perception.runtime import shm

    for text, on in (("", True), ("OFF", False), (" no ", False), ("yes", True)):
        monkeypatch.setenv("PERCEPT_SHM", text)
        assert shm.enabled() is on and shm.asked_for() is (text == "yes")
    monkeypatch.setenv("PERCEPT_SHM", "maybe")
    with pytest.raises(
        PerceptError,
        match=r"PERCEPT_SHM: expected on or off \(1, on, true, yes; 0, off, false, no\), found 'maybe'",
    ):
        shm.enabled()


def test_a_closed_segment_is_unmapped_and_removed():
    """A view of its header kept the mapping (up to 64 MiB of a retired segment) alive after close."""
    segment = shm.Segment(4096, 1 << 20)
    segment.close()
    assert segment._mmap.closed and not os.path.exists(segment.path)


def test_the_host_id_names_the_pid_namespace(monkeypatch):
    """Containers with a shared /dev/shm share the boot id, but not their pids: across pid namespaces
    a publisher would judge a live subscriber dead and drop it, so such pairs use TCP."""
    monkeypatch.delenv("PERCEPT_HOST_ID", raising=False)
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip()
    assert shm.host_id() == f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"


def test_the_sweep_leaves_the_files_of_another_pid_namespace():
    """Containers sharing /dev/shm (docker --ipc=host) each sweep it: a pid dead here may be alive in
    the namespace that wrote the file, so only this namespace's files (and names without one) are judged."""
    here = shm.pid_namespace()
    names = {
        "this namespace, dead": f"{shm.PREFIX}999999999-1-{here}-abcdef012345.seg",
        "no namespace, dead": f"{shm.PREFIX}999999998-1-abcdef012345.sub",
        "another namespace": f"{shm.PREFIX}999999997-1-{int(here) + 1}-abcdef012345.pub",
    }
    paths = {what: f"{shm.SHM_DIR}/{name}" for what, name in names.items()}
    try:
        for path in paths.values():
            with open(path, "wb") as f:
                f.write(b"left behind")
        removed = shm.sweep()
        assert names["this namespace, dead"] in removed and names["no namespace, dead"] in removed
        assert os.path.exists(paths["another namespace"])
        assert shm.owner_alive(shm.new_path("seg")), "this process's own files are alive"
    finally:
        for path in paths.values():
            if os.path.exists(path):
                os.unlink(path)


def test_a_process_that_exits_without_closing_its_publishers_leaves_no_files(registry):
    """A node whose constructor fails after making its publishers is never destroyed: its registration
    pipes stayed in /dev/shm until some later process swept them (every failed simulator start did)."""
    import subprocess
    import sys

    script = (
        "import os\n"
        "from perception import Node\n"
        "from perception.msgs import Image\n"
        "node = Node('failing')\n"
        "node.create_publisher(Image, '/image')\n"
        "print(os.getpid(), len([n for n in os.listdir('/dev/shm') if n.startswith(f'percept-{os.getpid()}-')]))\n"
        "raise SystemExit('the constructor failed here')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "the constructor failed here" in result.stderr, result.stderr
    pid, made = result.stdout.split()
    assert int(made) > 0, "the publisher made its registration pipe"
    assert not [n for n in os.listdir(shm.SHM_DIR) if n.startswith(f"{shm.PREFIX}{pid}-")]
