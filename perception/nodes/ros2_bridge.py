"""The ROS 2 bridge: joins a ROS 2 graph over DDS (no ROS install: Cyclone DDS and rosbags, the `ros2`
extra) and maps its topics to ours both ways, by the rows of its `topics` parameter
(perception/ros2/mapping.py): a robot's camera driver feeds our detector, and our detections, tracks
and grasps reach ROS 2 nodes as vision_msgs and geometry_msgs.

Samples arrive on a thread of Cyclone's; the bridge keeps the newest `depth` per topic (older ones
evicted and counted, as a latest-only subscription does), converts them on the node's thread and
publishes. A sample that cannot be converted (an encoding we do not take, bytes that are not the type)
is counted and logged once a topic and reason, and the bridge goes on; samples DDS reports lost or
rejected before they reached the bridge are counted too, and all of it goes in report()'s periodic
line. An input topic no writer on the domain offers after `wait_for_topics_s` is named in one warning
line, with those that are offered.

QoS: a row coming in without `qos` reads as its writers offer (perception.ros2.dds.adapted_profile),
looked at again every check_topics, the reader made anew when that changes (writers come and go); a peer
whose QoS still cannot match (a row's own `qos`, a ROS reader asking more than we write) is named once a
topic in rclcpp's words, with the `qos` that would match.
"""

from __future__ import annotations

import collections
import functools
import threading
import time
from typing import Any

from perception import Node, run
from perception.errors import ParameterError, PerceptError, reason
from perception.nodes.camera_pose import declare_camera_pose
from perception.ros2.convert import ConversionError
from perception.ros2.dds import Events, Offer, Participant, adapted_profile, incompatible_line, offered_types
from perception.ros2.mapping import DEFAULT_TOPICS, TopicMap, parse_topics
from perception.ros2.types import dds_type_name, default_domain_id, ros_type_name

HISTORY_KEPT = 64  # samples remembered, against a writer's history handed over again (its depth at most)
REPORT_PERIOD_S = 10.0  # a line of counts when something was dropped, refused or lost since the last


class Inbound:
    """One ROS 2 topic coming in: the newest samples, kept between Cyclone's thread and the node's."""

    def __init__(self, topic_map: TopicMap, publisher: Any, events: Events) -> None:
        self.map = topic_map
        self.publisher = publisher
        self.events = events
        self.pending: collections.deque[bytes] = collections.deque(maxlen=topic_map.depth or 1)
        self.lock = threading.Lock()
        self.received = 0
        self.evicted = 0  # arrived while `depth` newer ones waited: dropped, counted
        self.refused = 0  # could not be converted
        self.reasons: set[str] = set()
        self.reader: Any = None
        self.profile = topic_map.qos or "sensor_data"  # its reader's now; adapting, until writers are seen
        # What the reader passed on lately (hashes of the samples), and, once a transient-local reader
        # replaces it, those of them its writers' history hands over again first: not passed on twice.
        self.passed: collections.deque[int] = collections.deque(maxlen=HISTORY_KEPT)
        self.handed_again: set[int] = set()
        self.latched: Any = None  # the last message passed on, while read as transient_local
        self.subscribers = 0  # ours, at the last check

    def offer(self, cdr: bytes) -> None:
        with self.lock:
            if self.handed_again:
                if hash(cdr) in self.handed_again:
                    self.handed_again.discard(hash(cdr))
                    return
                self.handed_again.clear()  # the history is handed over first: what follows is new
            self.received += 1
            if len(self.pending) == self.pending.maxlen:
                self.evicted += 1
            self.pending.append(cdr)
            if self.map.qos is None:  # a row adapting to its writers may be read as transient_local later
                self.passed.append(hash(cdr))

    def take(self) -> list[bytes]:
        with self.lock:
            samples = list(self.pending)
            self.pending.clear()
        return samples


class Ros2Bridge(Node):
    """Map ROS 2 topics (over DDS) to ours and ours to ROS 2's."""

    def __init__(self) -> None:
        super().__init__("ros2_bridge")
        domain_id = self.declare_parameter(
            "domain_id", -1, "the ROS 2 domain (-1: $ROS_DOMAIN_ID, else 0)", read_only=True, range=(-1, 232)
        )
        if domain_id < 0:
            domain_id = default_domain_id()
        rows = self.declare_parameter(
            "topics", DEFAULT_TOPICS, "rows {ros, type, ours, direction, as, qos, depth}", read_only=True
        )
        self.camera_pose = declare_camera_pose(self, "camera_position", "camera_orientation")
        self.world_frame = self.declare_parameter(
            "world_frame",
            "world",
            "the frame grasps go out in, and the parent of the camera's TF",
            read_only=True,
        )
        self.wait_for_topics_s = self.declare_parameter(
            "wait_for_topics_s",
            5.0,
            "seconds before an input topic nobody offers is reported",
            read_only=True,
            range=(0.0, 3600.0),
        )
        try:
            # Our side's names resolved once, so that the log and the counts name the topics as the
            # graph has them (a relative name is under this node's namespace).
            self.maps = parse_topics(rows, self.resolve)
            self.dds = Participant(domain_id)
        except PerceptError as exc:
            raise ParameterError(str(exc)) from None
        self.inbound: list[Inbound] = []
        self.outbound: dict[str, dict[str, int]] = {}
        self.wake = self.create_waker(self.publish_pending)
        self.warned_lock = threading.Lock()  # the incompatible-QoS warnings come on Cyclone's threads
        self.warned: set[str] = set()
        try:
            for topic_map in self.maps:
                events = Events(functools.partial(self.incompatible, topic_map))
                if topic_map.direction == "in":
                    publisher = self.create_publisher(topic_map.conversion.ours, topic_map.ours_as_given)
                    inbound = Inbound(topic_map, publisher, events)
                    self.inbound.append(inbound)
                    self.open_reader(inbound, inbound.profile)
                else:
                    assert topic_map.qos is not None  # a row going out has one (mapping: reliable)
                    write = self.dds.writer(
                        topic_map.ros, topic_map.ros_type, topic_map.qos, topic_map.depth, events
                    )
                    counts = self.outbound.setdefault(str(topic_map), {"sent": 0, "refused": 0})
                    self.create_subscription(
                        topic_map.conversion.ours,
                        topic_map.ours_as_given,
                        functools.partial(self.send, topic_map, write, counts),
                    )
                self.log.info("bridging %s", topic_map)
        except PerceptError as exc:
            self.dds.close()
            raise ParameterError(str(exc)) from None
        self.log.info("on ROS 2 domain %d", domain_id)
        self.started = time.monotonic()
        self.checked_topics = False
        self.reported: dict[str, tuple[int, ...]] = {}
        self.create_timer(min(1.0, max(0.1, self.wait_for_topics_s)), self.check_topics)
        self.create_timer(REPORT_PERIOD_S, self.report)

    def open_reader(self, inbound: Inbound, profile: str) -> None:
        m = inbound.map

        def on_sample(cdr: bytes) -> None:
            inbound.offer(cdr)
            self.wake()

        inbound.reader = self.dds.reader(m.ros, m.ros_type, on_sample, profile, m.depth, inbound.events)
        inbound.profile = profile

    def adapt(self, offers: list[Offer]) -> None:
        """Each row coming in without `qos` read as its writers offer now; a reader's QoS cannot change,
        so one of the profile they call for replaces it."""
        for inbound in self.inbound:
            m = inbound.map
            if m.qos is not None:
                continue
            dds_type = dds_type_name(m.ros_type)
            profile = adapted_profile([o for o in offers if o.topic == m.ros and o.dds_type == dds_type])
            if profile is None or profile == inbound.profile:
                continue
            self.dds.delete(inbound.reader)
            if profile == "transient_local":
                with inbound.lock:
                    inbound.handed_again = set(inbound.passed)
            try:
                self.open_reader(inbound, profile)
            except PerceptError as exc:  # DDS took this topic before; should it not now, try again later
                inbound.profile = ""
                self.log.warning("%s: %s", m.ros, exc)
                continue
            self.log.info("%s: reading as %s, as its writers offer", m.ros, profile)

    def incompatible(self, topic_map: TopicMap, policy: str) -> None:
        """A peer whose QoS cannot match (on Cyclone's thread): named once a topic."""
        reading = topic_map.direction == "in"
        if reading and topic_map.qos is None and policy in ("RELIABILITY", "DURABILITY"):
            return  # a row adapting to its writers: the next check_topics reads as this one offers
        with self.warned_lock:
            if topic_map.ros in self.warned:
                return
            self.warned.add(topic_map.ros)
        self.log.warning("%s", incompatible_line(topic_map.ros, policy, reading, topic_map.qos))

    def publish_pending(self) -> None:
        for inbound in self.inbound:
            m = inbound.map
            for cdr in inbound.take():
                try:
                    msg = m.conversion.to_ours(cdr, camera_pose=self.camera_pose)
                except Exception as exc:  # any sample a peer sends: counted and named, never fatal
                    self.refuse(inbound, reason(exc))
                    continue
                inbound.publisher.publish(msg)
                if inbound.profile == "transient_local":
                    inbound.latched = msg

    def hand_latched_to_new_subscribers(self) -> None:
        """A topic read as transient_local is latched on the ROS side (a driver publishes its
        camera_info once); ours are not, so a node that subscribes after the bridge passed it on would
        never get it: its last message goes out again when the subscribers grow (those there before get
        it twice)."""
        for inbound in self.inbound:
            count = inbound.publisher.subscriber_count
            if count > inbound.subscribers and inbound.latched is not None:
                if inbound.profile == "transient_local":
                    inbound.publisher.publish(inbound.latched)
                else:
                    inbound.latched = None  # its writers no longer latch
            inbound.subscribers = count

    def refuse(self, inbound: Inbound, reason: str) -> None:
        inbound.refused += 1
        if reason not in inbound.reasons and len(inbound.reasons) < 20:
            inbound.reasons.add(reason)
            self.log.warning(
                "%s (%s): %s; counted and skipped", inbound.map.ros, inbound.map.ros_type, reason
            )

    def send(self, topic_map: TopicMap, write: Any, counts: dict[str, int], msg: Any) -> None:
        try:
            write(topic_map.conversion.to_ros(msg, world_frame=self.world_frame))
        except (ConversionError, PerceptError, ValueError, TypeError) as exc:
            counts["refused"] += 1
            if counts["refused"] == 1:
                self.log.warning("%s: %s; counted and skipped", topic_map, exc)
            return
        counts["sent"] += 1

    def check_topics(self) -> None:
        offers = self.dds.offers()
        self.adapt(offers)
        self.hand_latched_to_new_subscribers()
        if self.checked_topics or time.monotonic() - self.started < self.wait_for_topics_s:
            return
        self.checked_topics = True
        offered = offered_types(offers)
        for inbound in self.inbound:
            m = inbound.map
            if inbound.received or offered.get(m.ros) == dds_type_name(m.ros_type):
                continue
            if m.ros in offered:
                self.log.warning(
                    "%s: offered as %s, not %s: nothing comes in",
                    m.ros,
                    ros_type_name(offered[m.ros]),
                    m.ros_type,
                )
            else:
                others = ", ".join(sorted(offered)) or "none"
                self.log.warning(
                    "%s: no writer on ROS 2 domain %d offers it after %.0f s (offered: %s)",
                    m.ros,
                    self.dds.domain_id,
                    self.wait_for_topics_s,
                    others,
                )

    def report(self) -> None:
        for inbound in self.inbound:
            lost, rejected = inbound.events.counts()
            now = (inbound.evicted, inbound.refused, lost, rejected)
            if now != self.reported.get(inbound.map.ros, (0, 0, 0, 0)):
                self.log.info(
                    "%s: %d received, %d evicted for newer (depth %d), %d refused; DDS lost %d and "
                    "rejected %d before the bridge",
                    inbound.map.ros,
                    inbound.received,
                    inbound.evicted,
                    inbound.pending.maxlen,
                    inbound.refused,
                    lost,
                    rejected,
                )
                self.reported[inbound.map.ros] = now
        for name, counts in self.outbound.items():
            if counts["refused"] != self.reported.get(name, (0, 0))[1]:
                self.log.info("%s: %d sent, %d refused", name, counts["sent"], counts["refused"])
                self.reported[name] = (0, counts["refused"])

    def on_shutdown(self) -> None:
        self.dds.close()


if __name__ == "__main__":
    run(Ros2Bridge)
