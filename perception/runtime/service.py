"""A service server: answers requests of one type on the node's thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

import zmq

from perception.msgs import Message
from perception.runtime import wire
from perception.runtime.context import Context
from perception.runtime.stats import Throttle

MAX_REQUESTS_A_ROUND = 100  # then timers and subscriptions get their turn (the rest wait on the socket)
Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


class Service(Generic[Req, Resp]):
    """Answers requests on the node's thread; a handler that raises sends the error text back.

    Every request that fails (not this protocol, not the request type, or the handler raised) is
    counted in `failures`, which the node reports in its stats, and logged at most once a second: a
    peer sending garbage in a loop must not fill the disk with the log."""

    def __init__(
        self,
        context: Context,
        log: logging.Logger,
        name: str,
        request_type: type[Req],
        response_type: type[Resp],
        handler: Callable[[Req], Resp],
    ) -> None:
        self.name = name
        self.request_type = request_type
        self.response_type = response_type
        self._log = log
        self._handler = handler
        self.failures = 0
        self._unlogged = 0  # failures since the last line in the log
        self._failure_log = Throttle()
        self._socket, self.endpoint = context.service_server(wire.receive_limit(request_type), name)

    def respond(self, request: Req) -> Resp:
        """Run the handler on one request and check what it returns."""
        response = self._handler(request)
        if type(response) is not self.response_type:
            raise TypeError(
                f"handler returned {type(response).__name__}, expected {self.response_type.__name__}"
            )
        return response

    def _receive(self) -> None:
        for _ in range(MAX_REQUESTS_A_ROUND):  # a caller sending without pause must not hold the node
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if len(frames) < 3:
                self._failed(f"a request of {len(frames)} frames (expected identity, request id, message)")
                continue  # not our protocol: nobody to answer
            identity, request_id = frames[0].bytes, frames[1].bytes
            try:
                received = wire.decode(frames[2:], self.request_type)
                if received.topic != self.name:  # a client that looked up another name, or none
                    raise ValueError(f"a request for service {received.topic!r} reached {self.name}")
                reply = [b"ok", *wire.encode(self.name.encode(), self.respond(received.msg))]
            except Exception as exc:
                self._failed(str(exc))
                reply = [b"error", f"{type(exc).__name__}: {exc}".encode()]
            self._socket.send_multipart([identity, request_id, *reply], copy=False)

    def _failed(self, why: str) -> None:
        self.failures += 1
        self._unlogged += 1
        if self._failure_log.ready():
            more = f" ({self._unlogged - 1} more since the last report)" if self._unlogged > 1 else ""
            self._log.error(
                "service %s failed: %s%s; %d failures so far", self.name, why, more, self.failures
            )
            self._unlogged = 0

    def _close(self) -> None:
        if self._socket is not None:  # the in-process harness has none
            self._socket.close()
