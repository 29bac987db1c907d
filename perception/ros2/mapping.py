"""Which ROS 2 topics the bridge joins to which of ours: rows of a launch file's `topics` parameter,
checked in one place with one-line errors.

    topics:
      - {ros: /camera/image_raw, type: sensor_msgs/msg/Image, ours: camera/image}          # in
      - {ros: /camera/camera_info, type: sensor_msgs/msg/CameraInfo, ours: camera/camera_info}
      - {ours: detections, ros: /percept/detections, type: vision_msgs/msg/Detection2DArray}  # out
      - {ours: tracks, ros: /percept/tracks, type: vision_msgs/msg/Detection2DArray, as: Tracks}

A row goes into our graph when the ROS type is one we take in (perception/ros2/convert.INTO_OURS),
else out of it; `direction: in|out` says so where a type goes both ways (images, camera info). `as`
names our message type where one ROS type carries several of ours. `qos`: sensor_data (best effort: a
reader of it takes from reliable and best-effort writers alike), reliable (ROS 2's default) or
transient_local (latched); a row coming in without one adapts to the writers it finds (the bridge,
perception.ros2.dds.adapted_profile), one going out is reliable. `depth`: the history kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from perception.errors import PerceptError
from perception.ros2.convert import INTO_OURS, OUT_OF_OURS, Conversion
from perception.ros2.dds import QOS_PROFILES
from perception.ros2.types import check_topic_name, check_type

ROW_KEYS = ("ros", "type", "ours", "direction", "as", "qos", "depth")

# What a robot's camera driver offers, and where our results go. ROS 2's names are absolute (the bridge
# joins DDS with no namespace); ours are the bridge node's names, relative to its namespace and
# remapped as usual, so a launch included under a namespace moves them with the rest of its graph.
DEFAULT_TOPICS: list[dict[str, Any]] = [
    {"ros": "/camera/image_raw", "type": "sensor_msgs/msg/Image", "ours": "camera/image"},
    {"ros": "/camera/camera_info", "type": "sensor_msgs/msg/CameraInfo", "ours": "camera/camera_info"},
    {"ours": "detections", "ros": "/percept/detections", "type": "vision_msgs/msg/Detection2DArray"},
    {"ours": "tracks", "ros": "/percept/tracks", "type": "vision_msgs/msg/Detection2DArray", "as": "Tracks"},
    {"ours": "grasps", "ros": "/percept/grasps", "type": "geometry_msgs/msg/PoseArray"},
]


@dataclass(frozen=True)
class TopicMap:
    ros: str
    ros_type: str
    ours: str
    direction: str  # "in": ROS 2 -> ours; "out": ours -> ROS 2
    conversion: Conversion
    qos: str | None  # None: coming in, adapting to the writers discovered
    depth: int | None
    # `ours` as the row gives it, which the bridge's publisher or subscription resolves (and remaps)
    # itself; `ours` is that resolution, for the log and the checks. Resolving `ours` again would apply
    # a remapping a second time (of a:=b and b:=c, a would end at c).
    ours_as_given: str = ""

    def __str__(self) -> str:
        arrow = "->" if self.direction == "in" else "<-"
        return f"{self.ros} ({self.ros_type}) {arrow} {self.ours} ({self.conversion.ours.__name__})"


def parse_topics(rows: list[Any], resolve: Callable[[str], str] = str) -> list[TopicMap]:
    """The rows of a `topics` parameter, checked; a one-line error names the row and what is wrong.
    `resolve` gives our names as the graph has them (the bridge node's resolution: a relative name is
    under its namespace), so that two spellings of one topic are seen as one."""
    if not rows:
        raise PerceptError("topics: expected at least one {ros, type, ours} row, found none")
    maps = [_parse_row(i, row) for i, row in enumerate(rows)]
    maps = [replace(m, ours=resolve(m.ours), ours_as_given=m.ours) for m in maps]
    # Two ROS topics into one of ours would publish every frame twice where a driver offers both
    # (image_transport publishes image_raw and image_raw/compressed side by side).
    into: dict[str, int] = {}
    for i, m in enumerate(maps):
        if m.direction != "in":
            continue
        if m.ours in into:
            j = into[m.ours]
            raise PerceptError(
                f"topics[{i}]: {m.ros} comes into {m.ours}, as {maps[j].ros} does in topics[{j}]: "
                "what a driver publishes on both (image_transport does) would arrive twice; "
                "keep one of the two rows"
            )
        into[m.ours] = i
    ins = {m.ros: i for i, m in enumerate(maps) if m.direction == "in"}
    for i, m in enumerate(maps):
        if m.direction == "out" and m.ros in ins:
            raise PerceptError(
                f"topics[{i}]: {m.ros} goes out, and row {ins[m.ros]} takes it in: the bridge would read its own output"
            )
    seen: dict[tuple[str, str], int] = {}
    for i, m in enumerate(maps):
        key = (m.direction, m.ros if m.direction == "in" else m.ours + "->" + m.ros)
        if key in seen:
            raise PerceptError(f"topics[{i}]: maps {m.ros} as row {seen[key]} does already")
        seen[key] = i
    return maps


def _parse_row(index: int, row: Any) -> TopicMap:
    where = f"topics[{index}]"
    if not isinstance(row, dict):
        raise PerceptError(f"{where}: expected a mapping {{ros, type, ours}}, found {row!r}")
    unknown = sorted(set(row) - set(ROW_KEYS))
    if unknown:
        raise PerceptError(f"{where}: unknown key {unknown[0]!r} (keys: {', '.join(ROW_KEYS)})")
    missing = [k for k in ("ros", "type", "ours") if not row.get(k)]
    if missing:
        raise PerceptError(f"{where}: expected keys ros, type and ours, missing {', '.join(missing)}")
    ros, ours = check_topic_name(str(row["ros"]), where), str(row["ours"])
    ros_type = check_type(str(row["type"]), f"{where} ({ros})")
    outs = sorted({t for t, _ in OUT_OF_OURS})
    if ros_type not in INTO_OURS and ros_type not in outs:
        # a real type (a LaserScan, say) we have no conversion for either way: "cannot go out" misled
        raise PerceptError(
            f"{where} ({ros}): {ros_type} is neither taken in nor sent out by the bridge "
            f"(in: {', '.join(INTO_OURS)}; out: {', '.join(outs)})"
        )
    direction = str(row.get("direction") or ("in" if ros_type in INTO_OURS else "out"))
    if direction not in ("in", "out"):
        raise PerceptError(f"{where}: direction expected in or out, found {direction!r}")
    if direction == "in":
        if ros_type not in INTO_OURS:
            raise PerceptError(f"{where} ({ros}): {ros_type} cannot come in (in: {', '.join(INTO_OURS)})")
        conversion = INTO_OURS[ros_type]
        if row.get("as") and row["as"] != conversion.ours.__name__:
            raise PerceptError(
                f"{where} ({ros}): {ros_type} comes in as {conversion.ours.__name__}, not {row['as']}"
            )
    else:
        choices = {name: c for (t, name), c in OUT_OF_OURS.items() if t == ros_type}
        if not choices:
            raise PerceptError(f"{where} ({ros}): {ros_type} cannot go out (out: {', '.join(outs)})")
        ours_type = str(row.get("as") or next(iter(choices)))
        if ours_type not in choices:
            raise PerceptError(
                f"{where} ({ros}): {ros_type} goes out from {', '.join(choices)}, not {ours_type!r}"
            )
        conversion = choices[ours_type]
    profile = str(row["qos"]) if row.get("qos") else (None if direction == "in" else "reliable")
    if profile is not None and profile not in QOS_PROFILES:
        raise PerceptError(
            f"{where} ({ros}): qos expected one of {', '.join(QOS_PROFILES)}, found {profile!r}"
        )
    depth = row.get("depth")
    if depth is not None and (
        not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= 1000
    ):
        raise PerceptError(f"{where} ({ros}): depth expected a count from 1 to 1000, found {depth!r}")
    return TopicMap(ros, ros_type, ours, direction, conversion, profile, depth)
