"""The wire format: a message becomes multipart frames [topic, header, array 0, array 1, ...].

The header is a msgpack map {"type", "version", "fields", "src", "n"}. Inside "fields", every numpy
array is replaced by msgpack extension type 1 whose payload is msgpack [frame index, dtype, shape];
the array's bytes travel as their own frame, untouched. docs/wire-format.md specifies it for other
languages. Decoding rebuilds arrays with numpy.frombuffer, so they share memory with the frame.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import typing
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from perception import msgs
from perception.errors import MalformedMessage, MessageError, reason
from perception.runtime.settings import number_setting

ARRAY_EXT = 1
_ALLOWED_DTYPE_KINDS = "biuf"  # bool, int, uint, float: no objects, no pointers
Buffer = Any  # bytes, memoryview or zmq.Frame
MAX_HEADER_BYTES = 1 << 20  # a header holds names and numbers (arrays travel in frames of their own)
MAX_MESSAGE_ENV = "PERCEPT_MAX_MESSAGE_MB"


def max_message_bytes(msg_type: type[msgs.Message] | None = None) -> int:
    """The most bytes a receiver takes in one message of `msg_type` (all its frames; any type
    when None): the type's MAX_BYTES, or PERCEPT_MAX_MESSAGE_MB for every type when set."""
    override = os.environ.get(MAX_MESSAGE_ENV)
    if override:
        megabytes = number_setting(
            MAX_MESSAGE_ENV, override, lambda v: 0 < v < 1 << 20, "a size in MiB above 0", MessageError
        )
        return int(megabytes * (1 << 20))
    if msg_type is None:
        return max(cls.MAX_BYTES for cls in msgs.registered_types().values())
    return msg_type.MAX_BYTES


def receive_limit(msg_type: type[msgs.Message] | None = None) -> int:
    """ZMQ_MAXMSGSIZE for a socket receiving `msg_type`: its largest single frame (ZeroMQ bounds each
    frame, and cuts off a peer that sends a bigger one before it is read whole)."""
    return max(max_message_bytes(msg_type), MAX_HEADER_BYTES)


@dataclass(slots=True)
class Received:
    """A decoded message with what the transport knew about it."""

    topic: str
    msg: Any  # a Message, or an UnknownMessage when the type is not registered here
    src: str  # publisher id
    n: int  # per-publisher sequence number, from 1
    nbytes: int


@dataclass(slots=True)
class UnknownMessage:
    """A message of a type this process has not imported: its fields, decoded generically."""

    type_name: str
    version: int
    fields: dict[str, Any]


class _Encoder:
    """Reusable packers (building a msgpack Packer costs more than packing a small header)."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []
        self.array_exts: dict[tuple[int, str, tuple[int, ...]], msgpack.ExtType] = {}
        self.packer = msgpack.Packer(default=self.pack_special)
        self.plain = msgpack.Packer()

    def pack_special(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind not in _ALLOWED_DTYPE_KINDS:
                raise MessageError(
                    f"array fields hold bool, integer, unsigned or float; found dtype {obj.dtype}"
                )
            if not obj.flags.c_contiguous:
                obj = np.ascontiguousarray(obj)
            self.arrays.append(obj)
            key = (len(self.arrays) - 1, obj.dtype.str, obj.shape)
            ext = self.array_exts.get(key)
            if ext is None:  # a stream's messages repeat the same few: packed once each
                ext = msgpack.ExtType(ARRAY_EXT, self.plain.pack(list(key)))
                if len(self.array_exts) < 256:
                    self.array_exts[key] = ext
            return ext
        if isinstance(obj, msgs.Message):
            return {name: getattr(obj, name) for name in _field_names(type(obj))}
        if isinstance(obj, np.generic):
            return obj.item()
        raise MessageError(f"cannot encode a {type(obj).__name__} in a message")


_encoders = threading.local()


def encode(topic: bytes, msg: msgs.Message, src: str = "", n: int = 0) -> list[Any]:
    """Frames for one message. Array frames are the arrays themselves (zero-copy with copy=False)."""
    if not isinstance(msg, msgs.Message) or not msg.TYPE_NAME:
        raise MessageError(f"expected a registered message, found {type(msg).__name__}")
    encoder: _Encoder | None = getattr(_encoders, "encoder", None)
    if encoder is None:
        encoder = _encoders.encoder = _Encoder()
    encoder.arrays = []
    header = {"type": msg.TYPE_NAME, "version": msg.SCHEMA_VERSION, "fields": msg, "src": src, "n": n}
    try:
        packed = encoder.packer.pack(header)
    except Exception:
        encoder.packer.reset()  # drop a half-packed header so the next message starts clean
        raise
    return [topic, packed, *encoder.arrays]


def decode(
    frames: list[Buffer], expected: type[msgs.Message] | None = None, max_bytes: int | None = None
) -> Received:
    """Rebuild a message from frames; raise MalformedMessage naming what is wrong. `max_bytes`: the
    most its frames may hold, when the caller has it already (max_message_bytes(expected) otherwise)."""
    if len(frames) < 2:
        raise MalformedMessage(f"expected at least 2 frames (topic, header), found {len(frames)}")
    buffers = [byte_view(f) for f in frames]
    _check_header_size(buffers[1])
    try:
        topic = bytes(buffers[0]).decode()
    except UnicodeDecodeError:
        raise MalformedMessage("topic frame is not UTF-8") from None

    def unpack_array(code: int, data: bytes) -> Any:
        if code != ARRAY_EXT:
            raise MalformedMessage(f"unknown msgpack extension type {code}")
        index, dtype, shape, expected_bytes = _array_ref(data)
        if not 0 <= index < len(buffers) - 2:
            raise MalformedMessage(f"array frame {index} missing: {len(buffers) - 2} array frame(s) came")
        buf = buffers[index + 2]
        if buf.nbytes != expected_bytes:
            raise MalformedMessage(
                f"array frame {index}: shape {list(shape)} of {dtype.str} needs {expected_bytes} bytes, "
                f"found {buf.nbytes}"
            )
        array = np.frombuffer(buf, dtype=dtype).reshape(shape)
        array.flags.writeable = False  # it is the received frame itself; copy it to change it
        return array

    try:
        header = msgpack.unpackb(buffers[1], ext_hook=unpack_array, strict_map_key=False)
    except MalformedMessage:
        raise
    except Exception as exc:
        raise MalformedMessage(f"header is not valid msgpack: {reason(exc)}") from None
    if not isinstance(header, dict):
        raise MalformedMessage(f"header must be a map, found {type(header).__name__}")
    if not ("type" in header and "version" in header and "fields" in header):
        missing = sorted({"type", "version", "fields"} - header.keys())
        # Keys of any type a peer sent (an int beside a str would not sort): named by their repr.
        raise MalformedMessage(
            f"header lacks {', '.join(repr(k) for k in missing)}; found keys {', '.join(sorted(map(repr, header)))}"
        )
    type_name, version, fields = header["type"], header["version"], header["fields"]
    if not isinstance(type_name, str) or not isinstance(version, int):
        raise MalformedMessage(
            f"header 'type' must be a string and 'version' an integer, found {type_name!r} and {version!r}"
        )
    if not isinstance(fields, dict):
        raise MalformedMessage(f"{type_name}: 'fields' must be a map, found {type(fields).__name__}")
    if expected is not None and type_name != expected.TYPE_NAME:
        raise MalformedMessage(f"expected type {expected.TYPE_NAME}, found {type_name}")
    nbytes = sum(b.nbytes for b in buffers)
    cls = msgs.registered_type(type_name)
    limit = max_message_bytes(cls or expected) if max_bytes is None or cls is not expected else max_bytes
    if nbytes > limit:
        raise MalformedMessage(f"{type_name} of {nbytes} bytes; at most {limit} accepted ({MAX_MESSAGE_ENV})")
    msg: Any
    if cls is None:
        msg = UnknownMessage(type_name, version, fields)
    else:
        if version not in cls.READS_VERSIONS:
            raise MalformedMessage(
                f"{type_name} schema version {version} received; this process reads version "
                f"{cls.SCHEMA_VERSION}"
            )
        try:
            msg = _build(cls, fields)
        except MessageError as exc:  # a field that does not fit its type, named
            text = str(exc)
            raise MalformedMessage(text if text.startswith(type_name) else f"{type_name}: {text}") from None
        except Exception as exc:  # however else a field can fail its type's own checks
            raise MalformedMessage(f"{type_name}: {type(exc).__name__}: {exc}") from None
    src, n = _sequence(header)
    return Received(topic, msg, src, n, nbytes)


_ARRAY_REFS: dict[bytes, tuple[int, np.dtype[Any], tuple[int, ...], int]] = {}
_MAX_ARRAY_REFS = 256  # a peer sending ever new shapes cannot grow the cache without bound


def _array_ref(data: bytes) -> tuple[int, np.dtype[Any], tuple[int, ...], int]:
    """An array extension's payload as (frame index, dtype, shape, bytes it needs), checked. A stream's
    messages repeat the same payload, so each is read once and then looked up."""
    ref = _ARRAY_REFS.get(data)
    if ref is not None:
        return ref
    try:
        index, dtype_str, shape = msgpack.unpackb(data)
        dtype = np.dtype(dtype_str)
        if type(index) is not int or not all(type(n) is int and n >= 0 for n in shape):
            raise ValueError("whole numbers from 0 expected")
    except Exception as exc:
        raise MalformedMessage(
            f"array reference (msgpack extension {ARRAY_EXT}): expected [frame index, dtype, shape] with "
            f"whole numbers from 0 and a numpy dtype string, found {bytes(data)[:80]!r} ({reason(exc)})"
        ) from None
    if dtype.kind not in _ALLOWED_DTYPE_KINDS:
        raise MalformedMessage(
            f"array dtype {dtype_str!r}: expected bool, integer, unsigned or float (numpy kinds b, i, u, f)"
        )
    ref = (index, dtype, tuple(shape), math.prod(shape) * dtype.itemsize)
    if len(_ARRAY_REFS) < _MAX_ARRAY_REFS:
        _ARRAY_REFS[data] = ref
    return ref


def peek_sequence(frames: list[Buffer]) -> tuple[str, int]:
    """(publisher id, sequence number) from a frame set's header, without rebuilding the message."""
    return _sequence(_peek_header(frames))


MAX_SEQUENCE = 2**63 - 1  # sequence numbers are int64 from 1 (0: none), as every reader can hold them


def _sequence(header: dict[Any, Any]) -> tuple[str, int]:
    src, n = header.get("src", ""), header.get("n", 0)
    if not isinstance(src, str) or type(n) is not int or not 0 <= n <= MAX_SEQUENCE:
        raise MalformedMessage(
            f"header 'src' must be a string and 'n' an integer from 0 to 2^63-1, found {src!r:.80} and {n!r}"
        )
    return src, n


def peek_type(frames: list[Buffer]) -> str:
    """The type name in a frame set's header, without rebuilding the message."""
    return str(_peek_header(frames).get("type", ""))


@dataclass(frozen=True)
class ArrayRef:
    """An array as a header names it: which frame after the header holds it, its dtype and shape."""

    index: int
    dtype: np.dtype[Any]
    shape: tuple[int, ...]


def peek_fields(header_frame: Buffer) -> dict[str, Any]:
    """The fields a header frame names, with each array as an `ArrayRef` (its frame is not needed):
    for tools that store an array their own way and must rebuild its frame exactly."""

    def array_ref(code: int, data: bytes) -> ArrayRef:
        if code != ARRAY_EXT:
            raise MalformedMessage(f"unknown msgpack extension type {code}")
        index, dtype_str, shape = msgpack.unpackb(data)
        return ArrayRef(int(index), np.dtype(dtype_str), tuple(int(s) for s in shape))

    try:
        header = msgpack.unpackb(byte_view(header_frame), ext_hook=array_ref, strict_map_key=False)
    except MalformedMessage:
        raise
    except Exception as exc:
        raise MalformedMessage(f"header is not valid msgpack: {reason(exc)}") from None
    fields = header.get("fields") if isinstance(header, dict) else None
    if not isinstance(fields, dict):
        raise MalformedMessage("header must be a map with a 'fields' map")
    return fields


def _peek_header(frames: list[Buffer]) -> dict[str, Any]:
    if len(frames) < 2:
        raise MalformedMessage(f"expected at least 2 frames (topic, header), found {len(frames)}")
    _check_header_size(byte_view(frames[1]))
    try:
        header = msgpack.unpackb(byte_view(frames[1]), ext_hook=_ignore_ext, strict_map_key=False)
    except Exception as exc:
        raise MalformedMessage(f"header is not valid msgpack: {reason(exc)}") from None
    if not isinstance(header, dict):
        raise MalformedMessage("header must be a map")
    return header


def _check_header_size(header: memoryview) -> None:
    if header.nbytes > MAX_HEADER_BYTES:
        raise MalformedMessage(f"header of {header.nbytes} bytes; at most {MAX_HEADER_BYTES} accepted")


def _ignore_ext(code: int, data: bytes) -> None:
    return None


def byte_view(frame: Buffer) -> memoryview:
    """A flat byte view of a frame: bytes, a zmq.Frame received with copy=False, or an array."""
    buffer = getattr(frame, "buffer", None)
    view = memoryview(frame if buffer is None else buffer)
    if view.format == "B" and view.ndim == 1:
        return view
    return view.cast("B") if view.nbytes else memoryview(b"")  # cast() refuses zero-size shapes


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_PLAIN = msgs.SCALAR_TYPES


@dataclass(frozen=True)
class _BuildPlan:
    """How to rebuild a message type from decoded msgpack: its field names, those without a default,
    and per field how to check or rebuild it: ('msg', class), ('msglist', class), ('plain', str/int/
    float/bool) and ('plain list', one of them): a value of exactly that type is taken as it is, without
    a call), ('array', the numpy kind of its default: one sent as a plain msgpack array is checked) or
    ('value', hint)."""

    names: frozenset[str]
    required: frozenset[str]
    fields: dict[str, tuple[str, Any]]


_BUILD_PLANS: dict[type, _BuildPlan] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _build_plan(cls: type) -> _BuildPlan:
    cached = _BUILD_PLANS.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    checked: dict[str, tuple[str, Any]] = {}
    for name in _field_names(cls):
        hint = hints[name]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if isinstance(hint, type) and issubclass(hint, msgs.Message):
            checked[name] = ("msg", hint)
        elif origin is list and args and isinstance(args[0], type) and issubclass(args[0], msgs.Message):
            checked[name] = ("msglist", args[0])
        elif hint in _PLAIN:
            checked[name] = ("plain", hint)
        elif origin is list and args and args[0] in _PLAIN:
            checked[name] = ("plain list", args[0])
        elif hint is np.ndarray:  # each type converts and checks its own arrays, once they are numbers
            checked[name] = ("array", _declared_kind(cls, name))
        else:
            checked[name] = ("value", hint)
    required = frozenset(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    plan = _BUILD_PLANS[cls] = _BuildPlan(frozenset(_field_names(cls)), required, checked)
    return plan


def _build(cls: type[msgs.Message], fields: dict[str, Any], where: str = "") -> msgs.Message:
    """The message from its decoded fields (a dict this function may change); each field is checked
    against its type (msgs.field_value; arrays, once numbers, by the type itself). `where`: the path of
    a nested message."""
    plan = _build_plan(cls)
    where = where or cls.TYPE_NAME
    if not fields.keys() <= plan.names:
        unknown = fields.keys() - plan.names
        raise MessageError(
            f"{where}: unknown fields {sorted(unknown, key=repr)}; expected {sorted(plan.names)}"
        )
    if not plan.required <= fields.keys():
        missing = sorted(plan.required - fields.keys())
        fields_of = "field" if len(missing) == 1 else "fields"
        raise MessageError(f"{where}: missing {fields_of} {', '.join(map(repr, missing))} (no default)")
    for name, (kind, sub) in plan.fields.items():
        if name not in fields:
            continue
        value = fields[name]
        if kind == "plain":
            if type(value) is not sub:  # the usual case, an exact type, costs one comparison
                fields[name] = msgs.field_value(f"{where}.{name}", sub, value)
        elif kind == "array":
            if type(value) is not np.ndarray:  # a plain msgpack array, as a foreign client may send
                _check_numbers(f"{where}.{name}", value, sub)
        elif kind == "plain list":
            if type(value) is not list or not set(map(type, value)) <= {sub}:
                fields[name] = msgs.field_value(f"{where}.{name}", list[sub], value)  # type: ignore[valid-type]
        elif kind == "msg":
            fields[name] = _nested(sub, value, f"{where}.{name}")
        elif kind == "msglist":
            if not isinstance(value, list):
                raise MessageError(
                    f"{where}.{name}: expected a list of {sub.TYPE_NAME} maps, found {type(value).__name__}"
                )
            fields[name] = [_nested(sub, item, f"{where}.{name}[{i}]") for i, item in enumerate(value)]
        else:
            fields[name] = msgs.field_value(f"{where}.{name}", sub, value)
    return cls(**fields)


def _declared_kind(cls: type, name: str) -> str:
    """The numpy kind of an array field's default ('i', 'u' or 'f'), or '' where it has none."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    if field.default_factory is dataclasses.MISSING:
        return ""
    return str(np.asarray(field.default_factory()).dtype.kind)


def _check_numbers(where: str, value: Any, declared_kind: str) -> None:
    """An array field sent as a plain msgpack array (or number): rectangular numbers, whole ones where
    the field holds integers (2.0 counts: JSON-like encoders write whole numbers either way); its type
    then converts it. Text, booleans and maps are refused here rather than parsed or cast by numpy ("5"
    would become 5, 1.7 would become 1)."""
    try:
        array = np.asarray(value)  # text 'U', a map or a ragged list 'O', true 'b'
    except ValueError:  # ragged in a way numpy refuses outright
        array = np.asarray(None)
    kind = array.dtype.kind
    whole = declared_kind in ("i", "u")
    if whole and kind == "f" and np.isfinite(array).all() and (array == np.round(array)).all():
        kind = "i"
    if kind not in ("iu" if whole else "iuf"):
        expected = "whole numbers" if whole else "numbers"
        raise MessageError(
            f"{where}: expected an array (msgpack extension {ARRAY_EXT}) or a list of {expected}, "
            f"found {type(value).__name__} {value!r:.80}"
        )


def _nested(cls: type[msgs.Message], value: Any, where: str) -> msgs.Message:
    if not isinstance(value, dict):
        raise MessageError(f"{where}: expected a map of {cls.TYPE_NAME} fields, found {type(value).__name__}")
    return _build(cls, value, where)
