"""A subscription: receives one topic into a keep-last queue and hands messages to a callback."""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from perception.errors import MalformedMessage
from perception.msgs import Header, Message
from perception.runtime import wire
from perception.runtime.context import Context
from perception.runtime.local_channel import LeasedFrames, SlotMessage
from perception.runtime.qos import QoS
from perception.runtime.stats import EndpointStats, Throttle

M = TypeVar("M", bound=Message)

RECEIVE_HWM = 1000  # messages a subscription socket may hold while its node is busy
# Queued messages that may stay in a publisher's shared memory; older ones in a backlog are copied out,
# so a deep queue (a recorder's) never holds the slots that other subscribers need.
LEASED_IN_QUEUE = 4
MAX_PUBLISHERS_TRACKED = 1024  # publisher ids whose sequence numbers a subscription remembers
MAX_GAP = 1 << 32  # the most one jump in a publisher's sequence numbers counts as lost
_LATENCY_LIMIT_NS = 60 * 1_000_000_000  # stamps further off than this are not wall-clock stamps


class Subscription(Generic[M]):
    """Receives one topic into a keep-last queue and hands messages to a callback on the node's thread.

    With `raw=True` the callback gets the undecoded frames (for recorders and rate meters).
    """

    def __init__(
        self,
        context: Context,
        log: logging.Logger,
        msg_type: type[M] | None,
        topic: str,
        callback: Callable[[Any], None],
        qos: QoS,
        raw: bool = False,
    ) -> None:
        self.msg_type = msg_type
        self.topic = topic
        self.qos = qos
        self.raw = raw
        self._log = log
        self._callback = callback
        # libzmq's own I/O thread keeps moving arrivals into this socket's queue while a callback
        # runs; keeping that queue large means a backlog waits here, not at the publisher (whose full
        # queue would drop the *newest* messages), and the next drain keeps the newest `depth`.
        self._max_bytes = wire.max_message_bytes(msg_type)  # a raw subscription: any type's
        self._inlet = context.inlet(topic.encode(), RECEIVE_HWM, wire.receive_limit(msg_type))
        self._queue: deque[Any] = deque(maxlen=qos.depth)
        self._leased: deque[weakref.ref[LeasedFrames]] = deque()  # queued ones, oldest first
        self._last_seq: dict[str, int] = {}
        self._error_log = Throttle()  # at most one line a second per subscription
        self._local_malformed = 0
        self._cut_off = 0
        self.stats = EndpointStats(topic, msg_type.TYPE_NAME if msg_type else "*", "sub")

    @property
    def publisher_count(self) -> int:
        """Publishers this subscription has connected to (including ones that have since gone)."""
        return len(self._inlet.endpoints)

    def _receive(self) -> None:
        """Move everything that has arrived into the keep-last queue, evicting (and counting) the
        oldest. Frames are decoded only when handed to the callback, so a flood costs little.

        A message in a publisher's shared memory is queued unread (a `SlotMessage`): it is read when
        handed over, so a backlog holds no slot the publisher needs. A raw subscription (a recorder)
        reads it on arrival instead and copies out all but its newest few, as TCP would have copied."""
        queue = self._queue
        stats = self.stats
        # At most what the socket can hold per round, so that in a flood callbacks still run
        # between drains; a latest-only queue still ends up holding the newest arrival.
        topic = self._inlet.topic
        for item in self._inlet.drain(RECEIVE_HWM):
            if type(item) is SlotMessage:
                stats.record_arrival(item.nbytes)
                if self.raw and item.nbytes <= self._max_bytes:  # one too large is refused at dispatch
                    item = self._take(item)
                    if item is None:
                        continue
                    self._hold_few(item)
            else:
                if item[0].bytes != topic:
                    continue  # a longer topic matching ours as a prefix (a reused port): not for us
                stats.record_arrival(sum(len(f) for f in item))
            if len(queue) == queue.maxlen:
                stats.dropped_queue += 1
                evicted = queue.popleft()
                try:
                    if type(evicted) is SlotMessage:
                        evicted.let_go()
                        self._count_gap(evicted.src, evicted.n)
                    else:
                        self._count_gap(*wire.peek_sequence(evicted))
                except MalformedMessage:
                    stats.malformed += 1
            queue.append(item)
        local = self._inlet.local
        if local is not None and local.malformed != self._local_malformed:
            stats.malformed += local.malformed - self._local_malformed
            self._local_malformed = local.malformed
        cut_off = self._inlet.cut_off
        if cut_off != self._cut_off:
            stats.malformed += cut_off - self._cut_off
            self._cut_off = cut_off
            self._log.error(  # once per cut: at most every CUT_OFF_AFTER_S
                "ZeroMQ ended a connection to a publisher of %s without retrying: it sent a frame over "
                "%d bytes, the most a %s may have (set %s for more), or (with a keystore) refused this "
                "node's key; connected again",
                self.topic,
                self._inlet.max_bytes,
                self.stats.type_name,
                wire.MAX_MESSAGE_ENV,
            )

    def _take(self, message: SlotMessage) -> LeasedFrames | None:
        """Read a message from shared memory; None (counted as dropped from the queue, as TCP's
        keep-last queue would have dropped it) when a newer message has taken its slot."""
        try:
            frames = message.take()
        except Exception as exc:
            self.stats.malformed += 1
            self._log_error(f"dropped a malformed message on {self.topic}: {exc}")
            return None
        if frames is None:
            self.stats.dropped_queue += 1
            self._count_gap(message.src, message.n)
        return frames

    def _hold_few(self, frames: LeasedFrames) -> None:
        leased = self._leased
        leased.append(weakref.ref(frames))
        while len(leased) > LEASED_IN_QUEUE:
            oldest = leased.popleft()()
            if oldest is not None:  # still queued (one handed over or evicted is gone already)
                oldest.detach()

    def _count_gap(self, src: str, n: int) -> None:
        # Eviction and dispatch both take the queue's oldest entry, so this sees arrival order.
        last = self._last_seq.get(src)
        if last is None:
            if len(self._last_seq) >= MAX_PUBLISHERS_TRACKED:  # a peer inventing ids cannot grow this
                del self._last_seq[next(iter(self._last_seq))]
        elif 0 < n - last - 1 <= MAX_GAP:  # a larger jump is a restarted or lying peer, not a loss
            self.stats.dropped_gap += n - last - 1
        self._last_seq[src] = n

    def _dispatch(self) -> bool:
        """Hand what is queued now to the callback, oldest first. True if there was anything."""
        queue = self._queue
        if not queue:
            return False
        for _ in range(len(queue)):
            frames = queue.popleft()
            if type(frames) is SlotMessage:
                if frames.nbytes > self._max_bytes:  # refused unread, as ZeroMQ refuses one over TCP
                    frames.let_go()
                    self.stats.malformed += 1
                    self._count_gap(frames.src, frames.n)
                    self._log_error(
                        f"dropped a message of {frames.nbytes} bytes on {self.topic}: over this subscription's "
                        f"limit of {self._max_bytes} (PERCEPT_MAX_MESSAGE_MB)"
                    )
                    continue
                frames = self._take(frames)
                if frames is None:
                    continue
            try:
                if self.raw:
                    self._count_gap(*wire.peek_sequence(frames))
                    item: Any = frames
                else:
                    received = wire.decode(frames, self.msg_type, self._max_bytes)  # reads the header once
                    self._count_gap(received.src, received.n)
                    item = received.msg
                    self.stats.record_latency(latency_ns(item))
            except Exception as exc:  # MalformedMessage, or anything else a foreign peer can provoke
                self.stats.malformed += 1
                # It arrived, so it is no gap: its sequence counts, where its header can be read.
                with contextlib.suppress(Exception):
                    self._count_gap(*wire.peek_sequence(frames))
                self._log_error(f"dropped a malformed message on {self.topic}: {exc}")
                continue
            try:
                self._callback(item)
            except Exception:
                self.stats.callback_errors += 1
                self._log_error(f"callback for {self.topic} raised:\n{traceback.format_exc()}")
        return True

    def _log_error(self, text: str) -> None:
        if self._error_log.ready():
            self._log.error(text)

    def _close(self) -> None:
        self._inlet.close()


def latency_ns(msg: Any) -> int | None:
    """Now minus the message's header stamp, where it has a plausible wall-clock stamp."""
    header = getattr(msg, "header", None)
    if not isinstance(header, Header) or header.stamp <= 0:
        return None
    latency = time.time_ns() - header.stamp
    return latency if 0 <= latency < _LATENCY_LIMIT_NS else None
