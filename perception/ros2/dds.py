"""ROS 2 topics over DDS with Cyclone DDS's Python binding, carrying CDR bytes: no ZeroMQ in here.

Cyclone's Python types (de)serialise field by field (a 640x480 image: 17 ms in, 51 ms out, measured
here), so its type for a ROS 2 message is used for the names and type information only: DDS discovery,
matching and the type checks of peers see ROS 2's exact type (`sensor_msgs::msg::dds_::Image_`, its
fields from rosbags' definitions), while the samples we write and take are CDR bytes, made and read by
rosbags (an image's pixels: a view of the bytes received).

Topics are ROS 2's (`/camera/image_raw` is `rt/camera/image_raw` on DDS), in XCDR1 as ROS 2 sends them.
A listener thread of Cyclone's hands every sample to a callback: the bridge passes it on to its node's
thread (perception/nodes/ros2_bridge.py). The same listener counts in an Events what DDS reports went
wrong: samples lost or rejected, and peers whose QoS cannot match ours (it calls the bridge back to say
so).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from perception.errors import PerceptError
from perception.installed import require
from perception.ros2.types import dds_topic_name, dds_type_name, store

# ROS 2's QoS profiles by their names in rclpy (rclpy.qos.qos_profile_sensor_data and the default).
QOS_PROFILES = ("sensor_data", "reliable", "transient_local")
DOMAIN_IDS = range(0, 233)  # what ROS 2 allows (0-101 and 215-232 on Linux: the port ranges)

# DDS's QoS policy ids (dds_qos_policy_id_t), by which DDS names the policy a peer could not match on
POLICY_NAMES = {
    1: "USER_DATA",
    2: "DURABILITY",
    3: "PRESENTATION",
    4: "DEADLINE",
    5: "LATENCY_BUDGET",
    6: "OWNERSHIP",
    7: "OWNERSHIP_STRENGTH",
    8: "LIVELINESS",
    9: "TIME_BASED_FILTER",
    10: "PARTITION",
    11: "RELIABILITY",
    12: "DESTINATION_ORDER",
    13: "HISTORY",
    14: "RESOURCE_LIMITS",
    15: "ENTITY_FACTORY",
    16: "WRITER_DATA_LIFECYCLE",
    17: "READER_DATA_LIFECYCLE",
    18: "TOPIC_DATA",
    19: "GROUP_DATA",
    20: "TRANSPORT_PRIORITY",
    21: "LIFESPAN",
    22: "DURABILITY_SERVICE",
    23: "PROPERTY",
    24: "TYPE_CONSISTENCY_ENFORCEMENT",
    25: "DATA_REPRESENTATION",
}

T = TypeVar("T")


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


@dataclass(frozen=True)
class Offer:
    """A writer discovered on the domain: its ROS 2 topic, DDS type, and what its QoS offers."""

    topic: str
    dds_type: str
    reliable: bool
    transient_local: bool  # or more (transient, persistent): a late reader gets its history


def offered_types(offers: list[Offer]) -> dict[str, str]:
    """The topics `offers` name, each with its DDS type."""
    return {offer.topic: offer.dds_type for offer in offers}


def adapted_profile(offers: list[Offer]) -> str | None:
    """The profile a reader adapts to, as rosbag2 and `ros2 topic echo` do: transient_local when every
    writer offers reliable and transient_local (a latched camera_info, published once, still comes),
    else sensor_data (best effort and volatile: it takes from every writer); None with no writer."""
    if not offers:
        return None
    if all(o.reliable and o.transient_local for o in offers):
        return "transient_local"
    return "sensor_data"


def incompatible_line(topic: str, policy: str, reading: bool, profile: str | None) -> str:
    """rclcpp's warning for a peer whose QoS cannot match ours, with the row's `qos` that would match:
    `reading` for our reader meeting a writer, else our writer meeting a reader; `profile` ours (None:
    adapting to the writers)."""
    if reading:
        head = (
            f"New publisher discovered on topic {topic}, offering incompatible QoS. "
            f"No messages will be received from it. Last incompatible policy: {policy}"
        )
        fixes = {
            "RELIABILITY": "qos: sensor_data (best effort) in its row takes it",
            "DURABILITY": "qos: sensor_data or reliable (volatile) in its row takes it",
        }
        if profile is not None and policy in fixes:
            return f"{head}; {fixes[policy]}, or no qos to adapt to the writers"
    else:
        head = (
            f"New subscription discovered on topic {topic}, requesting incompatible QoS. "
            f"No messages will be sent to it. Last incompatible policy: {policy}"
        )
        fixes = {
            "RELIABILITY": "qos: reliable in its row serves it",
            "DURABILITY": "qos: transient_local in its row serves it",
        }
        if policy in fixes:
            return f"{head}; {fixes[policy]}"
    return f"{head} (no qos of the bridge's serves it: the peer asks what ROS 2's profiles do not give)"


class Events:
    """What DDS tells of one topic's reader or writer, on a thread of Cyclone's: samples DDS lost on the
    way in (SAMPLE_LOST) or that the reader's resource limits rejected (SAMPLE_REJECTED), and peers met
    whose QoS cannot match ours (`on_incompatible` is called with the policy's name for each). Counted
    under a lock; one Events may serve the readers a topic has in turn.

    What DDS does not call lost goes uncounted here: on loopback, Cyclone 11.0 reported nothing for a
    1280x720 best-effort stream whose frames were dropped while its receive thread waited (a UDP
    socket overflowing: a frame missing fragments is discarded without a status)."""

    def __init__(self, on_incompatible: Callable[[str], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.lost = 0
        self.rejected = 0
        self.on_incompatible = on_incompatible

    def counts(self) -> tuple[int, int]:
        """(lost, rejected) so far."""
        with self.lock:
            return self.lost, self.rejected

    def listener(self, on_data_available: Callable[[Any], None] | None = None) -> Any:
        """A Cyclone Listener for a reader or writer that counts into this Events (and hands the reader
        to `on_data_available` when samples arrive)."""
        from cyclonedds.core import Listener

        callbacks: dict[str, Callable[..., None]] = {
            "on_requested_incompatible_qos": lambda _, status: self._incompatible(status),
            "on_offered_incompatible_qos": lambda _, status: self._incompatible(status),
            "on_sample_lost": lambda _, status: self._lost(status),
            "on_sample_rejected": lambda _, status: self._rejected(status),
        }
        if on_data_available is not None:
            callbacks["on_data_available"] = on_data_available
        return Listener(**callbacks)  # type: ignore[no-untyped-call]

    def _lost(self, status: Any) -> None:
        with self.lock:
            self.lost += int(status.total_count_change)

    def _rejected(self, status: Any) -> None:
        with self.lock:
            self.rejected += int(status.total_count_change)

    def _incompatible(self, status: Any) -> None:
        if self.on_incompatible is not None:
            policy = int(status.last_policy_id)
            self.on_incompatible(POLICY_NAMES.get(policy, f"policy {policy}"))


def _dds(what: str, make: Callable[[], T]) -> T:
    """`make()`, Cyclone's DDSException as one line naming `what` (a topic name DDS refuses, a domain
    its configuration cannot open) rather than a traceback."""
    from cyclonedds.core import DDSException

    try:
        return make()
    except DDSException as exc:
        raise PerceptError(f"{what}: Cyclone DDS refused it ({exc})") from None


class Participant:
    """One DDS participant on a ROS 2 domain, with readers and writers of ROS 2 topics."""

    def __init__(self, domain_id: int) -> None:
        if domain_id not in DOMAIN_IDS:
            raise PerceptError(f"domain_id: expected 0 to 232 (ROS_DOMAIN_ID), found {domain_id}")
        _idl()
        from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication
        from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState
        from cyclonedds.domain import DomainParticipant

        self.domain_id = domain_id
        self.participant: Any = _dds(f"ROS 2 domain {domain_id}", lambda: DomainParticipant(domain_id))
        self._topics: dict[str, Any] = {}
        # readers and writers, each with its listener: alive while the participant is, or until deleted
        self._keep: dict[Any, Any] = {}
        # The writers discovered on the domain, kept by DDS as one sample per writer: read (not taken)
        # while the writer lives, taken once it is gone so that the reader does not grow.
        self._publications: Any = BuiltinDataReader(self.participant, BuiltinTopicDcpsPublication)
        self._alive: Any = ReadCondition(
            self._publications, SampleState.Any | ViewState.Any | InstanceState.Alive
        )
        self._gone: Any = ReadCondition(
            self._publications, SampleState.Any | ViewState.Any | InstanceState.NotAliveDisposed
            | InstanceState.NotAliveNoWriters
        )  # fmt: skip

    def _topic(self, topic: str, ros_type: str) -> Any:
        from cyclonedds.topic import Topic

        name = dds_topic_name(topic)
        if name not in self._topics:
            self._topics[name] = _dds(
                f"topic {topic}", lambda: Topic(self.participant, name, topic_type(ros_type))
            )
        elif self._topics[name].data_type is not topic_type(ros_type):
            raise PerceptError(f"topic {topic}: mapped both as {ros_type} and as another type")
        return self._topics[name]

    def writer(
        self,
        topic: str,
        ros_type: str,
        profile: str = "reliable",
        depth: int | None = None,
        events: Events | None = None,
    ) -> Callable[[bytes], None]:
        """A function that writes CDR bytes of `ros_type` to the ROS 2 topic `topic`; readers whose QoS
        cannot match are counted in `events`."""
        from cyclonedds.pub import DataWriter

        listener = (events or Events()).listener()
        writer = _dds(
            f"writer of {topic}",
            lambda: DataWriter(
                self.participant, self._topic(topic, ros_type), qos=qos(profile, depth), listener=listener
            ),
        )
        self._keep[writer] = listener
        wrap = topic_type(ros_type).of
        return lambda cdr: writer.write(wrap(cdr))

    def reader(
        self,
        topic: str,
        ros_type: str,
        on_sample: Callable[[bytes], None],
        profile: str = "sensor_data",
        depth: int | None = None,
        events: Events | None = None,
    ) -> Any:
        """Call `on_sample` (on a thread of Cyclone's) with the CDR bytes of each sample that arrives;
        samples DDS reports lost or rejected, and writers whose QoS cannot match, are counted in
        `events`. Returns the reader, for delete()."""
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

        # The listener is there from the start, so that a writer already discovered, which the reader
        # meets while it is being created, is counted if its QoS cannot match. Cyclone hands a latched
        # (transient-local) topic's history over then too, when the binding cannot yet name the reader
        # (on_data_available gets None), and that first notice would be lost; so the history is drained
        # once by hand.
        listener = (events or Events()).listener(on_data_available)
        reader = _dds(
            f"reader of {topic}",
            lambda: DataReader(
                self.participant, self._topic(topic, ros_type), qos=qos(profile, depth), listener=listener
            ),
        )
        self._keep[reader] = listener
        on_data_available(reader)
        return reader

    def delete(self, entity: Any) -> None:
        """Delete a reader now (its QoS cannot change; the bridge makes another). The binding deletes an
        entity in its __del__, guarded against a second call, and offers no other way; left to the
        garbage collector, the old reader would go on matching writers and taking samples."""
        if self._keep.pop(entity, None) is not None:
            entity.__del__()

    def offers(self) -> list[Offer]:
        """The writers discovered on this domain so far, other than this participant's own."""
        self._publications.take(4096, condition=self._gone)
        me = self.participant.guid
        found = []
        for sample in self._publications.read(4096, condition=self._alive):
            name = getattr(sample, "topic_name", "")
            if not name.startswith("rt/") or sample.participant_key == me:
                continue
            found.append(
                Offer(
                    topic="/" + name[3:],
                    dds_type=sample.type_name,
                    reliable=_offers_reliable(sample.qos),
                    transient_local=_offers_transient_local(sample.qos),
                )
            )
        return found

    def published_topics(self) -> dict[str, str]:
        """The ROS 2 topics some writer on this domain offers (discovered so far), with their DDS types."""
        return offered_types(self.offers())

    def close(self) -> None:
        self._keep.clear()
        self._topics.clear()
        self._alive = self._gone = self._publications = None
        self.participant = None  # Cyclone deletes an entity when its last reference goes


def _offers_reliable(offered: Any) -> bool:
    from cyclonedds.qos import Policy

    # DDS's default for a writer is reliable: a writer that names no reliability offers it
    return Policy.Reliability not in offered or isinstance(
        offered[Policy.Reliability], Policy.Reliability.Reliable
    )


def _offers_transient_local(offered: Any) -> bool:
    from cyclonedds.qos import Policy

    durable = (Policy.Durability.TransientLocal, Policy.Durability.Transient, Policy.Durability.Persistent)
    return Policy.Durability in offered and offered[Policy.Durability] in durable
