"""rosbag2 interchange: a bag written by rosbags (as `ros2 bag record` writes one) converts and plays
into our graph; our recording converts and reads back with rosbags in ROS 2's layouts."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import percept, spin_until

pytest.importorskip("rosbags")

from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from perception import Node
from perception.msgs import CameraInfo, Detections, Header, Image
from perception.recording.mcap_file import McapRecorder, topics_of
from perception.ros2 import convert
from perception.ros2.types import deserialize, serialize, store
from perception.runtime import wire

T = store().types


def write_ros_bag(path, storage) -> list[np.ndarray]:
    """10 camera frames at 10 Hz with camera info, and a topic of a type we do not take."""
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(10)]
    writer = Writer(path, version=9, storage_plugin=storage)
    writer.open()
    try:
        images = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store())
        infos = writer.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=store())
        chatter = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store())
        start = 1_700_000_000_000_000_000
        for i, pixels in enumerate(frames):
            stamp = start + i * 100_000_000
            header = T["std_msgs/msg/Header"](stamp=convert.time_from_ns(stamp), frame_id="cam")
            image = T["sensor_msgs/msg/Image"](
                header=header,
                height=24,
                width=32,
                encoding="bgr8",
                is_bigendian=0,
                step=96,
                data=pixels.reshape(-1),
            )
            writer.write(images, stamp, serialize(image, "sensor_msgs/msg/Image"))
            info = convert.camera_info_to_ros(
                CameraInfo(Header(stamp, "cam"), 32, 24, np.diag([30.0, 30.0, 1.0]))
            )
            writer.write(infos, stamp, serialize(info, "sensor_msgs/msg/CameraInfo"))
            writer.write(
                chatter, stamp, serialize(T["std_msgs/msg/String"](data=f"hi {i}"), "std_msgs/msg/String")
            )
    finally:
        writer.close()
    return frames


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3], ids=["mcap", "sqlite3"])
def test_a_rosbag2_bag_converts_and_plays_into_our_graph(tmp_path, context, spawn, storage):
    frames = write_ros_bag(tmp_path / "ros_bag", storage)
    ours = tmp_path / "ours.mcap"
    result = percept(
        "bag", "convert", str(tmp_path / "ros_bag"), str(ours), "-r", "/camera/image_raw:=/camera/image"
    )
    assert result.returncode == 0, result.stderr
    assert "20 messages on 2 topics; skipped 10 std_msgs/msg/String" in result.stdout
    assert topics_of(ours) == {"/camera/image": "percept/Image", "/camera/camera_info": "percept/CameraInfo"}
    received: list[tuple[float, Image]] = []
    with Node("bag_viewer", context=context) as node:
        node.create_subscription(Image, "/camera/image", lambda m: received.append((time.monotonic(), m)))
        player = spawn("play", str(ours), "--topics", "/camera/image", "--wait", "60")
        spin_until(node, lambda: len(received) == 10, timeout_s=30, what="the frames of the bag")
        player.wait(timeout=20)
    for (_, image), pixels in zip(received, frames, strict=True):
        assert image.encoding == "bgr8"
        np.testing.assert_array_equal(image.data, pixels)
    assert received[3][1].header.stamp == 1_700_000_000_300_000_000
    gaps = np.diff([t for t, _ in received])
    assert abs(float(np.median(gaps)) - 0.1) < 0.03, gaps  # the bag's 10 Hz


def test_our_recording_converts_to_a_rosbag2_bag_that_rosbags_reads(tmp_path):
    recording = tmp_path / "run.mcap"
    recorder = McapRecorder(recording)
    sent_images, sent_boxes = [], []
    for i in range(5):
        header = Header(stamp=1_700_000_000_000_000_000 + i * 33_000_000, frame_id="camera")
        image = Image(header, np.full((6, 8, 3), i, np.uint8), "rgb8")
        boxes = Detections(header, xyxy=[[1, 2, 5, 6]], scores=[0.8], class_ids=[2], class_names=["mug"])
        for topic, msg in (("/camera/image", image), ("/detections", boxes)):
            recorder.write(
                topic, msg.TYPE_NAME, wire.encode(topic.encode(), msg)[1:], header.stamp, header.stamp
            )
        sent_images.append(image)
        sent_boxes.append(boxes)
    recorder.close()
    out = tmp_path / "for_ros"
    result = percept("bag", "convert", str(recording), str(out))
    assert result.returncode == 0, result.stderr
    assert "percept -> rosbag2" in result.stdout and "10 messages on 2 topics" in result.stdout
    with Reader(out) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types == {
            "/camera/image": "sensor_msgs/msg/Image",
            "/detections": "vision_msgs/msg/Detection2DArray",
        }
        got: dict[str, list] = {"/camera/image": [], "/detections": []}
        for connection, timestamp, raw in reader.messages():
            got[connection.topic].append((timestamp, deserialize(raw, connection.msgtype)))
    for (timestamp, image), original in zip(got["/camera/image"], sent_images, strict=True):
        assert timestamp == original.header.stamp
        assert (image.width, image.height, image.encoding, image.step) == (8, 6, "rgb8", 24)
        np.testing.assert_array_equal(np.asarray(image.data).reshape(6, 8, 3), original.data)
    first = got["/detections"][0][1].detections[0]
    assert first.results[0].hypothesis.class_id == "mug"
    assert (first.bbox.center.position.x, first.bbox.size_x) == (3.0, 4.0)


def test_convert_names_what_it_cannot_read(tmp_path):
    (tmp_path / "empty").mkdir()
    result = percept("bag", "convert", str(tmp_path / "empty"), str(tmp_path / "x.mcap"))
    assert result.returncode != 0
    assert "expected a rosbag2 folder (with metadata.yaml) or one of our .mcap recordings" in result.stderr
    assert "Traceback" not in result.stderr
    notes = tmp_path / "notes.txt"  # a file, but no recording: it wrote a bag of 0 messages and exit 0
    notes.write_text("not a recording")
    result = percept("bag", "convert", str(notes), str(tmp_path / "out"))
    assert result.returncode == 1 and not (tmp_path / "out").exists()
    assert f"recording {notes}: not an MCAP file" in result.stderr and "Traceback" not in result.stderr


def test_a_bag_with_nothing_we_take_converts_to_an_empty_recording_and_says_so(tmp_path):
    writer = Writer(tmp_path / "joints", version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    chatter = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store())
    writer.write(chatter, 1, serialize(T["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    writer.close()
    result = percept("bag", "convert", str(tmp_path / "joints"), str(tmp_path / "x.mcap"))
    assert result.returncode == 0, result.stderr
    assert "0 messages on 0 topics; skipped 1 std_msgs/msg/String" in result.stdout


def test_a_conversion_never_replaces_a_file_either_way(tmp_path):
    """rosbag2 refused an existing folder; our side replaced an existing recording silently."""
    writer = Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    writer.close()
    earlier = tmp_path / "run.mcap"
    earlier.write_bytes(b"an earlier recording")
    result = percept("bag", "convert", str(tmp_path / "bag"), str(earlier))
    assert result.returncode == 1 and f"{earlier}: exists (the conversion writes a new file)" in result.stderr
    assert earlier.read_bytes() == b"an earlier recording"


def write_image_bag(path, topics: list[str], encoding: str, size: int, step: int, data_bytes: int) -> None:
    """One sensor_msgs/Image of `size` x `size` pixels on each topic, with the row step and data length
    given (a bag from outside, right or wrong)."""
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    for topic in topics:
        connection = writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=store())
        image = T["sensor_msgs/msg/Image"](
            header=T["std_msgs/msg/Header"](stamp=convert.time_from_ns(1), frame_id="cam"),
            height=size, width=size, encoding=encoding, is_bigendian=0, step=step,
            data=np.zeros(data_bytes, np.uint8),
        )  # fmt: skip
        writer.write(connection, 1, serialize(image, "sensor_msgs/msg/Image"))
    writer.close()


def test_convert_names_a_mistyped_remapping_a_bare_bag_file_and_a_topic_our_nodes_refuse(tmp_path):
    bag = tmp_path / "bag"
    write_ros_bag(bag, StoragePlugin.MCAP)
    out = tmp_path / "x.mcap"
    mistyped = percept("bag", "convert", str(bag), str(out), "-r", "/camera/imag:=/camera/image")
    assert mistyped.returncode == 1 and not out.exists()
    assert mistyped.stderr == (
        f"percept: error: remapping /camera/imag:=/camera/image: {bag} has no topic /camera/imag; its "
        "topics: /camera/camera_info, /camera/image_raw, /chatter\n"
    )
    (inside,) = bag.glob("*.mcap")
    bare = percept("bag", "convert", str(inside), str(out))
    assert bare.returncode == 1 and "one file of a rosbag2 bag; give the bag's folder" in bare.stderr
    folder = percept("bag", "info", str(bag))
    assert folder.returncode == 1 and "a folder, where an MCAP file was expected" in folder.stderr
    digits = tmp_path / "digits"
    write_image_bag(digits, ["/depth/16uc1"], "16UC1", size=2, step=4, data_bytes=8)
    refused = percept("bag", "convert", str(digits), str(out))
    assert refused.returncode == 1 and not out.exists()
    assert "topic /depth/16uc1: not a name our nodes can subscribe to" in refused.stderr
    assert "rename it with -r /depth/16uc1:=/a_name" in refused.stderr
    renamed = percept("bag", "convert", str(digits), str(out), "-r", "/depth/16uc1:=/depth/raw")
    assert renamed.returncode == 0 and "/depth/raw [percept/Image]" in renamed.stdout


def test_a_failed_conversion_leaves_no_file_and_refusals_are_all_counted(tmp_path):
    bag = tmp_path / "bag"
    write_ros_bag(bag, StoragePlugin.MCAP)
    (inside,) = bag.glob("*.mcap")
    inside.write_bytes(inside.read_bytes()[:-50])  # cut short: its summary and end magic gone
    out = tmp_path / "x.mcap"
    for _ in range(2):  # the first failure left a partial file, which the second found "exists"
        failed = percept("bag", "convert", str(bag), str(out))
        assert failed.returncode == 1 and "rosbags cannot read this bag" in failed.stderr
        assert not out.exists()
    bad = tmp_path / "bad"
    # Five topics, each image short of its data, each a different reason: three named, all counted.
    write_image_bag(bad, [f"/short{i}" for i in range(5)], "rgb8", size=4, step=12, data_bytes=10)
    result = percept("bag", "convert", str(bad), str(out))
    assert result.returncode == 0, result.stderr
    assert (
        "0 messages on 0 topics; refused 5: 1 (/short0: image 4 x 4 rgb8, step 12: expected" in result.stdout
    )
    assert ", 2 more for 2 other reason(s)" in result.stdout
