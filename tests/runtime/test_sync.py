"""Pairing by stamp: nearest within the tolerance, misses counted and explained."""

from __future__ import annotations

import pytest

from perception.msgs import Header
from perception.runtime.sync import StampBuffer


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
