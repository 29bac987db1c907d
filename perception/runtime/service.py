"""A service server: answers requests of one type on the node's thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

import zmq

from perception.msgs import Message
from perception.runtime import wire
from perception.runtime.context import Context

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


class Service(Generic[Req, Resp]):
    """Answers requests on the node's thread; a handler that raises sends the error text back."""

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
        self._socket, self.endpoint = context.service_server()

    def respond(self, request: Req) -> Resp:
        """Run the handler on one request and check what it returns."""
        response = self._handler(request)
        if type(response) is not self.response_type:
            raise TypeError(
                f"handler returned {type(response).__name__}, expected {self.response_type.__name__}"
            )
        return response

    def _receive(self) -> None:
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if len(frames) < 3:
                continue  # not our protocol
            identity, request_id = frames[0].bytes, frames[1].bytes
            try:
                request = wire.decode(frames[2:], self.request_type).msg
                reply = [b"ok", *wire.encode(self.name.encode(), self.respond(request))]
            except Exception as exc:
                self._log.error("service %s failed: %s", self.name, exc)
                reply = [b"error", f"{type(exc).__name__}: {exc}".encode()]
            self._socket.send_multipart([identity, request_id, *reply], copy=False)

    def _close(self) -> None:
        if self._socket is not None:  # the in-process harness has none
            self._socket.close()
