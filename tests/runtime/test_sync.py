"""Pairing by stamp: nearest within the tolerance, misses counted and explained; a driving message that
overtook its partners waits for them, for a bounded time."""

from __future__ import annotations

import pytest

from perception.msgs import Header
from perception.runtime.sync import StampBuffer, Synchronizer


class Stamped:
    def __init__(self, stamp_ns: int) -> None:
        self.header = Header(stamp=stamp_ns)


def test_the_nearest_stamp_within_the_tolerance_wins():
    buffer: StampBuffer[Stamped] = StampBuffer(depth=3, tolerance_s=0.02)
    for ms in (100, 200, 300):
        buffer.add(Stamped(ms * 1_000_000))
    assert buffer.nearest(205_000_000).header.stamp == 200_000_000
    assert buffer.nearest(300_000_000).header.stamp == 300_000_000
    assert buffer.nearest(250_000_000) is None and buffer.misses == 1
    assert buffer.describe(250_000_000) == "nearest is -50 ms away (tolerance 20 ms)"


def test_old_messages_fall_out_and_an_empty_buffer_says_so():
    buffer: StampBuffer[Stamped] = StampBuffer(depth=2, tolerance_s=0.0)
    assert buffer.describe(0) == "none received yet"
    for ms in (1, 2, 3):
        buffer.add(Stamped(ms * 1_000_000))
    assert buffer.nearest(1_000_000) is None
    assert buffer.nearest(3_000_000) is not None


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="depth: expected at least 1, found 0"):
        StampBuffer(depth=0)
    with pytest.raises(ValueError, match="tolerance_s"):
        StampBuffer(tolerance_s=-1)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def synchronizer(wait_s: float = 0.1, depth: int = 10):
    clock = Clock()
    infos: StampBuffer[Stamped] = StampBuffer(depth=10, tolerance_s=0.02)
    handed: list[int] = []
    sync = Synchronizer([infos], lambda msg: handed.append(msg.header.stamp), wait_s, depth, clock)
    return sync, sync.partner(infos), infos, handed, clock


def test_a_driving_message_that_overtook_its_partner_waits_for_it():
    sync, info, infos, handed, _ = synchronizer()
    info(Stamped(100))
    sync.drive(Stamped(200))  # its camera info is still on the way
    sync.drive(Stamped(300))
    assert handed == [] and len(sync.held) == 2
    info(Stamped(200))
    assert handed == [200] and infos.nearest(200).header.stamp == 200
    info(Stamped(300))
    sync.drive(Stamped(250))  # answered for already: the info stamped 300 is here
    assert handed == [200, 300, 250] and sync.waited_out == 0


def test_a_partner_that_never_sent_is_not_waited_for():
    sync, _, _, handed, _ = synchronizer()
    sync.drive(Stamped(100))
    assert handed == [100]


def test_a_stopped_partner_costs_one_wait_until_it_catches_up():
    sync, info, _, handed, clock = synchronizer(wait_s=0.1)
    info(Stamped(100))
    sync.drive(Stamped(200))
    sync.drive(Stamped(300))
    clock.now = 0.05
    sync.expire()
    assert handed == []
    clock.now = 0.1  # the oldest has waited its time: given up at the timer's next call
    sync.expire()
    assert handed == []
    clock.now = 0.125  # and the rest no longer wait for this partner
    sync.expire()
    assert handed == [200, 300] and sync.waited_out == 1
    sync.drive(Stamped(400))
    assert handed == [200, 300, 400]
    info(Stamped(150))  # still behind the stamp it missed: still not waited for
    sync.drive(Stamped(500))
    assert handed[-1] == 500
    info(Stamped(200))  # caught up: waited for again
    sync.drive(Stamped(700))
    assert handed[-1] == 500
    info(Stamped(700))
    assert handed[-1] == 700 and sync.waited_out == 1


def test_a_partner_read_after_a_stall_is_still_paired():
    """The node stalled past the wait with the camera info already in its socket: the timer that first
    finds the frame overdue runs before the node reads that socket, so it gives the frame one more turn."""
    sync, info, _, handed, clock = synchronizer(wait_s=0.1)
    info(Stamped(100))
    sync.drive(Stamped(200))
    clock.now = 0.5  # a stall
    sync.expire()
    assert handed == []
    info(Stamped(200))  # read in the same turn of the executor, after its timers
    assert handed == [200] and sync.waited_out == 0


def test_no_wait_hands_on_at_once():
    sync, info, _, handed, _ = synchronizer(wait_s=0.0)
    info(Stamped(100))
    sync.drive(Stamped(200))
    assert handed == [200] and sync.waited_out == 1


def test_time_going_back_waits_for_the_partner_again():
    sync, info, _, handed, clock = synchronizer()
    info(Stamped(1000))
    sync.drive(Stamped(2000))
    clock.now = 1.0
    sync.expire()
    sync.expire()
    assert handed == [2000]
    info(Stamped(10))  # a looped replay starts over
    sync.drive(Stamped(20))
    assert handed == [2000]
    info(Stamped(20))
    assert handed == [2000, 20]


def test_held_messages_are_bounded_and_keep_their_order():
    sync, info, _, handed, _ = synchronizer(depth=2)
    info(Stamped(0))
    for stamp in (1, 2, 3):
        sync.drive(Stamped(stamp))
    # A third held message: the oldest goes on unanswered, and the partner, now behind, holds none.
    assert handed == [1, 2, 3] and sync.waited_out == 1


def test_bad_synchronizer_settings_are_named():
    with pytest.raises(ValueError, match="wait_s: expected 0 or more seconds, found -1"):
        Synchronizer([], print, wait_s=-1)
    with pytest.raises(ValueError, match="depth: expected at least 1, found 0"):
        Synchronizer([], print, 0.1, depth=0)
