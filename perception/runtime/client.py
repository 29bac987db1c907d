"""A service client: calls a service by name and blocks the calling thread until the reply."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any, Generic, TypeVar

import zmq
from zmq.utils.monitor import recv_monitor_message

from perception.errors import (
    RegistryUnavailable,
    ServiceError,
    ServiceLost,
    ServiceTimeout,
    ServiceUnavailable,
)
from perception.msgs import Message
from perception.runtime import wire
from perception.runtime.context import Context
from perception.runtime.registry import query

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


class Client(Generic[Req, Resp]):
    """Calls a service; blocks the calling thread until the reply or the timeout."""

    def __init__(
        self, context: Context, name: str, request_type: type[Req], response_type: type[Resp]
    ) -> None:
        self.name = name
        self.request_type = request_type
        self.response_type = response_type
        self._context = context
        self._socket: zmq.Socket[Any] | None = None
        # Tells when the server's connection ends: a call waiting on a server that died fails at once
        # (ServiceLost) instead of waiting out its timeout, and the next call looks the server up again
        # (a respawned server listens on a new port).
        self._monitor: zmq.Socket[Any] | None = None
        self._endpoint = ""
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def wait_for_service(self, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._lookup()
                return True
            except ServiceUnavailable:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)

    def call(self, request: Req, timeout_s: float = 5.0) -> Resp:
        if type(request) is not self.request_type:
            raise TypeError(
                f"service {self.name} expects {self.request_type.__name__}, got {type(request).__name__}"
            )
        with self._lock:
            if self._socket is not None and self._server_went_away():
                self._reset()  # the server went away since the last call
            socket = self._connect()
            request_id = str(next(self._ids)).encode()
            socket.send_multipart([request_id, *wire.encode(self.name.encode(), request)], copy=False)
            deadline = time.monotonic() + timeout_s
            poller = zmq.Poller()
            poller.register(socket, zmq.POLLIN)
            poller.register(self._monitor, zmq.POLLIN)
            while (remaining := deadline - time.monotonic()) > 0:
                ready = dict(poller.poll(int(remaining * 1000) + 1))
                if self._monitor in ready and socket not in ready and self._server_went_away():
                    self._reset()
                    raise ServiceLost(
                        f"the server of {self.name} went away while the call waited for its answer "
                        "(it may or may not have carried it out)"
                    )
                if socket not in ready:
                    continue
                frames = socket.recv_multipart(copy=False)
                if len(frames) < 3 or frames[0].bytes != request_id:
                    continue  # the answer to an earlier call that timed out, or not our protocol
                status = frames[1].bytes
                if status == b"ok":
                    return wire.decode(frames[2:], self.response_type).msg  # type: ignore[no-any-return]
                raise ServiceError(f"service {self.name} failed: {frames[2].bytes.decode()}")
            self._reset()  # the server may have moved; look it up again next time
            raise ServiceTimeout(f"service {self.name} did not answer within {timeout_s:g} s")

    def _lookup(self) -> tuple[str, str | None]:
        """The server's endpoint, and the CURVE key it serves with (with a keystore)."""
        try:
            keys = self._context.keys or False
            reply = query("service", address=self._context.registry, timeout_s=1.0, keys=keys, name=self.name)
        except RegistryUnavailable as exc:
            raise ServiceUnavailable(f"cannot look up service {self.name}: {exc}") from None
        if not reply.get("ok"):
            known = ", ".join(reply.get("known", [])) or "none"
            raise ServiceUnavailable(f"no server for service {self.name} (services known: {known})")
        if (
            reply.get("request") != self.request_type.TYPE_NAME
            or reply.get("response") != self.response_type.TYPE_NAME
        ):
            raise ServiceUnavailable(
                f"service {self.name} takes {reply.get('request')} -> {reply.get('response')}, this client uses "
                f"{self.request_type.TYPE_NAME} -> {self.response_type.TYPE_NAME}"
            )
        key, endpoint = reply.get("key"), reply.get("endpoint")
        if not isinstance(endpoint, str):
            raise ServiceUnavailable(f"the registry gave service {self.name} no endpoint")
        return endpoint, key if isinstance(key, str) else None

    def _connect(self) -> zmq.Socket[Any]:
        if self._socket is None:
            self._endpoint, server_key = self._lookup()
            self._socket = self._context.service_client(
                self._endpoint, wire.receive_limit(self.response_type), server_key
            )
            self._monitor = self._socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        return self._socket

    def _server_went_away(self) -> bool:
        """Whether the connection to the server ended (read without waiting)."""
        went_away = False
        while self._monitor is not None and self._monitor.poll(0):
            went_away |= recv_monitor_message(self._monitor)["event"] == zmq.EVENT_DISCONNECTED
        return went_away

    def _reset(self) -> None:
        if self._socket is not None:
            self._socket.disable_monitor()
            assert self._monitor is not None
            self._monitor.close()
            self._socket.close()
        self._socket = self._monitor = None

    def close(self) -> None:
        with self._lock:
            self._reset()
