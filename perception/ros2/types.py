"""ROS 2 message types without ROS: the definitions rosbags carries (the standard packages of a ROS 2
distribution), with vision_msgs added (not in rosbags' stores), and the names ROS 2 uses for them on
DDS. One store serves the bridge, `percept bag convert` and the tests."""

from __future__ import annotations

import functools
from typing import Any

from perception.errors import PerceptError

DISTRIBUTION = "ROS2_HUMBLE"  # rosbags' store: the message layouts are those of Humble to Kilted

# vision_msgs 4.1 (ROS 2 Humble and later): the layouts of the messages our detections go out as.
VISION_MSGS = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": (
        "vision_msgs/ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n"
    ),
    "vision_msgs/msg/Detection2D": (
        "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
        "vision_msgs/BoundingBox2D bbox\nstring id\n"
    ),
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
}


@functools.cache
def store() -> Any:
    """rosbags' type store for DISTRIBUTION, with vision_msgs registered."""
    from perception.installed import require

    require("rosbags", "ROS 2 messages")
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(getattr(Stores, DISTRIBUTION))
    for name, text in VISION_MSGS.items():
        typestore.register(get_types_from_msg(text, name))
    return typestore


def check_type(ros_type: str, where: str) -> str:
    """`ros_type` in its full form (pkg/msg/Name; pkg/Name is taken too), or a one-line error."""
    parts = ros_type.split("/")
    full = f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else ros_type
    if full not in store().fielddefs:
        package = parts[0] + "/"
        known = sorted(n for n in store().fielddefs if n.startswith(package))
        hint = f"; {parts[0]} has {', '.join(n.split('/')[-1] for n in known)}" if known else ""
        raise PerceptError(f"{where}: unknown ROS 2 message type {ros_type!r}{hint}")
    return full


def dds_type_name(ros_type: str) -> str:
    """The name DDS knows a ROS 2 type by: sensor_msgs/msg/Image -> sensor_msgs::msg::dds_::Image_."""
    package, kind, name = ros_type.split("/")
    return f"{package}::{kind}::dds_::{name}_"


def ros_type_name(dds_type: str) -> str:
    """The other way: sensor_msgs::msg::dds_::Image_ -> sensor_msgs/msg/Image."""
    parts = dds_type.split("::")
    return f"{parts[0]}/{parts[1]}/{parts[-1].rstrip('_')}" if len(parts) >= 3 else dds_type


def default_domain_id() -> int:
    """ROS_DOMAIN_ID as ROS 2 reads it: unset or empty is domain 0."""
    import os

    text = os.environ.get("ROS_DOMAIN_ID", "").strip()
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise PerceptError(f"ROS_DOMAIN_ID: expected a domain number from 0 to 232, found {text!r}") from None


TOPIC_NAME_MAX = 255 - 8  # rmw's RMW_TOPIC_MAX_NAME_LENGTH: DDS's 256, less the prefixes (rt/, ...)


def check_topic_name(name: str, where: str) -> str:
    """`name` if ROS 2 takes it as a full topic name (rmw_validate_full_topic_name's rules: absolute;
    tokens of letters, digits and _, none empty or starting with a digit; no trailing /), else a
    one-line error. The bridge joins DDS with no node, so ~ and {} substitutions have nothing to
    stand for: they are refused too. (DDS itself took '/a/image-raw', and dumped a traceback on a space.)"""
    expected = "a ROS 2 topic name (absolute; tokens of letters, digits and _, not starting with a digit)"

    def refuse(why: str) -> PerceptError:
        return PerceptError(f"{where}: ros expected {expected}, found {name!r}: {why}")

    if not name.startswith("/"):
        if name.startswith("~") or "{" in name:
            raise refuse("~ and {} substitutions are not supported here; give the full name")
        raise refuse("it does not start with /")
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "_/"))})
    if bad:
        if "~" in bad or "{" in bad or "}" in bad:
            raise refuse("~ and {} substitutions are not supported here; give the full name")
        raise refuse(f"{', '.join(repr(c) for c in bad)} not allowed")
    if name == "/":
        raise refuse("no name after /")
    if name.endswith("/"):
        raise refuse("it ends with /")
    if "//" in name:
        raise refuse("an empty token (//)")
    for token in name.split("/")[1:]:
        if token[0].isdigit():
            raise refuse(f"the token {token!r} starts with a digit")
    if len(name) > TOPIC_NAME_MAX:
        raise refuse(f"{len(name)} characters, more than {TOPIC_NAME_MAX}")
    return name


def dds_topic_name(topic: str) -> str:
    """The DDS topic of a ROS 2 topic: /camera/image_raw -> rt/camera/image_raw."""
    return "rt/" + topic.lstrip("/")


def serialize(message: Any, ros_type: str) -> bytes:
    """CDR bytes (with the 4-byte encapsulation header, little endian) of a rosbags message."""
    return bytes(store().serialize_cdr(message, ros_type))


def deserialize(data: bytes | memoryview, ros_type: str) -> Any:
    """A rosbags message from CDR bytes: arrays of numbers come back as numpy views of `data`. Bytes
    that are not a `ros_type` raise PerceptError naming it (rosbags' SerdeError says what is off)."""
    try:
        return store().deserialize_cdr(data, ros_type)
    except PerceptError:
        raise
    except Exception as exc:
        raise PerceptError(f"{len(data)} bytes that are not a {ros_type}: {exc}") from None
