"""Compact recordings: chunks compressed, each image stored once, `percept bag info`, and recordings
written before these changes still play."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import percept

from perception import msgs
from perception.errors import PerceptError
from perception.recording.mcap_file import McapRecorder, describe, read, topics_of
from perception.runtime import wire

START = 1_700_000_000_000_000_000


def frames_of(topic: str, msg: msgs.Message, n: int) -> list[bytes]:
    return [bytes(memoryview(f).cast("B")) for f in wire.encode(topic.encode(), msg, "cam", n)[1:]]


def write_demo_like(
    path, compression="zstd", image_format="raw", count=10, chunk_size=4 * 2**20
) -> dict[str, list[list[bytes]]]:
    """A camera's colour, depth and detections at 10 Hz; returns the wire frames written per topic."""
    rng = np.random.default_rng(1)
    sent: dict[str, list[list[bytes]]] = {"/camera/image": [], "/camera/depth": [], "/detections": []}
    recorder = McapRecorder(path, chunk_size, compression=compression, image_format=image_format)
    for i in range(count):
        header = msgs.Header(stamp=START + i * 100_000_000, frame_id="camera", seq=i)
        smooth = np.dstack([np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))] * 3)
        noisy = np.clip(smooth + rng.normal(0, 2, smooth.shape), 0, 255).astype(np.uint8)
        depth = np.full((48, 64), 0.7, np.float32) + rng.normal(0, 0.001, (48, 64)).astype(np.float32)
        messages = {
            "/camera/image": msgs.Image(header, noisy),
            "/camera/depth": msgs.Image(header, depth, encoding="32FC1"),
            "/detections": msgs.Detections(header, [[1, 2, 30, 40]], [0.9], [2], ["mug"]),
        }
        for topic, msg in messages.items():
            frames = frames_of(topic, msg, i + 1)
            sent[topic].append(frames)
            recorder.write(topic, msg.TYPE_NAME, frames, header.stamp, header.stamp)
    recorder.close()
    return sent


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_every_compression_plays_back_byte_for_byte(tmp_path, compression):
    path = tmp_path / f"{compression}.mcap"
    sent = write_demo_like(path, compression)
    for topic, expected in sent.items():
        assert [[bytes(f) for f in item.frames] for item in read(path, [topic])] == expected
    assert topics_of(path) == {
        "/camera/image": "percept/Image",
        "/camera/depth": "percept/Image",
        "/detections": "percept/Detections",
    }
    assert describe(path).compression == compression


def test_images_are_stored_once_and_compression_makes_the_file_smaller(tmp_path):
    write_demo_like(tmp_path / "zstd.mcap", "zstd")
    write_demo_like(tmp_path / "none.mcap", "none")
    pixels = 10 * (48 * 64 * 3 + 48 * 64 * 4)  # the colour and depth bytes written
    plain = (tmp_path / "none.mcap").stat().st_size
    assert pixels < plain < 1.2 * pixels  # once, not twice (the view used to be a second copy)
    assert (tmp_path / "zstd.mcap").stat().st_size < 0.85 * plain  # noisy pixels: zstd takes a fifth off


def test_png_is_lossless_and_jpeg_is_close(tmp_path):
    sent = write_demo_like(tmp_path / "png.mcap", image_format="png")
    assert [[bytes(f) for f in i.frames] for i in read(tmp_path / "png.mcap", ["/camera/image"])] == sent[
        "/camera/image"
    ]
    write_demo_like(tmp_path / "jpeg.mcap", image_format="jpeg")
    for item, frames in zip(
        read(tmp_path / "jpeg.mcap", ["/camera/image"]), sent["/camera/image"], strict=True
    ):
        got = wire.decode([b"/camera/image", *item.frames]).msg
        original = wire.decode([b"/camera/image", *frames]).msg
        assert got.header == original.header and np.abs(got.data.astype(int) - original.data).mean() < 3
    # depth (32FC1) cannot be a PNG or a JPEG: it stays exact in every format
    depth = [[bytes(f) for f in i.frames] for i in read(tmp_path / "jpeg.mcap", ["/camera/depth"])]
    assert depth == sent["/camera/depth"]


def test_bad_choices_are_named(tmp_path):
    with pytest.raises(PerceptError, match=r"compression: expected one of zstd, lz4, none, found 'bz2'"):
        McapRecorder(tmp_path / "a.mcap", compression="bz2")
    with pytest.raises(PerceptError, match=r"image format: expected one of raw, png, jpeg, found 'webp'"):
        McapRecorder(tmp_path / "b.mcap", image_format="webp")


def test_a_recording_from_before_images_were_stored_once_still_plays(tmp_path):
    """The old layout: every image on a percept-wire channel of ours, a RawImage view beside it, no
    compression. Play reads our channel and skips the view."""
    from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
    from mcap.writer import CompressionType, Writer

    from perception.recording.foxglove import schema_data
    from perception.recording.mcap_file import ENCODING, pack

    path = tmp_path / "old.mcap"
    image = msgs.Image(
        msgs.Header(stamp=START, frame_id="cam", seq=3), np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    )
    frames = frames_of("/camera/image", image, 5)
    with open(path, "wb") as stream:
        writer = Writer(stream, compression=CompressionType.NONE)
        writer.start(profile="percept", library="percept")
        ours = writer.register_channel(
            "/camera/image", ENCODING, writer.register_schema("percept/Image", ENCODING, b"percept/Image")
        )
        view_schema = writer.register_schema(
            "foxglove.RawImage", "protobuf", schema_data(RawImage.DESCRIPTOR)
        )
        view = writer.register_channel("/foxglove/camera/image", "protobuf", view_schema)
        writer.add_message(ours, START, pack(frames), START)
        raw = RawImage(width=2, height=2, encoding="rgb8", step=6, data=image.data.tobytes())
        writer.add_message(view, START, raw.SerializeToString(), START)
        writer.finish()
    assert [[bytes(f) for f in i.frames] for i in read(path)] == [frames]
    info = describe(path)
    assert info.compression == "none" and [(t.topic, t.stored_as) for t in info.topics] == [
        ("/camera/image", "percept-wire"),
        ("/foxglove/camera/image", "view"),
    ]


def test_bag_info_like_ros2_bag_info(tmp_path):
    write_demo_like(tmp_path / "demo.mcap")
    result = percept("bag", "info", str(tmp_path / "demo.mcap"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Storage id:        mcap (chunks compressed: zstd)" in out
    assert "Duration:          0.900s" in out
    assert "Messages:          40 (30 on our topics, 10 Foxglove views)" in out  # as `record` counts
    assert "Start:             Nov 14 2023 22:13:20.000000 (1700000000.000000)" in out
    assert (
        "Topic: /camera/image        | Type: percept/Image | Count: 10 | Rate: 10.0 Hz | Stored as: foxglove.RawImage on /foxglove/camera/image"
        in out
    )
    assert "Topic: /detections          | Type: percept/Detections | Count: 10 | Rate: 10.0 Hz" in out
    assert "Foxglove views:" in out and "/foxglove/detections" in out


def test_bag_info_on_a_torn_a_foreign_and_a_missing_file(tmp_path):
    write_demo_like(tmp_path / "whole.mcap", compression="none", count=40, chunk_size=2**16)
    whole = (tmp_path / "whole.mcap").read_bytes()
    (tmp_path / "torn.mcap").write_bytes(whole[: len(whole) * 2 // 3])
    torn = percept("bag", "info", str(tmp_path / "torn.mcap"))
    assert torn.returncode == 0 and "Torn:              the file ends early" in torn.stdout
    counted = describe(tmp_path / "torn.mcap")
    assert 0 < counted.messages < 120 and counted.torn
    (tmp_path / "notes.txt").write_text("not a recording")
    foreign = percept("bag", "info", str(tmp_path / "notes.txt"))
    assert foreign.returncode == 1
    assert (
        foreign.stderr.strip()
        == f"percept: error: recording {tmp_path / 'notes.txt'}: not an MCAP file (its first bytes are not MCAP's magic)"
    )
    missing = percept("bag", "info", str(tmp_path / "none.mcap"))
    assert missing.returncode == 1 and missing.stderr.strip().endswith("none.mcap: no such file")


def test_a_recording_with_an_unknown_compression_is_named_in_one_line(tmp_path):
    write_demo_like(tmp_path / "lz4.mcap", compression="lz4")
    data = (tmp_path / "lz4.mcap").read_bytes()
    # MCAP names a chunk's compression as a length-prefixed string; make it one nobody reads.
    (tmp_path / "bz2.mcap").write_bytes(data.replace(b"\x03\x00\x00\x00lz4", b"\x03\x00\x00\x00bz2"))
    expected = (
        f"recording {tmp_path / 'bz2.mcap'}: chunks compressed with 'bz2'; expected one of zstd, lz4, none"
    )
    with pytest.raises(PerceptError) as caught:
        describe(tmp_path / "bz2.mcap")
    assert str(caught.value) == expected
    with pytest.raises(PerceptError) as caught:
        list(read(tmp_path / "bz2.mcap"))
    assert str(caught.value) == expected
    info = percept("bag", "info", str(tmp_path / "bz2.mcap"))
    assert info.returncode == 1 and info.stderr.strip() == f"percept: error: {expected}"


def test_bag_info_counts_the_compression_of_a_torn_compressed_file(tmp_path):
    write_demo_like(tmp_path / "whole.mcap", compression="zstd", count=40, chunk_size=2**16)
    whole = (tmp_path / "whole.mcap").read_bytes()
    (tmp_path / "torn.mcap").write_bytes(whole[: len(whole) // 2])
    info = describe(tmp_path / "torn.mcap")
    assert info.torn and info.compression == "zstd" and info.messages > 0


def test_an_image_this_version_cannot_read_is_kept_as_it_came(tmp_path):
    import msgpack

    image = msgs.Image(msgs.Header(stamp=START, seq=1), np.zeros((2, 2, 3), np.uint8))
    frames = frames_of("/camera/image", image, 1)
    header = msgpack.unpackb(frames[0], strict_map_key=False, ext_hook=msgpack.ExtType)
    header["version"] = 99  # a later schema of percept/Image
    newer = [msgpack.packb(header), frames[1]]
    recorder = McapRecorder(tmp_path / "newer.mcap")
    recorder.write("/camera/image", "percept/Image", newer, START, START)
    recorder.close()
    assert recorder.images_kept_as_wire == 1
    assert [[bytes(f) for f in item.frames] for item in read(tmp_path / "newer.mcap")] == [newer]


def test_a_stored_image_that_does_not_decode_is_left_out_and_reading_goes_on(tmp_path):
    sent = write_demo_like(tmp_path / "plain.mcap", compression="none", count=3)
    data = (tmp_path / "plain.mcap").read_bytes()
    tag = b"\xc2\xa9\x07"  # the protobuf key of our header's field (15000, length-delimited)
    (tmp_path / "bad.mcap").write_bytes(data.replace(tag, b"\xc2\xa9\x08", 1))  # the first image loses it
    skipped: list[str] = []
    torn: list[str] = []
    images = [
        [bytes(f) for f in i.frames] for i in read(tmp_path / "bad.mcap", ["/camera/image"], torn, skipped)
    ]
    assert images == sent["/camera/image"][1:] and not torn
    assert len(skipped) == 1 and "without percept's wire header" in skipped[0]
