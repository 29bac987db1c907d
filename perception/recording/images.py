"""Images stored once: each frame is written in a Foxglove schema (foxglove.RawImage, or
foxglove.CompressedImage for PNG or JPEG), which Foxglove shows as it is, and carries our own wire
header in one more protobuf field that Foxglove's schema does not name (protobuf readers skip unknown
fields). `percept play` reads the header and the pixels back and rebuilds the message's wire frames:
byte for byte for RAW and PNG (PNG is lossless), the pixels decoded for JPEG.

A frame's bytes used to be written twice, as our message and as its Foxglove view. The field number is
far above any Foxglove uses, so a later Foxglove field cannot collide with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from perception.recording import IMAGE_FORMATS

__all__ = ["IMAGE_FORMATS", "StoredImage", "descriptor", "encode", "store", "wire_frames"]

WIRE_HEADER_FIELD = 15000  # the protobuf field (bytes) holding our msgpack wire header
JPEG_QUALITY = 90
# What each stored format can hold, and how OpenCV sees each encoding (it works in BGR).
ENCODABLE = {
    "png": {"rgb8", "bgr8", "rgba8", "mono8", "mono16", "16UC1"},
    "jpeg": {"rgb8", "bgr8", "mono8"},
}
_TO_BGR = {"rgb8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGBA2BGRA}
_FROM_BGR = {"rgb8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_BGRA2RGBA}


@dataclass(frozen=True)
class StoredImage:
    schema: str  # foxglove.RawImage or foxglove.CompressedImage
    data: bytes  # the serialized protobuf message (with our header field, when stored)


def store(image: Any, wire_header: bytes, image_format: str) -> StoredImage:
    """One `msgs.Image` as a Foxglove message carrying its wire header (see `encode`)."""
    encoded = encode(image, image_format)
    return StoredImage(encoded.schema, encoded.data + _field(wire_header))


def encode(image: Any, image_format: str) -> StoredImage:
    """One `msgs.Image` as a Foxglove message, as the recorder stores it and the live link sends it; an
    encoding the chosen format cannot hold exactly (32FC1 depth in PNG, 16-bit in JPEG) is sent RAW."""
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
    from foxglove_schemas_protobuf.RawImage_pb2 import RawImage

    from perception.recording.foxglove import frame_id_of, timestamp_of

    data = np.ascontiguousarray(image.data)
    if image_format != "raw" and image.encoding in ENCODABLE[image_format]:
        pixels = cv2.cvtColor(data, _TO_BGR[image.encoding]) if image.encoding in _TO_BGR else data
        extension, options = (
            (".png", [cv2.IMWRITE_PNG_COMPRESSION, 1])
            if image_format == "png"
            else (".jpg", [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        )
        ok, encoded = cv2.imencode(extension, pixels, options)
        if ok:
            message: Any = CompressedImage(
                timestamp=timestamp_of(image.header),
                frame_id=frame_id_of(image.header),
                data=encoded.tobytes(),
                format=image_format,
            )
            return StoredImage("foxglove.CompressedImage", message.SerializeToString())
    message = RawImage(
        timestamp=timestamp_of(image.header),
        frame_id=frame_id_of(image.header),
        width=image.width,
        height=image.height,
        encoding=image.encoding,
        step=data.strides[0],
        data=data.tobytes(),
    )
    return StoredImage("foxglove.RawImage", message.SerializeToString())


def descriptor(schema: str) -> Any:
    """The protobuf descriptor of an image schema `encode` writes (foxglove.RawImage or CompressedImage)."""
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
    from foxglove_schemas_protobuf.RawImage_pb2 import RawImage

    classes: dict[str, Any] = {"foxglove.RawImage": RawImage, "foxglove.CompressedImage": CompressedImage}
    return classes[schema].DESCRIPTOR


def wire_frames(schema: str, data: bytes | memoryview) -> list[memoryview]:
    """The wire frames (header, pixels) of a stored image, as the recorder received them."""
    fields = _fields(memoryview(data))
    header = fields.get(WIRE_HEADER_FIELD)
    if header is None:
        raise ValueError(f"a {schema} message without percept's wire header (field {WIRE_HEADER_FIELD})")
    if schema == "foxglove.RawImage":
        return [header, fields.get(6, memoryview(b""))]  # RawImage.data is field 6
    if schema != "foxglove.CompressedImage":
        raise ValueError(f"images are stored as foxglove.RawImage or foxglove.CompressedImage, not {schema}")
    from perception.runtime import wire

    described = wire.peek_fields(header)  # the pixels' dtype and shape, and the image's encoding
    array, encoding = described.get("data"), described.get("encoding", "")
    if not isinstance(array, wire.ArrayRef):
        raise ValueError("a stored image whose header names no pixel array")
    encoded = np.frombuffer(fields.get(2, memoryview(b"")), np.uint8)  # CompressedImage.data is field 2
    pixels = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError("a CompressedImage whose data does not decode")
    if encoding in _FROM_BGR:
        pixels = cv2.cvtColor(pixels, _FROM_BGR[encoding])
    pixels = np.ascontiguousarray(pixels, dtype=array.dtype).reshape(array.shape)
    return [header, memoryview(pixels.tobytes())]


def _field(payload: bytes) -> bytes:
    """A length-delimited protobuf field number WIRE_HEADER_FIELD holding `payload`."""
    return _varint(WIRE_HEADER_FIELD << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fields(view: memoryview) -> dict[int, memoryview]:
    """The length-delimited top-level fields of a protobuf message, as views into it (the pixels are
    not copied); other wire types are skipped."""
    found: dict[int, memoryview] = {}
    offset = 0
    while offset < len(view):
        key, offset = _read_varint(view, offset)
        number, kind = key >> 3, key & 7
        if kind == 0:
            _, offset = _read_varint(view, offset)
        elif kind in (1, 5):  # fixed 64 and 32 bits
            offset += 8 if kind == 1 else 4
            if offset > len(view):
                raise ValueError(f"a protobuf field {number} runs past the end of its message")
        elif kind == 2:
            size, offset = _read_varint(view, offset)
            if offset + size > len(view):
                raise ValueError(f"a protobuf field {number} runs past the end of its message")
            found[number] = view[offset : offset + size]
            offset += size
        else:
            raise ValueError(f"protobuf wire type {kind} in a stored image: expected 0, 1, 2 or 5")
    return found


def _read_varint(view: memoryview, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(view):
            raise ValueError("a protobuf message cut short inside a number")
        byte = view[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
