"""The ROS 2 bridge on real DDS: a participant of this test, declaring ROS 2's types by hand and
serialising with Cyclone's own codec, acts as a robot's camera driver and as a ROS 2 node that reads our
detections; the bridge and our detector are real processes on ZeroMQ."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import read_until

pytest.importorskip("cyclonedds")
pytest.importorskip("rosbags")

from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from perception import Node
from perception.msgs import Detections, Header, Image
from perception.ros2.types import deserialize

sys.path.insert(0, str(Path(__file__).parent))
import peer_types as ros

RELIABLE = Qos(
    Policy.Reliability.Reliable(duration(milliseconds=100)),
    Policy.History.KeepLast(10),
    Policy.DataRepresentation(use_cdrv0_representation=True),
)


def start_bridge(spawn, *parameters: str):
    """The bridge as its own process, with `NAME:=VALUE` parameters."""
    return spawn(
        "run", "perception.nodes.ros2_bridge:Ros2Bridge", *[a for p in parameters for a in ("-p", p)]
    )


def domain_for_this_test() -> int:
    """A DDS domain of its own (ROS 2 allows 0-101 on Linux), apart from other runs on the machine."""
    return 1 + (os.getpid() * 7 + int(time.time())) % 100


@pytest.fixture(scope="module")
def tabletop_frame():
    pytest.importorskip("pybullet")
    from sim.camera import CameraSpec
    from sim.frames import capture
    from sim.tabletop import TabletopParams, TabletopScene
    from sim.world import World

    world = World("tiny")
    try:
        scene = TabletopScene(
            world, TabletopParams(objects=4, classes=["mug", "duck", "cube"]), 7, CameraSpec()
        )
        return capture(scene)
    finally:
        world.close()


def ros_image(rgb: np.ndarray, stamp_ns: int) -> ros.Image:
    height, width = rgb.shape[:2]
    return ros.Image(
        header=ros.Header(ros.Time(stamp_ns // 10**9, stamp_ns % 10**9), "camera_color_optical_frame"),
        height=height,
        width=width,
        encoding="rgb8",
        is_bigendian=0,
        step=width * 3,
        data=rgb.tobytes(),
    )


def test_a_ros2_camera_driver_feeds_our_detector_and_a_ros2_node_reads_our_detections(
    context, spawn, tabletop_frame
):
    """What our detector published for the driver's frame reaches the ROS 2 node whole: the stamp, the
    frame id, every box, class and score, in vision_msgs' layout as rosbags reads it too."""
    domain = domain_for_this_test()
    bridge = start_bridge(spawn, f"domain_id:={domain}")
    spawn("run", "perception.nodes.detector:DetectorNode", "-r", "image:=/camera/image")
    ours: list[Detections] = []
    node = Node("ros2_test_listener", context=context)
    node.create_subscription(Detections, "/detections", ours.append)
    driver = DomainParticipant(domain)  # a ROS 2 camera driver
    camera = DataWriter(driver, Topic(driver, "rt/camera/image_raw", ros.Image), qos=RELIABLE)
    ros_node = DomainParticipant(domain)  # and, apart from it, a ROS 2 node that reads our detections
    results = DataReader(
        ros_node, Topic(ros_node, "rt/percept/detections", ros.Detection2DArray), qos=RELIABLE
    )
    stamp = 1_700_000_000_123_456_789
    received: list[ros.Detection2DArray] = []
    deadline = time.monotonic() + 90  # the detector loads its model; DDS discovery takes a moment
    try:
        while not (received and ours) and time.monotonic() < deadline:
            camera.write(ros_image(tabletop_frame.rgb, stamp))
            node.spin(0.3)
            received += [s for s in results.take(10) if s.detections]
    finally:
        node.destroy()
    assert received, "no Detection2DArray with detections came back: " + read_until(bridge, "never", 0.5)
    answer, published = received[0], ours[0]
    assert (answer.header.stamp.sec, answer.header.stamp.nanosec) == (stamp // 10**9, stamp % 10**9)
    assert published.header.stamp == stamp
    assert answer.header.frame_id == published.header.frame_id == "camera_color_optical_frame"
    # The same sample through ROS 2's layout as rosbags reads it (not Cyclone's codec)
    decoded = deserialize(answer.serialize(), "vision_msgs/msg/Detection2DArray")
    assert len(decoded.detections) == len(answer.detections) == len(published)
    for detection, mine in zip(decoded.detections, published, strict=True):
        hypothesis = detection.results[0].hypothesis
        cx, cy = detection.bbox.center.position.x, detection.bbox.center.position.y
        box = (
            cx - detection.bbox.size_x / 2,
            cy - detection.bbox.size_y / 2,
            cx + detection.bbox.size_x / 2,
            cy + detection.bbox.size_y / 2,
        )
        np.testing.assert_allclose(box, mine.xyxy, atol=1e-3)
        assert hypothesis.class_id == mine.class_name
        assert hypothesis.score == pytest.approx(mine.score)
        assert detection.id == ""  # not tracked
    # and they are the objects in the frame the driver sent (the detector saw the driver's pixels)
    truth = [box for box in tabletop_frame.xyxy if (box[2] - box[0]) * (box[3] - box[1]) > 400]
    matched = [max(_iou(t, d.xyxy) for d in published) > 0.5 for t in truth]
    assert sum(matched) >= len(truth) - 1, (tabletop_frame.xyxy.tolist(), published.xyxy.tolist())


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_an_encoding_we_cannot_take_is_counted_and_the_bridge_goes_on(registry, spawn, tabletop_frame):
    domain = domain_for_this_test()
    bridge = start_bridge(spawn, f"domain_id:={domain}", "wait_for_topics_s:=1.0")
    participant = DomainParticipant(domain)
    camera = DataWriter(participant, Topic(participant, "rt/camera/image_raw", ros.Image), qos=RELIABLE)
    rgb = tabletop_frame.rgb[:48, :64]
    odd = ros_image(rgb, 1)
    odd.encoding = "rgb16"  # real, but not one we take
    deadline = time.monotonic() + 30
    output = ""
    while "rgb16" not in output and time.monotonic() < deadline:
        camera.write(odd)
        output += read_until(bridge, "rgb16", 0.5)
    line = next(line for line in output.splitlines() if "rgb16" in line)
    assert "/camera/image_raw" in line and "cannot be converted" in line
    assert bridge.poll() is None  # still running


def test_a_topic_nobody_offers_is_named_in_one_line(registry, spawn):
    domain = domain_for_this_test()
    bridge = start_bridge(spawn, f"domain_id:={domain}", "wait_for_topics_s:=1.0")
    output = read_until(bridge, "no writer", 30)
    assert "/camera/image_raw: no writer on ROS 2 domain" in output, output
    assert bridge.poll() is None


def refused_at_start(spawn, topics: str, told: str) -> str:
    """The output of a bridge started with `topics` once it has said `told`; it must end, failed, with
    no traceback."""
    bridge = start_bridge(spawn, topics)
    output = read_until(bridge, told, 30)
    bridge.wait(timeout=30)
    assert bridge.returncode != 0
    assert "Traceback" not in output
    return output


def test_an_unknown_ros_type_ends_the_bridge_with_one_line_naming_it(registry, spawn):
    topics = "topics:=[{ros: /scan, type: sensor_msgs/msg/LaserScann, ours: /scan}]"
    output = refused_at_start(spawn, topics, "LaserScann")
    assert "unknown ROS 2 message type 'sensor_msgs/msg/LaserScann'" in output, output


def test_ros2_topics_lists_what_a_domain_offers_with_ros_type_names():
    from conftest import percept

    domain = domain_for_this_test()
    participant = DomainParticipant(domain)
    writer = DataWriter(participant, Topic(participant, "rt/camera/image_raw", ros.Image), qos=RELIABLE)
    for _ in range(4):  # DDS discovery takes longer on a busy machine: listen again rather than longer
        result = percept("ros2", "topics", "--domain-id", str(domain), "--wait", "1.5")
        assert result.returncode == 0, result.stderr
        if "/camera/image_raw" in result.stdout:
            break
    assert "/camera/image_raw [sensor_msgs/msg/Image]" in result.stdout, result.stdout
    del writer


def test_a_frame_opencv_cannot_convert_is_counted_and_the_next_frame_still_comes(
    context, spawn, tabletop_frame
):
    """A driver's 4:2:2 frame of odd width (OpenCV raises on it; that ended the bridge once): named once,
    counted, and the bridge carries on with the good frames after it."""
    from perception.ros2.convert import header_to_ros, image_to_ros
    from perception.ros2.dds import Participant
    from perception.ros2.types import serialize, store

    domain = domain_for_this_test()
    bridge = start_bridge(spawn, f"domain_id:={domain}")
    frames: list[Image] = []
    node = Node("ros2_garbage_listener", context=context)
    node.create_subscription(Image, "/camera/image", frames.append)
    peer = Participant(domain)
    write = peer.writer("/camera/image_raw", "sensor_msgs/msg/Image")
    good = serialize(
        image_to_ros(Image(Header(stamp=42, frame_id="cam"), tabletop_frame.rgb[:48, :64].copy(), "rgb8")),
        "sensor_msgs/msg/Image",
    )
    odd = store().types["sensor_msgs/msg/Image"](
        header=header_to_ros(Header(stamp=41)), height=48, width=63, encoding="yuv422", is_bigendian=0,
        step=126, data=np.zeros(48 * 126, np.uint8),
    )  # fmt: skip
    try:
        output = ""
        deadline = time.monotonic() + 30
        while "OpenCV cannot convert it" not in output and time.monotonic() < deadline:
            write(serialize(odd, "sensor_msgs/msg/Image"))
            node.spin(0.2)
            output += read_until(bridge, "OpenCV cannot", 0.2)
        assert "image 63 x 48 yuv422: OpenCV cannot convert it" in output, output
        deadline = time.monotonic() + 20
        while not frames and time.monotonic() < deadline:
            write(good)
            node.spin(0.2)
    finally:
        node.destroy()
        peer.close()
    assert bridge.poll() is None, read_until(bridge, "never", 0.5)
    assert frames and frames[-1].header.stamp == 42


def test_a_latched_sample_written_before_the_reader_is_delivered():
    """transient_local: a camera_info or pose latched before the bridge started still comes in."""
    from perception.msgs import CameraInfo
    from perception.ros2.convert import camera_info_to_ros
    from perception.ros2.dds import Participant
    from perception.ros2.types import serialize

    domain = domain_for_this_test()
    driver, bridge_side = Participant(domain), Participant(domain)
    info = CameraInfo(Header(stamp=7, frame_id="cam"), 64, 48, np.diag([50.0, 50.0, 1.0]))
    driver.writer("/camera/camera_info", "sensor_msgs/msg/CameraInfo", "transient_local")(
        serialize(camera_info_to_ros(info), "sensor_msgs/msg/CameraInfo")
    )
    time.sleep(0.5)  # written and discovered before the reader exists
    received: list[bytes] = []
    bridge_side.reader(
        "/camera/camera_info", "sensor_msgs/msg/CameraInfo", received.append, "transient_local"
    )
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.close()
    bridge_side.close()
    assert len(received) == 1


def camera_info_cdr(stamp: int) -> bytes:
    from perception.msgs import CameraInfo
    from perception.ros2.convert import camera_info_to_ros
    from perception.ros2.types import serialize

    info = CameraInfo(Header(stamp=stamp, frame_id="cam"), 64, 48, np.diag([50.0, 50.0, 1.0]))
    return serialize(camera_info_to_ros(info), "sensor_msgs/msg/CameraInfo")


def test_a_camera_info_latched_before_the_bridge_started_comes_in_and_the_reader_follows_its_writers(
    context, spawn
):
    """A row with no qos reads as its writers offer, as `ros2 topic echo` does: a driver's camera_info
    published once (reliable, transient_local) before the bridge started still comes in, and reaches a
    node of ours that subscribes after the bridge passed it on; a best-effort writer that appears later
    turns the reader to sensor_data, which takes both."""
    from perception.msgs import CameraInfo
    from perception.ros2.dds import Participant

    domain = domain_for_this_test()
    driver = Participant(domain)
    driver.writer("/camera/camera_info", "sensor_msgs/msg/CameraInfo", "transient_local")(camera_info_cdr(7))
    row = "{ros: /camera/camera_info, type: sensor_msgs/msg/CameraInfo, ours: /camera/camera_info}"
    bridge = start_bridge(spawn, f"domain_id:={domain}", f"topics:=[{row}]")
    other = Participant(domain)
    infos: list[CameraInfo] = []
    node = Node("ros2_info_listener", context=context)
    try:
        output = read_until(bridge, "reading as transient_local", 30)
        assert "/camera/camera_info: reading as transient_local, as its writers offer" in output, output
        time.sleep(1.0)  # passed on by now, to nobody
        node.create_subscription(CameraInfo, "/camera/camera_info", infos.append)
        deadline = time.monotonic() + 20
        while not infos and time.monotonic() < deadline:
            node.spin(0.2)
        assert infos and infos[0].header.stamp == 7, read_until(bridge, "never", 0.5)
        write = other.writer("/camera/camera_info", "sensor_msgs/msg/CameraInfo", "sensor_data")
        output = read_until(bridge, "reading as sensor_data", 30)
        assert "/camera/camera_info: reading as sensor_data, as its writers offer" in output, output
        deadline = time.monotonic() + 20
        while infos[-1].header.stamp != 8 and time.monotonic() < deadline:
            write(camera_info_cdr(8))
            node.spin(0.2)
        assert infos[-1].header.stamp == 8
        assert "New publisher discovered" not in output  # adapting: no warning to act on
    finally:
        node.destroy()
        driver.close()
        other.close()
    assert bridge.poll() is None


def test_a_peer_whose_qos_cannot_match_is_named_once_with_the_qos_that_would(registry, spawn):
    """rclcpp's words, both ways: our reliable reader meets a best-effort camera (a row's own qos), and
    a ROS node asks reliable of our best-effort writer."""
    from perception.ros2.dds import Participant

    domain = domain_for_this_test()
    rows = (
        "topics:=[{ros: /camera/image_raw, type: sensor_msgs/msg/Image, ours: /camera/image, qos: reliable},"
        " {ours: /detections, ros: /percept/detections, type: vision_msgs/msg/Detection2DArray,"
        " qos: sensor_data}]"
    )
    bridge = start_bridge(spawn, f"domain_id:={domain}", rows)
    peer = Participant(domain)
    peer.writer("/camera/image_raw", "sensor_msgs/msg/Image", "sensor_data")
    peer.reader("/percept/detections", "vision_msgs/msg/Detection2DArray", lambda cdr: None, "reliable")
    try:
        output = ""
        deadline = time.monotonic() + 30
        while output.count("incompatible QoS") < 2 and time.monotonic() < deadline:
            output += read_until(bridge, "incompatible QoS", 1.0)
        time.sleep(1.5)
        output += read_until(bridge, "never", 0.5)
    finally:
        peer.close()
    lines = [line for line in output.splitlines() if "incompatible QoS" in line]
    assert len(lines) == 2, output  # once a topic
    reading = next(line for line in lines if "/camera/image_raw" in line)
    assert (
        "New publisher discovered on topic /camera/image_raw, offering incompatible QoS. No messages will"
        " be received from it. Last incompatible policy: RELIABILITY; qos: sensor_data" in reading
    ), reading
    writing = next(line for line in lines if "/percept/detections" in line)
    assert (
        "New subscription discovered on topic /percept/detections, requesting incompatible QoS. No messages"
        " will be sent to it. Last incompatible policy: RELIABILITY; qos: reliable in its row serves it"
        in writing
    ), writing
    assert bridge.poll() is None


def test_a_ros_name_with_a_space_ends_the_bridge_with_one_line_and_dds_refusals_are_one_line(registry, spawn):
    """'/robot 1/image' dumped Cyclone's DDSException traceback: the name is checked by ROS 2's rules
    first, and what DDS itself refuses becomes one line too."""
    from perception.errors import PerceptError
    from perception.ros2.dds import Participant

    topics = "topics:=[{ros: '/robot 1/image', type: sensor_msgs/msg/Image, ours: /a}]"
    output = refused_at_start(spawn, topics, "not allowed")
    assert "found '/robot 1/image': ' ' not allowed" in output, output
    participant = Participant(domain_for_this_test())
    try:
        with pytest.raises(
            PerceptError, match=r"^topic /robot 1/image: Cyclone DDS refused it \(\[DDS_RETCODE"
        ):
            participant.reader("/robot 1/image", "sensor_msgs/msg/Image", lambda cdr: None)
    finally:
        participant.close()


def test_samples_dds_reports_lost_are_counted_by_the_listener_the_bridges_readers_have():
    """Cyclone reports SAMPLE_LOST where a reader's instance refuses a sample (ordered by source time, an
    older one than it holds); the listener the bridge's readers get counts it, on Cyclone's thread.
    (Frames a best-effort stream loses on the network are not reported by Cyclone 11.0: see Events.)"""
    from perception.ros2.dds import Events

    domain = domain_for_this_test()
    participant = DomainParticipant(domain)
    by_source_time = Qos(
        Policy.Reliability.Reliable(duration(milliseconds=100)),
        Policy.History.KeepLast(10),
        Policy.DestinationOrder.BySourceTimestamp,
        Policy.DataRepresentation(use_cdrv0_representation=True),
    )
    topic = Topic(participant, "rt/camera/image_raw", ros.Image)
    events = Events()
    reader = DataReader(participant, topic, qos=by_source_time, listener=events.listener())
    writer = DataWriter(participant, topic, qos=by_source_time)
    image = ros_image(np.zeros((2, 2, 3), np.uint8), 1)
    now = time.time_ns()
    writer.write(image, timestamp=now)
    writer.write(image, timestamp=now - 10**9)  # older than the one the reader holds
    writer.write(image, timestamp=now - 2 * 10**9)
    deadline = time.monotonic() + 10
    while events.counts() != (2, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events.counts() == (2, 0)
    assert len(reader.take(10)) == 1
