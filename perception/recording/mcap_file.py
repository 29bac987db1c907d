"""Recordings in MCAP (the `mcap` library): our messages exactly as they travelled, so replay is exact,
and beside them the same images, boxes, tracks and grasps in Foxglove's schemas, to look at in Foxglove.

Each topic is an MCAP channel; its schema is the message type (`percept/Image`, ...) with the encoding
`percept-wire`, and each message's data is the message's wire frames after the topic (the msgpack header,
then one raw frame per array; docs/wire-format.md), each preceded by its length as a little-endian u64.
Log time and publish time are both when the recorder received the message (the wire carries no send
time; a message's own stamp is in its data, and replay keeps it).
MCAP's chunks make a recording cut short (kill -9) readable up to its last complete chunk.

The Foxglove channels (perception/recording/foxglove.py) sit under /foxglove/..., protobuf-encoded; replay skips
them, because they are views (a RawImage drops nothing, but a Detections message has more than its boxes).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mcap.stream_reader import StreamReader
from mcap.writer import CompressionType, Writer

from perception.errors import PerceptError

ENCODING = "percept-wire"
PROFILE = "percept"
_LENGTH = struct.Struct("<Q")


def pack(frames: list[Any]) -> bytes:
    """Wire frames (bytes, memoryviews, zmq frames or arrays) as one length-prefixed blob."""
    parts: list[bytes | memoryview] = []
    for frame in frames:
        data = frame.buffer if hasattr(frame, "buffer") else frame
        view = memoryview(data).cast("B")
        parts += [_LENGTH.pack(view.nbytes), view]
    return b"".join(parts)


def unpack(blob: bytes | memoryview) -> list[memoryview]:
    view, frames, offset = memoryview(blob), [], 0
    while offset < len(view):
        (size,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        frames.append(view[offset : offset + size])
        offset += size
    return frames


@dataclass
class Recorded:
    topic: str
    type_name: str
    frames: list[memoryview]  # the wire frames after the topic
    log_time_ns: int
    publish_time_ns: int


class McapRecorder:
    """Writes messages to an MCAP file, one channel per topic."""

    def __init__(self, path: str | Path, chunk_size: int = 4 * 2**20, foxglove: bool = True) -> None:
        self.path = Path(path)
        try:
            self._file: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise PerceptError(f"recording {self.path}: cannot write it ({exc.strerror})") from None
        self._writer = Writer(self._file, chunk_size=chunk_size, compression=CompressionType.NONE)
        self._writer.start(profile=PROFILE, library="percept")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._sequence: dict[str, int] = {}
        self._views: Views | None = Views(self._writer) if foxglove else None
        self.messages = 0
        self.bytes = 0

    def write(
        self, topic: str, type_name: str, frames: list[Any], log_time_ns: int, publish_time_ns: int
    ) -> None:
        if topic not in self._channels:
            if type_name not in self._schemas:
                self._schemas[type_name] = self._writer.register_schema(
                    type_name, ENCODING, type_name.encode()
                )
            self._channels[topic] = self._writer.register_channel(topic, ENCODING, self._schemas[type_name])
            self._sequence[topic] = 0
        data = pack(frames)
        self._writer.add_message(
            self._channels[topic], log_time_ns, data, publish_time_ns, sequence=self._sequence[topic]
        )
        self._sequence[topic] += 1
        self.messages += 1
        self.bytes += len(data)
        if self._views is not None and type_name in VIEWED_TYPES:
            self.bytes += self._views.write(topic, frames, log_time_ns, publish_time_ns)

    @property
    def view_errors(self) -> int:
        """Messages whose Foxglove view could not be made (their own channel has them all the same)."""
        return self._views.errors if self._views is not None else 0

    def close(self) -> None:
        self._writer.finish()  # type: ignore[no-untyped-call]
        self._file.close()


VIEWED_TYPES = frozenset(
    {"percept/Image", "percept/CameraInfo", "percept/Detections", "percept/Tracks", "percept/Grasps"}
)


class Views:
    """The Foxglove channels of a recording: each viewable message converted and written beside ours."""

    def __init__(self, writer: Writer) -> None:
        from perception.recording.foxglove import Converter

        self._writer, self._converter = writer, Converter()
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self.errors = 0

    def write(self, topic: str, frames: list[Any], log_time_ns: int, publish_time_ns: int) -> int:
        """Bytes written; a message that does not convert is counted in `errors`, never raised."""
        from perception.recording.foxglove import schema_data
        from perception.runtime.wire import decode

        try:
            msg = decode([topic.encode(), *frames]).msg
            views = self._converter.convert(topic, msg)
        except Exception:
            self.errors += 1
            return 0
        written = 0
        for view_topic, view in views:
            name = view.DESCRIPTOR.full_name
            if name not in self._schemas:
                self._schemas[name] = self._writer.register_schema(
                    name, "protobuf", schema_data(view.DESCRIPTOR)
                )
            if view_topic not in self._channels:
                self._channels[view_topic] = self._writer.register_channel(
                    view_topic, "protobuf", self._schemas[name]
                )
            data = view.SerializeToString()
            self._writer.add_message(self._channels[view_topic], log_time_ns, data, publish_time_ns)
            written += len(data)
        return written


def read(
    path: str | Path, topics: list[str] | None = None, torn: list[str] | None = None
) -> Iterator[Recorded]:
    """The messages of a recording in the order they were written (the recorder writes them as they
    arrive). Read front to back, so a file cut short yields everything in its complete chunks; what
    stopped the reading early is appended to `torn` when given."""
    with open(path, "rb") as stream:
        yield from _stream(stream, topics, torn)


def topics_of(path: str | Path) -> dict[str, str]:
    """Topic -> type name of a recording: from its summary, or by reading it through if it has none."""
    from mcap.reader import make_reader

    with open(path, "rb") as stream:
        try:
            summary = make_reader(stream).get_summary()
        except Exception:
            summary = None
        if summary is not None and summary.channels:
            return {
                c.topic: summary.schemas[c.schema_id].name
                for c in summary.channels.values()
                if c.message_encoding == ENCODING
            }
    found: dict[str, str] = {}
    for item in read(path):
        found.setdefault(item.topic, item.type_name)
    return found


def _stream(stream: IO[bytes], topics: list[str] | None, torn: list[str] | None = None) -> Iterator[Recorded]:
    from mcap.records import Channel, Message, Schema

    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, int]] = {}
    try:
        for record in StreamReader(stream, skip_magic=False).records:
            if isinstance(record, Schema):
                schemas[record.id] = record.name
            elif isinstance(record, Channel) and record.message_encoding == ENCODING:
                channels[record.id] = (record.topic, record.schema_id)
            elif isinstance(record, Message) and record.channel_id in channels:
                topic, schema_id = channels[record.channel_id]
                if topics is None or topic in topics:
                    yield Recorded(
                        topic,
                        schemas.get(schema_id, ""),
                        unpack(record.data),
                        record.log_time,
                        record.publish_time,
                    )
    except Exception as exc:  # the torn end of a file cut short: everything before it was yielded
        if torn is not None:
            torn.append(f"{type(exc).__name__}: {exc}")
        return
