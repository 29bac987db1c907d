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


def test_a_stopped_partner_costs_one_wait_until_it_answers_in_time_again():
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
    info(Stamped(200))  # the frame it missed, 0.125 s after that frame came: late, so not waited for yet
    sync.drive(Stamped(700))
    assert handed[-1] == 700
    clock.now = 0.2
    info(Stamped(700))  # the newest frame's, 0.075 s after it came: in time, so waited for again
    sync.drive(Stamped(800))
    assert handed[-1] == 700
    info(Stamped(800))
    assert handed[-1] == 800 and sync.waited_out == 1


MS = 1_000_000


def run_frames(sync, info, clock, frames: int, partner_stamp, partner_delay_s, period_s: float = 0.1):
    """Frames every `period_s` (stamps in ms), each frame's partner `partner_delay_s(k)` after it (None:
    never) stamped `partner_stamp(k)`, and the node's timer every quarter of the wait, in time order."""
    events = []
    for k in range(frames):
        events.append(
            (k * period_s, 1, lambda k=k: sync.drive(Stamped(10_000 * MS + k * round(period_s * 1000) * MS)))
        )
        delay = partner_delay_s(k)
        if delay is not None:
            events.append((k * period_s + delay, 0, lambda k=k: info(Stamped(partner_stamp(k)))))
    ticks = int(frames * period_s / (sync.wait_s / 4)) + 8
    events += [(t * sync.wait_s / 4, 2, sync.expire) for t in range(ticks)]
    for when, _, event in sorted(events, key=lambda e: (e[0], e[1])):
        clock.now = when
        event()


def test_a_partner_stamped_just_before_its_frame_is_not_waited_for():
    """An RGB-D camera whose depth is stamped 3 ms before its colour, and sent first: the depth already
    here is nearer the frame than the next one can be, so the frame goes on at once."""
    sync, info, infos, handed, clock = synchronizer()
    for k in range(4):
        clock.now = k * 0.033
        info(Stamped(k * 33 * MS - 3 * MS))
        sync.drive(Stamped(k * 33 * MS))
        # Each frame goes on at once; the first waited for the second depth, as with one depth message
        # the topic's period was not known yet.
        assert handed == ([i * 33 * MS for i in range(k + 1)] if k else [])
    assert infos.nearest(99 * MS).header.stamp == 96 * MS and sync.waited_out == 0


def test_a_partner_on_a_clock_of_its_own_costs_one_wait_in_all():
    """Camera info stamped a second behind the frames (a driver on a clock of its own): never in time,
    so after the first wait it is no longer waited for, not again each second when its stamps reach the
    frame it missed."""
    sync, info, _, handed, clock = synchronizer(wait_s=0.1)
    run_frames(sync, info, clock, 40, lambda k: 9_000 * MS + k * 100 * MS, lambda k: 0.0)
    assert len(handed) == 40 and sync.waited_out == 1


def test_a_slow_partner_is_waited_for_again_after_a_hiccup():
    """Camera info 50 ms after its frame, except three frames' that come late, together: the first of
    them waits its time out, the frames after it go on without waiting, and once an answer comes in time
    again (the fourth frame's) every frame waits for it again. The first frame had no info to wait for."""
    sync, info, infos, handed, clock = synchronizer(wait_s=0.1)
    paired = []

    def handle(msg: Stamped) -> None:
        handed.append(msg.header.stamp)
        paired.append(infos.nearest(msg.header.stamp) is not None)

    sync.handle = handle
    late = {5: 0.35, 6: 0.25, 7: 0.15}
    run_frames(sync, info, clock, 20, lambda k: 10_000 * MS + k * 100 * MS, lambda k: late.get(k, 0.05))
    assert len(handed) == 20 and sync.waited_out == 1
    assert paired == [False] + [True] * 4 + [False] * 4 + [True] * 11


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


def test_a_partner_that_never_sent_is_not_waited_for_beside_one_that_did():
    clock = Clock()
    depths: StampBuffer[Stamped] = StampBuffer()
    infos: StampBuffer[Stamped] = StampBuffer()
    handed: list[int] = []
    sync = Synchronizer([depths, infos], lambda msg: handed.append(msg.header.stamp), 0.1, clock=clock)
    depth = sync.partner(depths)
    depth(Stamped(100))
    sync.drive(Stamped(200))
    assert handed == []  # waits for its depth, not for camera info, of which none has come
    depth(Stamped(200))
    assert handed == [200] and sync.waited_out == 0


def test_a_handler_that_raises_lets_the_messages_after_it_go_on_and_is_told():
    def handle(msg: Stamped) -> None:
        handed.append(msg.header.stamp)
        if msg.header.stamp in (200, 300, 600, 700):
            raise RuntimeError(f"bad frame {msg.header.stamp}")

    sync, info, _, handed, _ = synchronizer()
    sync.handle = handle
    info(Stamped(100))
    for stamp in (200, 300, 400):
        sync.drive(Stamped(stamp))
    assert handed == []
    with pytest.raises(ExceptionGroup) as raised:
        info(Stamped(400))
    assert handed == [200, 300, 400] and not sync.held
    assert [str(e) for e in raised.value.exceptions] == ["bad frame 200", "bad frame 300"]
    info(Stamped(600))
    with pytest.raises(RuntimeError, match="bad frame 600"):  # one error alone is raised as itself
        sync.drive(Stamped(600))
    assert handed[-1] == 600
    sync.drive(Stamped(700))
    sync.drive(Stamped(800))
    with pytest.raises(RuntimeError, match="bad frame 700"):  # told even while a frame after it waits
        info(Stamped(700))
    assert handed[-1] == 700 and [msg.header.stamp for _, msg in sync.held] == [800]


def test_a_partner_read_late_by_a_busy_node_is_waited_for_again():
    """A handler that takes 0.15 s, longer than the wait, at 5 frames/s; camera info 10 ms after each frame,
    one of them 0.35 s late (and those after it no sooner). A busy node reads each info only after
    handling the frame before it, never within the wait of its own frame; but the info is not behind the
    frames, so once it answers for the newest frame read it is waited for again."""
    clock = Clock()
    infos: StampBuffer[Stamped] = StampBuffer()
    paired: list[bool] = []
    busy_until = [0.0]

    def handle(msg: Stamped) -> None:
        paired.append(infos.nearest(msg.header.stamp) is not None)
        clock.now += 0.15
        busy_until[0] = clock.now

    sync = Synchronizer([infos], handle, 0.1, clock=clock)
    info = sync.partner(infos)
    events, came = [], 0.0
    for k in range(20):
        stamp = 10_000 * MS + k * 200 * MS
        came = max(k * 0.2 + (0.35 if k == 5 else 0.01), came)  # a topic's messages come in order
        events += [
            (k * 0.2, 1, lambda s=stamp: sync.drive(Stamped(s))),
            (came, 0, lambda s=stamp: info(Stamped(s))),
        ]
    events += [(i * 0.025, 2, sync.expire) for i in range(170)]
    for when, _, event in sorted(events, key=lambda e: (e[0], e[1])):
        clock.now = max(when, busy_until[0])  # what came while the handler ran is read after it
        event()
    assert len(paired) == 20 and paired[:5] == [False] + [True] * 4 and all(paired[8:])


def test_held_messages_go_on_when_the_node_stops():
    sync, info, _, handed, _ = synchronizer()
    info(Stamped(100))
    info(Stamped(200))
    sync.drive(Stamped(300))
    assert handed == []
    sync.flush()
    assert handed == [300] and sync.waited_out == 1
    info(Stamped(300))
    sync.drive(Stamped(400))  # a flush does not stop the waiting that follows
    assert handed == [300]


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
