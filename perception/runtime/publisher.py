"""A publisher: sends messages of one type on one topic through its transport outlet."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Generic, TypeVar

import numpy as np

from perception.errors import MalformedMessage, PerceptError
from perception.msgs import Message
from perception.runtime import wire
from perception.runtime.context import Context
from perception.runtime.stats import EndpointStats

M = TypeVar("M", bound=Message)
log = logging.getLogger(__name__)


class Publisher(Generic[M]):
    """Sends messages of one type on one topic. Safe to call from any thread.

    `publish` hands the message's arrays to the transport without copying: do not change an array
    after publishing it (publish a copy if you reuse a buffer).
    """

    def __init__(self, context: Context, msg_type: type[M], topic: str, send_hwm: int) -> None:
        self.msg_type = msg_type
        self.topic = topic
        self._topic_bytes = topic.encode()
        self._outlet = context.outlet(self._topic_bytes, send_hwm)
        self.endpoint = self._outlet.endpoint
        # Where subscribers on this host join it without TCP (None with shared memory off).
        self.local_address: str | None = getattr(self._outlet, "local_address", None)
        self._id = uuid.uuid4().hex[:12]
        self._count = 0
        self._lock = threading.Lock()  # publish() may come from any thread, destroy() from the node's
        self._closed = False
        self.stats = EndpointStats(topic, msg_type.TYPE_NAME, "pub")
        # Subscribers refuse a message over this (counted there as malformed): said here too, once, as
        # the publisher is where it can be fixed.
        self._receive_limit = wire.max_message_bytes(msg_type)
        self._said_too_large = False

    def publish(self, msg: M) -> None:
        if type(msg) is not self.msg_type:
            raise TypeError(
                f"publisher on {self.topic} expects {self.msg_type.__name__}, got {type(msg).__name__}"
            )
        with self._lock:
            if self._closed:
                raise PerceptError(f"publisher on {self.topic} is closed: its node was destroyed")
            self._count += 1
            frames = wire.encode(self._topic_bytes, msg, self._id, self._count)
            self.stats.dropped_queue += self._outlet.send(frames, self._id, self._count)
            size = sum(nbytes(f) for f in frames)
            self.stats.record_arrival(size)
            if size > self._receive_limit and not self._said_too_large:
                self._said_too_large = True
                log.warning(
                    "%s: %s messages of %.1f MiB are over the %.0f MiB its subscribers take (%s, set in theirs): "
                    "they drop it, counted as malformed",
                    self.topic,
                    self.msg_type.__name__,
                    size / 2**20,
                    self._receive_limit / 2**20,
                    wire.MAX_MESSAGE_ENV,
                )

    def loan(self, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """An array to fill and publish in a message (in place of one you would allocate): with a
        subscriber on this host it lies in shared memory, and publishing it copies nothing, however
        large (a 1920x1080 frame costs what a 640x480 one does). Otherwise it is an ordinary array.

        Once published it belongs to the bus: fill a fresh loan for the next message, and do not keep
        or change a published one (its slot goes to a later message once subscribers are done with it).
        """
        dtype = np.dtype(dtype)
        with self._lock:
            if self._closed:
                raise PerceptError(f"publisher on {self.topic} is closed: its node was destroyed")
            array = self._outlet.loan(tuple(shape), dtype)
        return array if array is not None else np.empty(shape, dtype)

    def publish_frames(self, frames: list[Any]) -> None:
        """Send a message already in wire frames (the frames after the topic, e.g. from a recording),
        unchanged: replay is byte-identical, sequence numbers included."""
        with self._lock:
            if self._closed:
                raise PerceptError(f"publisher on {self.topic} is closed: its node was destroyed")
            try:
                src, n = wire.peek_sequence([self._topic_bytes, *frames])
            except MalformedMessage:
                src, n = "", 0  # sent as it is, as TCP would: its subscribers count it malformed
            self.stats.dropped_queue += self._outlet.send([self._topic_bytes, *frames], src, n)
            self.stats.record_arrival(sum(nbytes(f) for f in frames))

    @property
    def subscriber_count(self) -> int:
        """Subscriptions currently connected (they will receive what is published next)."""
        with self._lock:
            return self._outlet.subscriber_count()

    def wait_for_subscribers(self, count: int = 1, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.subscriber_count < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            self._outlet.close()


def nbytes(frame: Any) -> int:
    """Bytes in one wire frame (a numpy array, a buffer or bytes)."""
    return frame.nbytes if hasattr(frame, "nbytes") else len(frame)
