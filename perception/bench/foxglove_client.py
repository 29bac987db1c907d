"""A client of Foxglove's WebSocket protocol, as Foxglove itself speaks it: connect with the protocol's
subprotocol, read the server's channel advertisements, subscribe, and decode each message from the
schema its channel advertised (protobuf from the FileDescriptorSet sent, or JSON), not from classes
compiled in. `percept bench view` measures the live link with it; the tests check the link with it.

The protocol (github.com/foxglove/ws-protocol): text frames are JSON control messages (`serverInfo`,
`advertise`, `unadvertise`, `status`, ...); a binary frame starting with opcode 1 is a message: a
little-endian u32 subscription id, a u64 log time in ns, then the payload.
"""

from __future__ import annotations

import base64
import contextlib
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any

SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]  # the SDK's own first, then the classic one
MESSAGE_DATA = 1
_MESSAGE_HEADER = struct.Struct("<BIQ")


@dataclass
class Channel:
    id: int
    topic: str
    encoding: str  # protobuf or json
    schema_name: str
    schema_encoding: str
    schema: bytes
    _decoder: Any = field(default=None, repr=False)

    def decode(self, payload: bytes | memoryview) -> Any:
        """The message: a protobuf message built from the advertised schema, or the JSON's value."""
        if self.encoding == "json":
            return json.loads(bytes(payload))
        if self.encoding != "protobuf":
            raise ValueError(f"channel {self.topic}: expected protobuf or json, found {self.encoding!r}")
        if self._decoder is None:
            from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

            pool = descriptor_pool.DescriptorPool()
            for file in descriptor_pb2.FileDescriptorSet.FromString(self.schema).file:
                pool.Add(file)
            self._decoder = message_factory.GetMessageClass(pool.FindMessageTypeByName(self.schema_name))
        return self._decoder.FromString(bytes(payload))


@dataclass
class Message:
    channel: Channel
    log_time_ns: int
    payload: memoryview

    def decode(self) -> Any:
        return self.channel.decode(self.payload)


class FoxgloveClient:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        from websockets.sync.client import connect

        self._closing = contextlib.ExitStack()  # websockets wants its connection entered as a context
        self._socket = self._closing.enter_context(
            connect(url, subprotocols=SUBPROTOCOLS, open_timeout=timeout_s, max_size=None)  # type: ignore[arg-type]
        )
        self.server_info: dict[str, Any] = {}
        self.channels: dict[int, Channel] = {}
        self.statuses: list[str] = []  # what the server said in `status` messages
        self._subscribed: dict[int, Channel] = {}
        self._next_id = 1

    def close(self) -> None:
        self._closing.close()

    def __enter__(self) -> FoxgloveClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def receive(self, timeout_s: float) -> Message | None:
        """The next message on a subscription; control messages are taken in on the way. None when
        nothing came within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frame = self._socket.recv(timeout=remaining)
            except TimeoutError:
                return None
            if isinstance(frame, str):
                self._control(json.loads(frame))
                continue
            if frame[0] != MESSAGE_DATA:
                continue  # time, service responses and the like
            _, subscription, log_time = _MESSAGE_HEADER.unpack_from(frame)
            channel = self._subscribed.get(subscription)
            if channel is not None:  # one that was unsubscribed may still have had messages in flight
                return Message(channel, log_time, memoryview(frame)[_MESSAGE_HEADER.size :])
        return None

    def wait_for_topics(self, topics: list[str], timeout_s: float) -> dict[str, Channel]:
        """The channels advertised for `topics` (the first of each topic), once all are there."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = {c.topic: c for c in sorted(self.channels.values(), key=lambda c: -c.id)}
            if all(topic in found for topic in topics):
                return {topic: found[topic] for topic in topics}
            if time.monotonic() > deadline:
                missing = sorted(set(topics) - set(found))
                raise TimeoutError(
                    f"Foxglove server: no channel for {', '.join(missing)} within {timeout_s:g} s; "
                    f"advertised: {', '.join(sorted(found)) or 'none'}"
                )
            self.receive(min(0.1, max(deadline - time.monotonic(), 0.001)))

    def subscribe(self, channels: list[Channel]) -> None:
        subscriptions = []
        for channel in channels:
            subscriptions.append({"id": self._next_id, "channelId": channel.id})
            self._subscribed[self._next_id] = channel
            self._next_id += 1
        self._socket.send(json.dumps({"op": "subscribe", "subscriptions": subscriptions}))

    def unsubscribe_all(self) -> None:
        ids = list(self._subscribed)
        self._subscribed.clear()
        self._socket.send(json.dumps({"op": "unsubscribe", "subscriptionIds": ids}))

    def _control(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "serverInfo":
            self.server_info = message
        elif op == "advertise":
            for c in message["channels"]:
                schema_encoding = c.get("schemaEncoding", "")
                text = c.get("schema", "")
                schema = base64.b64decode(text) if schema_encoding == "protobuf" else text.encode()
                self.channels[c["id"]] = Channel(
                    c["id"], c["topic"], c["encoding"], c["schemaName"], schema_encoding, schema
                )
        elif op == "unadvertise":
            for channel_id in message["channelIds"]:
                self.channels.pop(channel_id, None)
        elif op == "status":
            self.statuses.append(str(message.get("message", "")))
