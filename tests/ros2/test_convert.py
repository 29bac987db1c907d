"""Our messages to and from ROS 2's layouts, on arrays alone (no DDS): every encoding we take, rows with
padding, big-endian depth, compressed images, and what goes out read back through rosbags' CDR."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")

from perception.errors import PerceptError
from perception.msgs import CameraInfo, Detections, Grasps, Header, Image, Pose, Tracks
from perception.ros2 import convert
from perception.ros2.mapping import DEFAULT_TOPICS, parse_topics
from perception.ros2.types import check_type, deserialize, serialize, store

T = store().types
HEADER = Header(stamp=1_700_000_000_987_654_321, frame_id="cam")


def ros_image(pixels: np.ndarray, encoding: str, pad: int = 0, big_endian: bool = False):
    height, width = pixels.shape[:2]
    rows = pixels.astype(pixels.dtype.newbyteorder(">")) if big_endian else pixels
    row_bytes = rows.reshape(height, -1).view(np.uint8).reshape(height, -1)
    padded = np.zeros((height, row_bytes.shape[1] + pad), np.uint8)
    padded[:, : row_bytes.shape[1]] = row_bytes
    msg = T["sensor_msgs/msg/Image"](
        header=convert.header_to_ros(HEADER),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(big_endian),
        step=padded.shape[1],
        data=padded.reshape(-1),
    )
    return deserialize(serialize(msg, "sensor_msgs/msg/Image"), "sensor_msgs/msg/Image")  # as received


@pytest.mark.parametrize(
    ("encoding", "dtype", "channels", "ours"),
    [
        ("rgb8", np.uint8, 3, "rgb8"),
        ("bgr8", np.uint8, 3, "bgr8"),
        ("rgba8", np.uint8, 4, "rgba8"),
        ("mono8", np.uint8, 1, "mono8"),
        ("16UC1", np.uint16, 1, "16UC1"),
        ("32FC1", np.float32, 1, "32FC1"),
    ],
)
@pytest.mark.parametrize("pad", [0, 6])
def test_our_encodings_come_in_as_views_of_the_received_bytes(encoding, dtype, channels, ours, pad):
    rng = np.random.default_rng(1)
    shape = (5, 7, channels) if channels > 1 else (5, 7)
    pixels = (rng.uniform(0, 200, shape)).astype(dtype)
    msg = ros_image(pixels, encoding, pad)
    image = convert.image_from_ros(msg)
    assert image.encoding == ours
    assert image.header == HEADER
    np.testing.assert_array_equal(image.data, pixels)
    assert np.shares_memory(image.data, msg.data)  # no copy


@pytest.mark.parametrize("big_endian", [False, True])
def test_mono16_grey_comes_in_as_mono8_the_detector_takes_and_16uc1_depth_stays(big_endian):
    """A ROS mono16 image was renamed 16UC1 (depth in millimetres to us) and the detector refused it."""
    grey = np.array([[0, 255, 256, 4095], [32768, 65280, 65535, 1000]], np.uint16)
    image = convert.image_from_ros(ros_image(grey, "mono16", pad=4, big_endian=big_endian))
    assert image.encoding == "mono8"
    np.testing.assert_array_equal(image.data, [[0, 0, 1, 15], [128, 255, 255, 3]])
    depth = convert.image_from_ros(ros_image(grey, "16UC1", big_endian=big_endian))
    assert depth.encoding == "16UC1"
    np.testing.assert_array_equal(depth.data, grey)
    _, png = cv2.imencode(".png", grey)
    compressed = T["sensor_msgs/msg/CompressedImage"](
        header=convert.header_to_ros(HEADER), format="mono16; png compressed mono16", data=png.reshape(-1)
    )
    image = convert.compressed_image_from_ros(compressed)
    assert image.encoding == "mono8" and image.data[1, 0] == 128


def test_big_endian_depth_is_turned_round():
    depth = np.arange(12, dtype=np.uint16).reshape(3, 4) * 300
    image = convert.image_from_ros(ros_image(depth, "16UC1", big_endian=True))
    np.testing.assert_array_equal(image.data, depth)


def test_yuv_and_bayer_are_converted_with_opencv():
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[...] = (200, 40, 90)
    uyvy = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV), cv2.COLOR_RGB2BGR)  # any 2-channel bytes
    msg = ros_image(np.ascontiguousarray(uyvy[..., :2]), "yuv422")
    assert convert.image_from_ros(msg).encoding == "rgb8"
    bayer = np.full((4, 6), 128, np.uint8)
    out = convert.image_from_ros(ros_image(bayer, "bayer_rggb8"))
    assert out.data.shape == (4, 6, 3) and out.encoding == "rgb8"


def test_an_encoding_we_do_not_take_is_refused_in_one_line_naming_it():
    msg = ros_image(np.zeros((2, 2, 3), np.uint16), "rgb16")
    with pytest.raises(convert.ConversionError, match="image encoding 'rgb16' cannot be converted"):
        convert.image_from_ros(msg)


def test_too_few_bytes_for_the_size_given_is_refused():
    msg = ros_image(np.zeros((4, 4, 3), np.uint8), "rgb8")
    msg.height = 40
    with pytest.raises(convert.ConversionError, match="expected at least 480 bytes of data, found 48"):
        convert.image_from_ros(msg)


@pytest.mark.parametrize(
    ("fmt", "ext"), [("jpeg", ".jpg"), ("png", ".png"), ("rgb8; jpeg compressed bgr8", ".jpg")]
)
def test_compressed_images_decode_to_bgr(fmt, ext):
    bgr = np.zeros((24, 32, 3), np.uint8)
    bgr[:, :16] = (255, 0, 0)
    ok, data = cv2.imencode(ext, bgr)
    assert ok
    msg = T["sensor_msgs/msg/CompressedImage"](
        header=convert.header_to_ros(HEADER), format=fmt, data=data.reshape(-1)
    )
    image = convert.compressed_image_from_ros(msg)
    assert image.encoding == "bgr8" and image.data.shape == (24, 32, 3)
    assert np.abs(image.data.astype(int) - bgr).mean() < 8


def test_compressed_depth_png_comes_in_as_16uc1():
    depth = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 250).astype(np.uint16)
    _, png = cv2.imencode(".png", depth)
    data = np.concatenate([np.zeros(12, np.uint8), png.reshape(-1)])
    msg = T["sensor_msgs/msg/CompressedImage"](
        header=convert.header_to_ros(HEADER), format="16UC1; compressedDepth png", data=data
    )
    image = convert.compressed_image_from_ros(msg)
    assert image.encoding == "16UC1"
    np.testing.assert_array_equal(image.data, depth)


def test_camera_info_both_ways():
    info = CameraInfo(
        HEADER, 640, 480, np.array([[500.0, 0, 320], [0, 505, 240], [0, 0, 1]]), np.arange(5) / 10
    )
    raw = serialize(convert.camera_info_to_ros(info), "sensor_msgs/msg/CameraInfo")
    pose = Pose((1.0, 2.0, 3.0), (0.0, 0.0, 0.0, 1.0))
    back = convert.camera_info_from_ros(deserialize(raw, "sensor_msgs/msg/CameraInfo"), pose)
    np.testing.assert_array_equal(back.K, info.K)
    np.testing.assert_array_equal(back.D, info.D)
    assert (back.width, back.height, back.header, back.pose) == (640, 480, HEADER, pose)


def test_detections_go_out_as_vision_msgs_with_track_ids_where_tracked():
    detections = Detections(
        HEADER,
        xyxy=np.array([[10, 20, 50, 80], [0, 0, 4, 4]], np.float32),
        scores=[0.9, 0.4],
        class_ids=[2, 0],
        class_names=["mug", "cube"],
        track_ids=[-1, 17],
    )
    raw = serialize(convert.detections_to_ros(detections), "vision_msgs/msg/Detection2DArray")
    back = deserialize(raw, "vision_msgs/msg/Detection2DArray")
    assert [d.results[0].hypothesis.class_id for d in back.detections] == ["mug", "cube"]
    assert [d.id for d in back.detections] == ["", "17"]
    first = back.detections[0]
    assert (
        first.bbox.center.position.x,
        first.bbox.center.position.y,
        first.bbox.size_x,
        first.bbox.size_y,
    ) == (30, 50, 40, 60)
    assert first.results[0].hypothesis.score == pytest.approx(0.9)
    assert back.header.stamp.sec == HEADER.stamp // 10**9 and back.header.frame_id == "cam"


def test_tracks_go_out_with_their_ids_and_grasps_as_poses():
    tracks = Tracks(
        HEADER,
        ids=[4],
        class_ids=[8],
        class_names=["car"],
        xyxy=np.array([[1, 2, 3, 4]], np.float32),
        scores=[0.7],
        velocities=np.zeros((1, 2), np.float32),
        ages_s=[1.0],
        ground_positions=np.zeros((1, 3)),
        distances=[5.0],
        speeds=[1.0],
        times_to_collision=[np.inf],
    )
    back = deserialize(
        serialize(convert.tracks_to_ros(tracks), "vision_msgs/msg/Detection2DArray"),
        "vision_msgs/msg/Detection2DArray",
    )
    assert back.detections[0].id == "4"
    grasps = Grasps(
        HEADER,
        positions=np.array([[0.5, 0.1, 0.02]]),
        orientations=np.array([[0.0, 1.0, 0.0, 0.0]]),
        widths=[0.04],
        qualities=[0.9],
        detection_indices=[0],
        class_names=["mug"],
    )
    poses = deserialize(
        serialize(convert.grasps_to_ros(grasps), "geometry_msgs/msg/PoseArray"), "geometry_msgs/msg/PoseArray"
    )
    assert (poses.poses[0].position.x, poses.poses[0].orientation.y) == (0.5, 1.0)


def test_the_camera_pose_goes_out_as_tf():
    info = CameraInfo(HEADER, 4, 4, np.eye(3), pose=Pose((0.1, 0.2, 0.3), (0.0, 0.0, 0.7071068, 0.7071068)))
    tf = deserialize(
        serialize(convert.camera_tf_to_ros(info, "world"), "tf2_msgs/msg/TFMessage"), "tf2_msgs/msg/TFMessage"
    )
    transform = tf.transforms[0]
    assert (transform.header.frame_id, transform.child_frame_id) == ("world", "cam")
    assert transform.transform.translation.z == pytest.approx(0.3)


def test_the_default_topics_parse_and_bad_rows_get_one_line_errors():
    maps = parse_topics(DEFAULT_TOPICS)
    assert [m.direction for m in maps] == ["in", "in", "out", "out", "out"]
    assert maps[3].conversion.ours is Tracks
    cases = {
        "unknown ROS 2 message type 'sensor_msgs/msg/Imag'": {
            "ros": "/a",
            "type": "sensor_msgs/msg/Imag",
            "ours": "/a",
        },
        "geometry_msgs/msg/PoseStamped cannot go out (out: ": {
            "ros": "/a",
            "type": "geometry_msgs/msg/PoseStamped",
            "ours": "/a",
            "direction": "out",
        },
        "vision_msgs/msg/Detection2DArray cannot come in (in: ": {
            "ros": "/a",
            "type": "vision_msgs/msg/Detection2DArray",
            "ours": "/a",
            "direction": "in",
        },
        "expected keys ros, type and ours, missing ours": {"ros": "/a", "type": "sensor_msgs/msg/Image"},
        "unknown key 'topic'": {"ros": "/a", "type": "sensor_msgs/msg/Image", "ours": "/a", "topic": 1},
        "qos expected one of sensor_data, reliable, transient_local": {
            "ros": "/a",
            "type": "sensor_msgs/msg/Image",
            "ours": "/a",
            "qos": "fast",
        },
        "goes out from Detections, Tracks, not 'Grasps'": {
            "ros": "/a",
            "type": "vision_msgs/msg/Detection2DArray",
            "ours": "/a",
            "as": "Grasps",
        },
        "ros expected a ROS 2 topic name (absolute; tokens of letters, digits and _, not starting with a"
        " digit), found 'a': it does not start with /": {
            "ros": "a",
            "type": "sensor_msgs/msg/Image",
            "ours": "/a",
        },
    }
    for message, row in cases.items():
        with pytest.raises(PerceptError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_topics([row])
    assert check_type("sensor_msgs/Image", "x") == "sensor_msgs/msg/Image"
    assert str(maps[0]) == "/camera/image_raw (sensor_msgs/msg/Image) -> camera/image (Image)"
    assert Image  # the type images come in as


def test_a_robots_pose_stamped_comes_in():
    msg = T["geometry_msgs/msg/PoseStamped"](
        header=convert.header_to_ros(HEADER),
        pose=T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=0.4, y=-0.1, z=0.3),
            orientation=T["geometry_msgs/msg/Quaternion"](x=1.0, y=0.0, z=0.0, w=0.0),
        ),
    )
    back = deserialize(serialize(msg, "geometry_msgs/msg/PoseStamped"), "geometry_msgs/msg/PoseStamped")
    pose = convert.pose_stamped_from_ros(back)
    assert pose.header == HEADER
    assert pose.pose.position == (0.4, -0.1, 0.3) and pose.pose.orientation == (1.0, 0.0, 0.0, 0.0)
    assert (
        parse_topics(
            [{"ros": "/tcp_pose", "type": "geometry_msgs/msg/PoseStamped", "ours": "/arm/gripper_pose"}]
        )[0].direction
        == "in"
    )


def test_a_topic_both_taken_in_and_sent_out_is_refused():
    rows = [
        {"ros": "/camera/image_raw", "type": "sensor_msgs/msg/Image", "ours": "/camera/image"},
        {
            "ours": "/camera/image",
            "ros": "/camera/image_raw",
            "type": "sensor_msgs/msg/Image",
            "direction": "out",
        },
    ]
    with pytest.raises(PerceptError, match="the bridge would read its own output"):
        parse_topics(rows)


def test_ros_domain_id_is_read_as_ros_2_reads_it_and_a_bad_one_is_named(monkeypatch):
    from perception.ros2.types import default_domain_id

    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    assert default_domain_id() == 0
    monkeypatch.setenv("ROS_DOMAIN_ID", " 7 ")
    assert default_domain_id() == 7
    monkeypatch.setenv("ROS_DOMAIN_ID", "abc")  # int() raised: a traceback from `percept ros2 topics`
    with pytest.raises(
        PerceptError, match=r"ROS_DOMAIN_ID: expected a domain number from 0 to 232, found 'abc'"
    ):
        default_domain_id()


def test_two_ros_topics_into_one_of_ours_are_refused_naming_both_rows():
    """image_transport publishes image_raw and image_raw/compressed side by side: both rows into
    camera/image published every frame twice. Our names are compared as the bridge resolves them."""
    rows = [
        {"ros": "/camera/image_raw", "type": "sensor_msgs/msg/Image", "ours": "camera/image"},
        {"ros": "/camera/camera_info", "type": "sensor_msgs/msg/CameraInfo", "ours": "camera/camera_info"},
        {
            "ros": "/camera/image_raw/compressed",
            "type": "sensor_msgs/msg/CompressedImage",
            "ours": "/robot1/camera/image",
        },
    ]
    with pytest.raises(PerceptError) as refused:
        parse_topics(rows, lambda name: name if name.startswith("/") else "/robot1/" + name)
    assert str(refused.value) == (
        "topics[2]: /camera/image_raw/compressed comes into /robot1/camera/image, as /camera/image_raw does"
        " in topics[0]: what a driver publishes on both (image_transport does) would arrive twice; keep one"
        " of the two rows"
    )
    assert len(parse_topics(rows)) == 3  # unresolved, camera/image and /robot1/camera/image are two


def test_the_readme_shows_the_real_default_and_every_row_key_is_documented():
    """The README's mapping once claimed to be the default and was not; every key a row takes is
    explained there and, briefly, in `percept ros2 bridge --help`."""
    import re
    from pathlib import Path

    import yaml

    from perception.cli.ros2 import TOPICS_HELP
    from perception.ros2.mapping import ROW_KEYS

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## On a ROS 2 robot") : readme.index("**Bags.**")]
    default = re.search(r"```yaml\n(topics:\n.*?)```", section, re.S)
    assert default and yaml.safe_load(default.group(1))["topics"] == DEFAULT_TOPICS
    for key in ROW_KEYS:
        assert f"- `{key}`" in section, key
        assert re.search(rf"^  {key} +\S", TOPICS_HELP, re.M), key


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/robot 1/image", "' ' not allowed"),  # DDS refused it with a traceback
        ("/a/image-raw", "'-' not allowed"),  # these DDS took, ROS 2 refuses
        ("/a//image", "an empty token (//)"),
        ("/1robot/image", "the token '1robot' starts with a digit"),
        ("/a/image_raw/", "it ends with /"),
        ("~/image", "~ and {} substitutions are not supported here; give the full name"),
        ("/{robot}/image", "~ and {} substitutions are not supported here; give the full name"),
        ("/", "no name after /"),
        ("/" + "a" * 247, "248 characters, more than 247"),
    ],
)
def test_a_ros_name_ros_2_refuses_is_refused_in_one_line(name, why):
    row = {"ros": name, "type": "sensor_msgs/msg/Image", "ours": "/camera/image"}
    with pytest.raises(PerceptError) as refused:
        parse_topics([row])
    assert str(refused.value) == (
        "topics[0]: ros expected a ROS 2 topic name (absolute; tokens of letters, digits and _, not starting"
        f" with a digit), found {name!r}: {why}"
    )


def test_ros_names_ros_2_takes_are_taken():
    for name in ("/camera/image_raw", "/_hidden/image", "/robot_1/camera2/image", "/a" * 10):
        row = {"ros": name, "type": "sensor_msgs/msg/Image", "ours": "/camera/image"}
        assert parse_topics([row])[0].ros == name


def test_a_real_type_we_convert_neither_way_says_so_listing_both_ways():
    """A LaserScan (meant to come in) was told it "cannot go out"."""
    row = {"ros": "/scan", "type": "sensor_msgs/msg/LaserScan", "ours": "/scan"}
    with pytest.raises(PerceptError) as refused:
        parse_topics([row])
    assert str(refused.value) == (
        "topics[0] (/scan): sensor_msgs/msg/LaserScan is neither taken in nor sent out by the bridge (in:"
        " sensor_msgs/msg/Image, sensor_msgs/msg/CompressedImage, sensor_msgs/msg/CameraInfo,"
        " geometry_msgs/msg/PoseStamped; out: geometry_msgs/msg/PoseArray, sensor_msgs/msg/CameraInfo,"
        " sensor_msgs/msg/Image, tf2_msgs/msg/TFMessage, vision_msgs/msg/Detection2DArray)"
    )


def test_our_names_are_resolved_for_the_log_and_given_as_written_to_the_publisher():
    """The publisher resolves (and remaps) its name itself: given the resolved one, it applied a
    remapping a second time (of a:=b and b:=c, a ended at c)."""
    row = {"ros": "/camera/image_raw", "type": "sensor_msgs/msg/Image", "ours": "camera/image"}
    (topic_map,) = parse_topics([row], lambda name: "/robot1/" + name)
    assert (topic_map.ours, topic_map.ours_as_given) == ("/robot1/camera/image", "camera/image")
    assert "-> /robot1/camera/image (Image)" in str(topic_map)
