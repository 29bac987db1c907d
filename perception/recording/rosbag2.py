"""Recordings to and from rosbag2 (`percept bag convert`), with rosbags: a ROS user's bag plays into our
graph, and our recording opens in ROS 2's tools (`ros2 bag play`, rqt_bag, Foxglove as a ROS bag).

rosbag2 -> ours: images (sensor_msgs/Image, CompressedImage) and camera info become our Image and
    CameraInfo, on the same topic names (or those `remap` gives), stamped as in the bag and logged at the
    bag's receive times; topics of other types are skipped and counted by type.
ours -> rosbag2 (MCAP storage, CDR, the Humble-and-later layouts): Image, CameraInfo, Detections and
    Tracks (vision_msgs/Detection2DArray), Grasps (geometry_msgs/PoseArray), as the bridge sends them
    (perception/ros2/convert.py); the rest is skipped and counted. The bag's QoS is ROS 2's default
    (reliable, volatile, keep last 10).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

from perception.errors import PerceptError
from perception.msgs import Message
from perception.recording.mcap_file import McapRecorder, read, recorded_topics
from perception.ros2.convert import INTO_OURS, OUT_OF_OURS, ConversionError
from perception.ros2.types import store
from perception.runtime import wire


@dataclass
class Converted:
    messages: int = 0
    topics: dict[str, str] = field(default_factory=dict)  # topic written -> its type there
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)  # by type
    refused: collections.Counter[str] = field(default_factory=collections.Counter)  # by reason
    torn: str = ""  # why a recording cut short stopped being read

    def summary(self) -> str:
        parts = [f"{self.messages} messages on {len(self.topics)} topics"]
        if self.skipped:
            parts.append("skipped " + ", ".join(f"{n} {t}" for t, n in self.skipped.most_common()))
        if self.refused:
            reasons = self.refused.most_common()
            more = sum(n for _, n in reasons[3:])
            parts.append(
                f"refused {self.refused.total()}: "
                + ", ".join(f"{n} ({why})" for why, n in reasons[:3])
                + (f", {more} more for {len(reasons) - 3} other reason(s)" if more else "")
            )
        if self.torn:
            parts.append(f"the recording ends torn ({self.torn}): converted what came before")
        return "; ".join(parts)


def _check_remap(remap: dict[str, str], topics: set[str], source: Path) -> None:
    """Each topic a remapping renames is in the source: a mistyped one would leave the topic under its
    old name, and the nodes that wait for the new one would get nothing."""
    missing = sorted(set(remap) - topics)
    if missing:
        raise PerceptError(
            f"remapping {missing[0]}:={remap[missing[0]]}: {source} has no topic {missing[0]}; its topics: "
            f"{', '.join(sorted(topics))}"
        )


def _check_names(topics: set[str], remap: dict[str, str]) -> None:
    """Each topic written has a name our nodes can subscribe to (ROS 2 refuses the same names)."""
    from perception.errors import InvalidNameError
    from perception.runtime.names import validate

    for topic in sorted(topics):
        name = remap.get(topic, topic)
        try:
            validate(name, "topic")
        except InvalidNameError as exc:
            raise PerceptError(
                f"topic {name}: not a name our nodes can subscribe to ({str(exc).splitlines()[0]}); "
                f"rename it with -r {topic}:=/a_name"
            ) from None


def _removed_on_failure(out: Path) -> None:
    """What a failed conversion wrote: a partial file would block the next try ("exists")."""
    import shutil

    if out.is_dir():
        shutil.rmtree(out, ignore_errors=True)
    else:
        out.unlink(missing_ok=True)


def is_rosbag2(path: Path) -> bool:
    """A rosbag2 bag: a folder with metadata.yaml (MCAP or sqlite3 storage inside)."""
    return path.is_dir() and (path / "metadata.yaml").is_file()


def from_rosbag2(source: Path, out: Path, remap: dict[str, str] | None = None) -> Converted:
    from rosbags.rosbag2 import Reader

    remap = remap or {}
    done = Converted()
    if out.exists() or out.is_symlink():  # as the other way round: a conversion never replaces a recording
        raise PerceptError(f"{out}: exists (the conversion writes a new file)")
    recorder = McapRecorder(out)
    finished = False
    try:
        with Reader(source) as reader:
            wanted = [c for c in reader.connections if c.msgtype in INTO_OURS]
            _check_remap(remap, {c.topic for c in reader.connections}, source)
            _check_names({c.topic for c in wanted}, remap)
            for connection in reader.connections:
                if connection.msgtype not in INTO_OURS:
                    done.skipped[connection.msgtype] += connection.msgcount
            # rosbags reads every connection when given none: with nothing to convert, read nothing
            for connection, timestamp, raw in reader.messages(connections=wanted) if wanted else ():
                conversion = INTO_OURS[connection.msgtype]
                try:
                    msg: Message = conversion.to_ours(raw)
                except Exception as exc:  # one bad message is counted, not the end of the bag
                    done.refused[f"{connection.topic}: {exc}"] += 1
                    continue
                topic = remap.get(connection.topic, connection.topic)
                frames = wire.encode(topic.encode(), msg)
                try:
                    recorder.write(topic, msg.TYPE_NAME, frames[1:], timestamp, timestamp)
                except OSError as exc:  # the disk, not the bag
                    raise PerceptError(f"{out}: cannot write it ({exc.strerror or exc})") from None
                done.topics[topic] = msg.TYPE_NAME
                done.messages += 1
        finished = True
    except PerceptError:
        raise
    except Exception as exc:  # rosbags' own errors: a bag it cannot read (cut short, say)
        raise PerceptError(f"{source}: rosbags cannot read this bag ({type(exc).__name__}: {exc})") from None
    finally:
        try:
            recorder.close()
        finally:
            if not finished:
                _removed_on_failure(out)
    return done


def to_rosbag2(source: Path, out: Path, remap: dict[str, str] | None = None) -> Converted:
    from rosbags.rosbag2 import StoragePlugin, Writer

    remap = remap or {}
    done = Converted()
    if out.exists():
        raise PerceptError(f"{out}: exists (rosbag2 writes a new folder)")
    recorded = recorded_topics(source)  # one of our recordings, or a clear error before the bag is begun
    _check_remap(remap, set(recorded), source)
    # our type -> how it goes out (camera info as CameraInfo: TF is the bridge's, from a live pose)
    by_type = {name: c for (ros_type, name), c in OUT_OF_OURS.items() if ros_type != "tf2_msgs/msg/TFMessage"}
    typestore = store()
    connections = {}
    torn: list[str] = []
    foreign: collections.Counter[str] = collections.Counter()
    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    finished = False
    try:
        for item in read(source, torn=torn, foreign=foreign):
            name = item.type_name.split("/")[-1]
            conversion = by_type.get(name)
            if conversion is None:
                done.skipped[item.type_name] += 1
                continue
            try:
                data = conversion.to_ros(wire.decode([item.topic.encode(), *item.frames]).msg)
            except (ConversionError, PerceptError, ValueError, TypeError) as exc:
                done.refused[f"{item.topic}: {exc}"] += 1
                continue
            topic = remap.get(item.topic, item.topic)
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, conversion.ros_type, typestore=typestore)
                done.topics[topic] = conversion.ros_type
            writer.write(connections[topic], item.log_time_ns, data)  # when it was received, as rosbag2
            done.messages += 1
        finished = True
    finally:
        try:
            writer.close()
        finally:
            if not finished:
                _removed_on_failure(out)
    if foreign:
        done.skipped[f"messages on {len(foreign)} channels not percept's"] = foreign.total()
    done.torn = torn[0] if torn else ""
    return done
