"""Images stored once, in Foxglove's image schemas with our wire header inside: play gets back the exact
wire frames for raw and PNG, the decoded pixels for JPEG, and Foxglove's own decoder reads them."""

from __future__ import annotations

import re

import numpy as np
import pytest
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.RawImage_pb2 import RawImage

from perception import msgs
from perception.recording.images import WIRE_HEADER_FIELD, store, wire_frames
from perception.runtime import wire

H = msgs.Header(stamp=1_700_000_000_000_000_001, frame_id="camera", seq=7)
RNG = np.random.default_rng(3)
SAMPLES = {
    "rgb8": RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8),
    "bgr8": RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8),
    "mono8": RNG.integers(0, 256, (48, 64), dtype=np.uint8),
    "16UC1": RNG.integers(0, 65536, (48, 64), dtype=np.uint16),
    "32FC1": RNG.random((48, 64)).astype(np.float32),
}


def wire_of(encoding: str) -> list[bytes]:
    image = msgs.Image(H, SAMPLES[encoding], encoding=encoding)
    return [bytes(memoryview(f).cast("B")) for f in wire.encode(b"/camera/image", image, "pub", 41)[1:]]


@pytest.mark.parametrize("image_format", ["raw", "png"])
@pytest.mark.parametrize("encoding", list(SAMPLES))
def test_lossless_formats_give_back_the_wire_frames_byte_for_byte(encoding, image_format):
    frames = wire_of(encoding)
    stored = store(wire.decode([b"/camera/image", *frames]).msg, frames[0], image_format)
    expected_schema = (
        "foxglove.RawImage" if image_format == "raw" or encoding == "32FC1" else "foxglove.CompressedImage"
    )
    assert stored.schema == expected_schema
    assert [bytes(f) for f in wire_frames(stored.schema, stored.data)] == frames
    if encoding == "rgb8" and image_format == "png":  # random pixels do not compress: the size is honest
        assert len(stored.data) < 1.1 * len(frames[1])


def test_jpeg_is_smaller_and_close_and_keeps_the_wire_header():
    smooth = np.dstack([np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))] * 3)
    image = msgs.Image(H, smooth, encoding="rgb8")
    frames = [bytes(memoryview(f).cast("B")) for f in wire.encode(b"/camera/image", image, "pub", 41)[1:]]
    stored = store(image, frames[0], "jpeg")
    assert stored.schema == "foxglove.CompressedImage" and len(stored.data) < len(frames[1]) / 4
    header, pixels = wire_frames(stored.schema, stored.data)
    assert bytes(header) == frames[0]
    back = wire.decode([b"/camera/image", header, pixels]).msg
    assert back.data.shape == smooth.shape and np.abs(back.data.astype(int) - smooth).max() <= 8
    assert wire.peek_sequence([b"/camera/image", header]) == ("pub", 41)


def test_foxglove_reads_the_stored_image_and_skips_our_field():
    frames = wire_of("rgb8")
    raw = store(wire.decode([b"/camera/image", *frames]).msg, frames[0], "raw")
    decoded = RawImage.FromString(raw.data)
    assert (decoded.width, decoded.height, decoded.encoding, decoded.step) == (64, 48, "rgb8", 192)
    assert decoded.data == frames[1] and decoded.frame_id == "camera"
    assert decoded.timestamp.ToNanoseconds() == H.stamp
    png = store(wire.decode([b"/camera/image", *frames]).msg, frames[0], "png")
    assert CompressedImage.FromString(png.data).format == "png"


def test_a_message_without_our_header_or_cut_short_is_named():
    plain = RawImage(width=1, height=1, encoding="mono8", step=1, data=b"\x00").SerializeToString()
    with pytest.raises(
        ValueError, match=re.escape(f"without percept's wire header (field {WIRE_HEADER_FIELD})")
    ):
        wire_frames("foxglove.RawImage", plain)
    frames = wire_of("mono8")
    stored = store(wire.decode([b"/camera/image", *frames]).msg, frames[0], "raw")
    with pytest.raises(ValueError, match=r"runs past the end|cut short"):
        wire_frames(stored.schema, stored.data[:-5])
