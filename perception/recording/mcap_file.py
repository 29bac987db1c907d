"""Recordings in MCAP (the `mcap` library): our messages exactly as they travelled, so replay is exact,
and beside them the boxes, tracks and grasps in Foxglove's schemas, to look at in Foxglove.

Each topic is an MCAP channel; its schema is the message type (`percept/Detections`, ...) with the
encoding `percept-wire`, and each message's data is the message's wire frames after the topic (the
msgpack header, then one raw frame per array; docs/wire-format.md), each preceded by its length as a
little-endian u64. Log time and publish time are both when the recorder received the message (the wire
carries no send time; a message's own stamp is in its data, and replay keeps it).

Images are the exception, because they are most of the bytes: each is stored once, in Foxglove's own
image schema on /foxglove/<topic>, carrying our wire header in a field of its own (images.py), so that
Foxglove shows it and replay rebuilds the message exactly. The channel's metadata names our topic and
type. Chunks are compressed (zstd by default, as rosbag2 does; lz4 or none on request); MCAP's chunks also
make a recording cut short (kill -9) readable up to its last complete chunk.

The other Foxglove channels (perception/recording/foxglove.py) sit under /foxglove/..., protobuf-encoded;
replay skips them, because they are views (a Detections message has more than its boxes). Recordings
from before images were stored once (an image channel of ours beside a RawImage view) still play.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mcap.stream_reader import StreamReader
from mcap.writer import CompressionType, Writer

from perception.errors import MalformedMessage, PerceptError
from perception.recording import COMPRESSIONS, IMAGE_FORMATS
from perception.recording.images import descriptor, store, wire_frames
from perception.runtime import wire

ENCODING = "percept-wire"
PROFILE = "percept"
IMAGE_TYPE = "percept/Image"
_COMPRESSION_TYPES = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
# Channel metadata on an image stored in a Foxglove schema: which of our topics and types it holds.
TOPIC_KEY, TYPE_KEY = "percept.topic", "percept.type"
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

    def __init__(
        self,
        path: str | Path,
        chunk_size: int = 4 * 2**20,
        foxglove: bool = True,
        compression: str = "zstd",
        image_format: str = "raw",
    ) -> None:
        self.path = Path(path)
        if compression not in COMPRESSIONS:
            raise PerceptError(
                f"compression: expected one of {', '.join(COMPRESSIONS)}, found {compression!r}"
            )
        if image_format not in IMAGE_FORMATS:
            raise PerceptError(
                f"image format: expected one of {', '.join(IMAGE_FORMATS)}, found {image_format!r}"
            )
        self.compression, self.image_format = compression, image_format
        try:
            self._file: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise PerceptError(f"recording {self.path}: cannot write it ({exc.strerror})") from None
        self._writer = Writer(self._file, chunk_size=chunk_size, compression=_COMPRESSION_TYPES[compression])
        self._writer.start(profile=PROFILE, library="percept")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._sequence: dict[str, int] = {}
        self._views: Views | None = Views(self._writer) if foxglove else None
        self.messages = 0
        self.bytes = 0
        self.images_kept_as_wire = 0  # images this process could not decode: stored as they came

    def write(
        self, topic: str, type_name: str, frames: list[Any], log_time_ns: int, publish_time_ns: int
    ) -> None:
        if type_name == IMAGE_TYPE and self._write_image(topic, frames, log_time_ns, publish_time_ns):
            return
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

    def _write_image(self, topic: str, frames: list[Any], log_time_ns: int, publish_time_ns: int) -> bool:
        """An image, once: in Foxglove's schema, with our wire header inside (see images.py). False for
        one this process cannot read (another schema version, an encoding it does not know): the caller
        stores its frames as they came, as any other message, so nothing is lost."""
        from perception.recording.foxglove import TOPIC_PREFIX, schema_data
        from perception.runtime.wire import decode

        header = pack([frames[0]])[_LENGTH.size :]  # the header frame's bytes
        try:
            stored = store(decode([topic.encode(), *frames]).msg, header, self.image_format)
        except Exception:
            self.images_kept_as_wire += 1
            return False
        # One channel per topic and schema: a topic whose frames change format (an encoding JPEG cannot
        # hold) gets a second channel, so no channel ever holds a message its schema does not describe.
        channel_topic = TOPIC_PREFIX + topic
        key = f"{channel_topic}\0{stored.schema}"
        if key not in self._channels:
            if stored.schema not in self._schemas:
                self._schemas[stored.schema] = self._writer.register_schema(
                    stored.schema, "protobuf", schema_data(descriptor(stored.schema))
                )
            self._channels[key] = self._writer.register_channel(
                channel_topic,
                "protobuf",
                self._schemas[stored.schema],
                metadata={TOPIC_KEY: topic, TYPE_KEY: IMAGE_TYPE},
            )
            self._sequence[key] = 0
        self._writer.add_message(
            self._channels[key], log_time_ns, stored.data, publish_time_ns, sequence=self._sequence[key]
        )
        self._sequence[key] += 1
        self.messages += 1
        self.bytes += len(stored.data)
        return True

    @property
    def view_errors(self) -> int:
        """Messages whose Foxglove view could not be made (their own channel has them all the same)."""
        return self._views.errors if self._views is not None else 0

    def close(self) -> None:
        self._writer.finish()  # type: ignore[no-untyped-call]
        self._file.close()


VIEWED_TYPES = frozenset({"percept/CameraInfo", "percept/Detections", "percept/Tracks", "percept/Grasps"})


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
    path: str | Path,
    topics: list[str] | None = None,
    torn: list[str] | None = None,
    skipped: list[str] | None = None,
    foreign: Counter[str] | None = None,
) -> Iterator[Recorded]:
    """The messages of a recording in the order of their log times: through its index where it has
    one (a file another tool wrote may hold them out of order; ours writes them as they arrive), front
    to back otherwise, so that a file cut short yields everything before its torn end, what stopped the
    reading being appended to `torn` when given. A stored image that does not decode is left out and
    named in `skipped`, and reading goes on. Messages on channels that are not percept's, its own
    Foxglove views (under /foxglove/) aside, are counted by topic in `foreign`."""
    path = Path(path)
    with open(path, "rb") as stream:
        summary = _summary(stream)
        if summary is not None and summary.chunk_indexes:
            for index in summary.chunk_indexes:
                _check_compression(index.compression, path)
            stream.seek(0)
            given = 0
            try:
                for item in _indexed(stream, summary, topics, skipped, foreign):
                    given += 1
                    yield item
                return
            except PerceptError:
                raise
            except Exception as exc:  # an index that does not serve: read it front to back instead
                if given:  # a chunk that does not read back: what came before was yielded
                    if torn is not None:
                        torn.append(torn_reason(exc))
                    return
                if foreign is not None:
                    foreign.clear()
        stream.seek(0)
        yield from _stream(stream, topics, torn, path, skipped, foreign=foreign)


@dataclass
class RecordedMessage:
    topic: str
    msg: Any  # a perception.msgs type, as a subscriber would have received it
    log_time_ns: int
    publish_time_ns: int


def messages(path: str | Path, topics: list[str] | None = None) -> Iterator[RecordedMessage]:
    """A recording's messages, decoded as a subscriber gets them, in the order of their log times: for
    reading a recording in Python, as rosbag2_py's reader or the mcap library's decoders do it.

        for item in messages("run.mcap", ["/detections"]):
            print(item.log_time_ns, item.msg.class_names)

    A file cut short yields what it holds before its torn end; a message that does not decode, or a
    stored image that does not (which play leaves out and counts), raises MalformedMessage naming it."""
    skipped: list[str] = []
    for item in read(path, topics, skipped=skipped):
        if skipped:
            raise MalformedMessage(f"{path}: {skipped[0]}")
        try:
            received = wire.decode([item.topic.encode(), *item.frames])
        except MalformedMessage as exc:
            raise MalformedMessage(f"{path}: {item.topic} at log time {item.log_time_ns}: {exc}") from None
        yield RecordedMessage(item.topic, received.msg, item.log_time_ns, item.publish_time_ns)
    if skipped:
        raise MalformedMessage(f"{path}: {skipped[0]}")


def _summary(stream: IO[bytes]) -> Any:
    """The summary section of an MCAP file, or None (a file cut short has none)."""
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    try:
        return make_reader(stream).get_summary()
    except (McapError, ValueError, EOFError, OSError, struct.error):  # OSError: shorter than a footer
        return None


def _indexed(
    stream: IO[bytes],
    summary: Any,
    topics: list[str] | None,
    skipped: list[str] | None,
    foreign: Counter[str] | None,
) -> Iterator[Recorded]:
    from mcap.reader import SeekingReader

    schemas = {sid: schema.name for sid, schema in summary.schemas.items()}
    for _, channel, message in SeekingReader(stream).iter_messages(log_time_order=True):
        ours = _ours(channel, schemas)
        if ours is None:
            if foreign is not None and not _is_view(channel):
                foreign[channel.topic] += 1
            continue
        item = _recorded(ours, message, topics, skipped)
        if item is not None:
            yield item


def profile_of(path: str | Path) -> str:
    """The profile an MCAP file's header names ("percept", "ros2", ...; "" for none or no MCAP)."""
    try:
        with open(path, "rb") as stream:
            return _profile(stream)
    except Exception:
        return ""


def _profile(stream: IO[bytes]) -> str:
    from mcap.records import Header

    stream.seek(0)
    for record in StreamReader(stream, skip_magic=False).records:
        return record.profile if isinstance(record, Header) else ""
    return ""


def _ours(channel: Any, schemas: dict[int, str]) -> tuple[str, str, str] | None:
    """A channel of ours as (our topic, our type, the schema of a stored image or ""), else None."""
    if channel.message_encoding == ENCODING:
        return channel.topic, schemas.get(channel.schema_id, ""), ""
    if TYPE_KEY in channel.metadata:
        return channel.metadata[TOPIC_KEY], channel.metadata[TYPE_KEY], schemas.get(channel.schema_id, "")
    return None


def _is_view(channel: Any) -> bool:
    from perception.recording.foxglove import TOPIC_PREFIX

    return bool(channel.topic.startswith(TOPIC_PREFIX))


def _recorded(
    ours: tuple[str, str, str], message: Any, topics: list[str] | None, skipped: list[str] | None
) -> Recorded | None:
    """One message of ours, with its wire frames; None when it is not wanted or does not decode."""
    topic, type_name, image_schema = ours
    if topics is not None and topic not in topics:
        return None
    try:
        frames = wire_frames(image_schema, message.data) if image_schema else unpack(message.data)
    except Exception as exc:  # one bad stored image: leave it out, say so, read on
        if skipped is not None:
            skipped.append(f"{topic} at {message.log_time}: {exc}")
        return None
    return Recorded(topic, type_name, frames, message.log_time, message.publish_time)


def recorded_topics(path: str | Path) -> dict[str, str]:
    """`topics_of` a file that must be one of our recordings: a missing file, one that is not MCAP,
    and one with none of our messages are each a PerceptError that says so."""
    from mcap.writer import MCAP0_MAGIC  # the first bytes of any MCAP file

    try:
        with open(path, "rb") as head:
            is_mcap = head.read(len(MCAP0_MAGIC)) == MCAP0_MAGIC
    except FileNotFoundError:
        raise PerceptError(f"recording {path}: no such file") from None
    except OSError as exc:
        raise PerceptError(f"recording {path}: cannot read it ({exc.strerror or exc})") from None
    if not is_mcap:
        raise PerceptError(f"recording {path}: not an MCAP file (expected a file percept record wrote)")
    recorded = topics_of(path)
    if not recorded:
        torn: list[str] = []
        next(read(path, torn=torn), None)
        why = f" ({torn[0]})" if torn else ""
        raise PerceptError(
            f"recording {path}: no percept messages in it; expected an MCAP file percept record wrote{why}"
        )
    return recorded


def topics_of(path: str | Path) -> dict[str, str]:
    """Topic -> type name of a recording: from its summary, or by reading it through if it has none."""
    from mcap.reader import make_reader

    with open(path, "rb") as stream:
        try:
            summary = make_reader(stream).get_summary()
        except Exception:
            summary = None
        if summary is not None and summary.channels:
            schemas = {sid: schema.name for sid, schema in summary.schemas.items()}
            in_summary: dict[str, str] = {}
            for channel in summary.channels.values():
                ours = _ours(channel, schemas)
                if ours is not None:
                    in_summary[ours[0]] = ours[1]
            return in_summary
    found: dict[str, str] = {}
    with open(path, "rb") as stream:  # no summary (a file cut short): its channels, read through
        for item in _stream(stream, None, None, Path(path), None, decode=False):
            found.setdefault(item.topic, item.type_name)
    return found


def _stream(
    stream: IO[bytes],
    topics: list[str] | None,
    torn: list[str] | None,
    path: Path,
    skipped: list[str] | None,
    decode: bool = True,
    foreign: Counter[str] | None = None,
) -> Iterator[Recorded]:
    from mcap.records import Channel, Message, Schema

    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str, str]] = {}  # id -> our topic, our type, a stored image's schema
    others: dict[int, str] = {}  # id -> topic of a channel that is not ours (nor our own view)
    try:
        for record in _records(stream, path):
            if isinstance(record, Schema):
                schemas[record.id] = record.name
            elif isinstance(record, Channel):
                ours = _ours(record, schemas)
                if ours is not None:
                    channels[record.id] = ours
                elif not _is_view(record):
                    others[record.id] = record.topic
            elif isinstance(record, Message) and record.channel_id in channels:
                if not decode:
                    topic, type_name, _ = channels[record.channel_id]
                    if topics is None or topic in topics:
                        yield Recorded(topic, type_name, [], record.log_time, record.publish_time)
                    continue
                item = _recorded(channels[record.channel_id], record, topics, skipped)
                if item is not None:
                    yield item
            elif isinstance(record, Message) and foreign is not None and record.channel_id in others:
                foreign[others[record.channel_id]] += 1
    except PerceptError:
        raise
    except Exception as exc:  # the torn end of a file cut short: everything before it was yielded
        if torn is not None:
            torn.append(torn_reason(exc))
        return


def torn_reason(exc: BaseException) -> str:
    """What ended the reading of a file cut short, in words (the reader's EndOfFile has none)."""
    return (
        f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__}: the file ends inside a record"
    )


def _records(stream: IO[bytes], path: Path, compressions: set[str] | None = None) -> Iterator[Any]:
    """A recording's records front to back, each chunk opened in turn once its compression is known
    to be one this reader takes (added to `compressions` when given). Raises at a torn end."""
    from mcap.records import Chunk
    from mcap.stream_reader import breakup_chunk

    for outer in StreamReader(stream, skip_magic=False, emit_chunks=True).records:
        if not isinstance(outer, Chunk):
            yield outer
            continue
        _check_compression(outer.compression, path)
        if compressions is not None:
            compressions.add(outer.compression or "none")
        yield from breakup_chunk(outer)


def _check_compression(compression: str, path: Path) -> None:
    """A chunk compression this reader knows ("" is MCAP's none), or a one-line error."""
    if (compression or "none") not in COMPRESSIONS:
        raise PerceptError(
            f"recording {path}: chunks compressed with {compression!r}; expected one of {', '.join(COMPRESSIONS)}"
        )


@dataclass
class TopicInfo:
    topic: str
    type_name: str  # ours (percept/Image), or the view's schema for a Foxglove view
    count: int
    stored_as: str  # "percept-wire", the Foxglove schema an image is stored in, "view", or "other"


@dataclass
class BagInfo:
    path: Path
    size_bytes: int
    start_ns: int
    end_ns: int
    messages: int
    compression: str  # of the chunks: zstd, lz4, none, or several joined by "+"
    topics: list[TopicInfo]
    torn: str = ""  # why reading stopped early, for a file cut short (its summary is missing)

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9


def describe(path: str | Path) -> BagInfo:
    """What a recording holds, like `ros2 bag info`: from its summary, or, for a file cut short, by
    reading it through to where it ends."""
    from mcap.records import Channel, Schema
    from mcap.records import Message as McapMessage

    path = Path(path)
    if path.is_dir():
        raise PerceptError(
            f"recording {path}: a folder, where an MCAP file was expected (a rosbag2 bag: give the .mcap "
            f"inside it, or percept bag convert {path} OUT.mcap)"
        )
    if not path.is_file():
        raise PerceptError(f"recording {path}: no such file")
    with open(path, "rb") as stream:
        if stream.read(8) != b"\x89MCAP0\r\n":
            raise PerceptError(f"recording {path}: not an MCAP file (its first bytes are not MCAP's magic)")
        stream.seek(0)
        summary = _summary(stream)
    if summary is not None and summary.statistics is not None:
        stats = summary.statistics
        compressions = sorted({c.compression or "none" for c in summary.chunk_indexes})
        for compression in compressions:
            _check_compression(compression, path)
        topics = [
            _topic_info(
                channel,
                _schema_name(summary.schemas, channel.schema_id),
                stats.channel_message_counts.get(cid, 0),
            )
            for cid, channel in sorted(summary.channels.items())
        ]
        return BagInfo(
            path,
            path.stat().st_size,
            stats.message_start_time,
            stats.message_end_time,
            stats.message_count,
            "+".join(compressions) or "none",
            topics,
        )
    # No summary: a recording cut short. Count what its complete chunks hold.
    schemas: dict[int, str] = {}
    channels: dict[int, Channel] = {}
    counts: dict[int, int] = {}
    compressions_seen: set[str] = set()
    start = end = 0
    torn = ""
    with open(path, "rb") as stream:
        try:
            for record in _records(stream, path, compressions_seen):
                if isinstance(record, Schema):
                    schemas[record.id] = record.name
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, McapMessage):
                    counts[record.channel_id] = counts.get(record.channel_id, 0) + 1
                    start = record.log_time if not start else min(start, record.log_time)
                    end = max(end, record.log_time)
        except PerceptError:
            raise
        except Exception as exc:
            torn = torn_reason(exc)
    topics = [
        _topic_info(c, schemas.get(c.schema_id, ""), counts.get(cid, 0))
        for cid, c in sorted(channels.items())
    ]
    compression = "+".join(sorted(compressions_seen)) or "none"
    return BagInfo(path, path.stat().st_size, start, end, sum(counts.values()), compression, topics, torn)


def _schema_name(schemas: dict[int, Any], schema_id: int) -> str:
    schema = schemas.get(schema_id)  # 0: a channel without a schema (JSON, say)
    return schema.name if schema is not None else ""


def _topic_info(channel: Any, schema_name: str, count: int) -> TopicInfo:
    if channel.message_encoding == ENCODING:
        return TopicInfo(channel.topic, schema_name, count, ENCODING)
    if TYPE_KEY in channel.metadata:
        return TopicInfo(
            channel.metadata[TOPIC_KEY],
            channel.metadata[TYPE_KEY],
            count,
            f"{schema_name} on {channel.topic}",
        )
    return TopicInfo(channel.topic, schema_name, count, "view" if _is_view(channel) else "other")
