"""ROS 2 topics over DDS with Cyclone DDS's Python binding, carrying CDR bytes: no ZeroMQ in here.

Cyclone's Python types (de)serialise field by field (a 640x480 image: 17 ms in, 51 ms out, measured
here), so its type for a ROS 2 message is used for the names and type information only: DDS discovery,
matching and the type checks of peers see ROS 2's exact type (`sensor_msgs::msg::dds_::Image_`, its
fields from rosbags' definitions), while the samples we write and take are CDR bytes, made and read by
rosbags (an image's pixels: a view of the bytes received).

Topics are ROS 2's (`/camera/image_raw` is `rt/camera/image_raw` on DDS), in XCDR1 as ROS 2 sends them.
A listener thread of Cyclone's hands every sample to a callback: the bridge passes it on to its node's
thread (perception/nodes/ros2_bridge.py).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import types
from collections.abc import Callable
from typing import Any

from perception.errors import PerceptError
from perception.installed import require
from perception.ros2.types import dds_topic_name, dds_type_name, store

# ROS 2's QoS profiles by their names in rclpy (rclpy.qos.qos_profile_sensor_data and the default).
QOS_PROFILES = ("sensor_data", "reliable", "transient_local")
DOMAIN_IDS = range(0, 233)  # what ROS 2 allows (0-101 and 215-232 on Linux: the port ranges)


@functools.cache
def _idl() -> tuple[Any, Any]:
    require("cyclonedds", "the ROS 2 bridge")
    import cyclonedds.idl as idl
    import cyclonedds.idl.types as idl_types

    return idl, idl_types


def _annotation(node: Any) -> Any:
    """Cyclone's annotation for a field of a rosbags definition."""
    from rosbags.typesys.base import Nodetype  # type: ignore[attr-defined]

    _, t = _idl()
    base = {
        "bool": bool,
        "byte": t.byte,
        "char": t.uint8,
        "int8": t.int8,
        "uint8": t.uint8,
        "int16": t.int16,
        "uint16": t.uint16,
        "int32": t.int32,
        "uint32": t.uint32,
        "int64": t.int64,
        "uint64": t.uint64,
        "float32": t.float32,
        "float64": t.float64,
    }
    kind, detail = node
    if kind == Nodetype.BASE:
        name, bound = detail
        if name == "string":
            return t.bounded_str[bound] if bound else str
        return base[name]
    if kind == Nodetype.NAME:
        return _struct(detail)
    inner, count = detail
    if kind == Nodetype.ARRAY:
        return t.array[_annotation(inner), count]
    return t.sequence[_annotation(inner), count] if count else t.sequence[_annotation(inner)]


def _serialize(self: Any, use_version_2: bool | None = None, endianness: Any = None) -> bytes:
    return bytes(self.cdr)


def _deserialize(cls: Any, data: bytes, has_header: bool = True, use_version_2: bool | None = None) -> Any:
    sample = cls.__new__(cls)
    object.__setattr__(sample, "cdr", data)
    return sample


# A topic type's samples are its CDR bytes as they go on and come off the wire: `cdr`, set on each
# sample without being a field (Cyclone would make it one).
RAW_CDR = {"serialize": _serialize, "deserialize": classmethod(_deserialize), "of": classmethod(_deserialize)}


@functools.cache
def _struct(ros_type: str) -> Any:
    """Cyclone's struct for a nested ROS 2 type (fields only)."""
    return _make(ros_type, {})


@functools.cache
def topic_type(ros_type: str) -> Any:
    """Cyclone's type for a topic of `ros_type`, its samples CDR bytes (see RAW_CDR)."""
    return _make(ros_type, RAW_CDR)


def _make(ros_type: str, methods: dict[str, Any]) -> Any:
    idl, _ = _idl()
    _, fields = store().fielddefs[ros_type]
    # ROS 2 gives a message with no fields one uint8 (rosidl's structure_needs_at_least_one_member)
    annotations = {name: _annotation(node) for name, node in fields} or {
        "structure_needs_at_least_one_member": _idl()[1].uint8
    }

    def body(namespace: dict[str, Any]) -> None:
        namespace["__annotations__"] = annotations
        namespace["__module__"] = __name__
        namespace.update(methods)

    cls = types.new_class(
        ros_type.split("/")[-1] + "_",
        (idl.IdlStruct,),
        {"typename": dds_type_name(ros_type)},
        body,
    )
    return dataclasses.dataclass(cls)


def qos(profile: str, depth: int | None = None) -> Any:
    """Cyclone's QoS for one of ROS 2's profiles (XCDR1, as ROS 2 sends)."""
    from cyclonedds.qos import Policy, Qos
    from cyclonedds.util import duration

    if profile not in QOS_PROFILES:
        raise PerceptError(f"qos: expected one of {', '.join(QOS_PROFILES)}, found {profile!r}")
    representation = Policy.DataRepresentation(use_cdrv0_representation=True)
    if profile == "sensor_data":
        return Qos(
            Policy.Reliability.BestEffort,
            Policy.History.KeepLast(depth or 5),
            Policy.Durability.Volatile,
            representation,
        )
    durability = (
        Policy.Durability.TransientLocal if profile == "transient_local" else Policy.Durability.Volatile
    )
    return Qos(
        Policy.Reliability.Reliable(duration(milliseconds=100)),
        Policy.History.KeepLast(depth or (1 if profile == "transient_local" else 10)),
        durability,
        representation,
    )


class Participant:
    """One DDS participant on a ROS 2 domain, with readers and writers of ROS 2 topics."""

    def __init__(self, domain_id: int) -> None:
        if domain_id not in DOMAIN_IDS:
            raise PerceptError(f"domain_id: expected 0 to 232 (ROS_DOMAIN_ID), found {domain_id}")
        _idl()
        from cyclonedds.domain import DomainParticipant

        self.domain_id = domain_id
        self.participant: Any = DomainParticipant(domain_id)
        self._topics: dict[str, Any] = {}
        self._keep: list[Any] = []  # readers, writers and listeners: alive while the participant is

    def _topic(self, topic: str, ros_type: str) -> Any:
        from cyclonedds.topic import Topic

        name = dds_topic_name(topic)
        if name not in self._topics:
            self._topics[name] = Topic(self.participant, name, topic_type(ros_type))
        elif self._topics[name].data_type is not topic_type(ros_type):
            raise PerceptError(f"topic {topic}: mapped both as {ros_type} and as another type")
        return self._topics[name]

    def writer(
        self, topic: str, ros_type: str, profile: str = "reliable", depth: int | None = None
    ) -> Callable[[bytes], None]:
        """A function that writes CDR bytes of `ros_type` to the ROS 2 topic `topic`."""
        from cyclonedds.pub import DataWriter

        writer = DataWriter(self.participant, self._topic(topic, ros_type), qos=qos(profile, depth))
        self._keep.append(writer)
        wrap = topic_type(ros_type).of
        return lambda cdr: writer.write(wrap(cdr))

    def reader(
        self,
        topic: str,
        ros_type: str,
        on_sample: Callable[[bytes], None],
        profile: str = "sensor_data",
        depth: int | None = None,
    ) -> Any:
        """Call `on_sample` (on a thread of Cyclone's) with the CDR bytes of each sample that arrives."""
        from cyclonedds.core import Listener
        from cyclonedds.sub import DataReader

        lock = threading.Lock()

        def on_data_available(reader: Any) -> None:
            if reader is None:  # a callback before the binding knows its reader (see below)
                return
            with lock:
                while samples := reader.take(64):
                    for sample in samples:
                        if getattr(sample, "cdr", None) is not None:
                            on_sample(sample.cdr)

        # The listener goes on after the reader exists: Cyclone hands a latched (transient-local)
        # topic's history over while the reader is being created, when the binding cannot yet name the
        # reader, and that first notice would be lost; so the history is drained once by hand.
        reader = DataReader(self.participant, self._topic(topic, ros_type), qos=qos(profile, depth))
        listener = Listener(on_data_available=on_data_available)  # type: ignore[no-untyped-call]
        reader.set_listener(listener)
        on_data_available(reader)
        self._keep.extend([reader, listener])
        return reader

    def published_topics(self) -> dict[str, str]:
        """The ROS 2 topics some writer on this domain offers (discovered so far), with their DDS types."""
        from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication

        reader = BuiltinDataReader(self.participant, BuiltinTopicDcpsPublication)
        found = {}
        for sample in reader.take(1024):
            name = getattr(sample, "topic_name", "")
            if name.startswith("rt/"):
                found["/" + name[3:]] = sample.type_name
        return found

    def close(self) -> None:
        self._keep.clear()
        self._topics.clear()
        self.participant = None  # Cyclone deletes an entity when its last reference goes
