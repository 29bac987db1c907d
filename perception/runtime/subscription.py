"""A subscription: receives one topic into a keep-last queue and hands messages to a callback."""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from perception.errors import MalformedMessage
from perception.msgs import Header, Message
from perception.runtime import wire
from perception.runtime.context import Context
from perception.runtime.qos import QoS
from perception.runtime.stats import EndpointStats, Throttle

M = TypeVar("M", bound=Message)

RECEIVE_HWM = 1000  # messages a subscription socket may hold while its node is busy
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
        self._inlet = context.inlet(topic.encode(), RECEIVE_HWM)
        self._queue: deque[Any] = deque(maxlen=qos.depth)
        self._last_seq: dict[str, int] = {}
        self._error_log = Throttle()  # at most one line a second per subscription
        self.stats = EndpointStats(topic, msg_type.TYPE_NAME if msg_type else "*", "sub")

    @property
    def publisher_count(self) -> int:
        """Publishers this subscription has connected to (including ones that have since gone)."""
        return len(self._inlet.endpoints)

    def _receive(self) -> None:
        """Move everything that has arrived into the keep-last queue, evicting (and counting) the
        oldest. Frames are decoded only when handed to the callback, so a flood costs little."""
        queue = self._queue
        stats = self.stats
        # At most what the socket can hold per round, so that in a flood callbacks still run
        # between drains; a latest-only queue still ends up holding the newest arrival.
        topic = self._inlet.topic
        for frames in self._inlet.drain(RECEIVE_HWM):
            if frames[0].bytes != topic:
                continue  # a longer topic matching ours as a prefix (a reused port): not for us
            stats.record_arrival(sum(len(f) for f in frames))
            if len(queue) == queue.maxlen:
                stats.dropped_queue += 1
                evicted = queue.popleft()
                try:
                    self._count_gap(*wire.peek_sequence(evicted))
                except MalformedMessage:
                    stats.malformed += 1
            queue.append(frames)

    def _count_gap(self, src: str, n: int) -> None:
        # Eviction and dispatch both take the queue's oldest entry, so this sees arrival order.
        last = self._last_seq.get(src)
        if last is not None and n > last + 1:
            self.stats.dropped_gap += n - last - 1
        self._last_seq[src] = n

    def _dispatch(self) -> bool:
        """Hand what is queued now to the callback, oldest first. True if there was anything."""
        queue = self._queue
        if not queue:
            return False
        for _ in range(len(queue)):
            frames = queue.popleft()
            try:
                if self.raw:
                    self._count_gap(*wire.peek_sequence(frames))
                    item: Any = frames
                else:
                    received = wire.decode(frames, self.msg_type)  # reads the header once
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
