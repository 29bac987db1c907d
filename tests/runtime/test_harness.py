"""The in-process node harness: a node's subscriptions fed, its publications collected, its services
called and its timers run, through the wire format but with no socket and no registry."""

from __future__ import annotations

import numpy as np
import pytest

from perception import LATEST_ONLY, Node, NodeHarness
from perception.errors import ServiceUnavailable
from perception.msgs import GetParameters, Header, Image, NodeStats, SetParameters, String


class Echo(Node):
    """Publishes the encoding of each frame it gets, and a count on its timer."""

    def __init__(self) -> None:
        super().__init__("echo")
        self.declare_parameter("scale", 2)
        self.out = self.create_publisher(String, "encodings")
        self.ticks = self.create_publisher(String, "ticks")
        self.subscription = self.create_subscription(Image, "image", self.on_image, LATEST_ONLY)
        self.create_timer(10.0, lambda: self.ticks.publish(String(data="tick")))

    def on_image(self, msg: Image) -> None:
        self.out.publish(String(data=f"{msg.encoding} x{self.get_parameter('scale')} seq {msg.header.seq}"))


def frame(seq: int) -> Image:
    return Image(header=Header(seq=seq), data=np.zeros((4, 4, 3), np.uint8))


def test_fed_messages_reach_the_callback_and_publications_are_collected_decoded():
    with NodeHarness(Echo, parameters={"scale": 3}, remappings={"image": "/camera/image"}) as harness:
        assert harness.node.fqn == "/echo" and "/encodings" in harness.topics
        harness.feed("/camera/image", frame(1))
        harness.feed("/camera/image", frame(2))
        assert [m.data for m in harness.take("/encodings", String)] == ["rgb8 x3 seq 1", "rgb8 x3 seq 2"]
        assert harness.take("/encodings") == []  # taken already
        assert len(harness.published("/encodings")) == 2  # published keeps everything
        stats = harness.node.subscription.stats
        assert stats.dropped_gap == 0 and stats.malformed == 0


def test_a_latest_only_subscription_keeps_the_newest_of_what_was_fed_before_a_dispatch():
    with NodeHarness(Echo) as harness:
        for seq in range(1, 5):
            harness.feed("/image", frame(seq), dispatch=False)
        harness.dispatch()
        assert [m.data for m in harness.take("/encodings")] == ["rgb8 x2 seq 4"]
        assert harness.node.subscription.stats.dropped_queue == 3  # counted, not lost silently


def test_services_timers_and_the_stats_the_node_publishes():
    with NodeHarness(Echo) as harness:
        assert harness.call("~/get_parameters", GetParameters(names=["scale"])).values == {"scale": 2}
        assert harness.call("~/set_parameters", SetParameters(values={"scale": 5})).success
        harness.feed("/image", frame(1))
        assert harness.take("/encodings")[0].data == "rgb8 x5 seq 1"
        harness.run_timers()
        assert [m.data for m in harness.take("/ticks")] == ["tick"]
        (stats,) = harness.take("/percept/stats", NodeStats)
        assert stats.node == "/echo" and any(t.topic == "/image" for t in stats.topics)


def test_mistakes_name_what_the_node_has():
    with NodeHarness(Echo) as harness:
        with pytest.raises(
            KeyError, match=r"/echo subscribes to no topic /imag \(its subscriptions: /image\)"
        ):
            harness.feed("/imag", frame(1))
        with pytest.raises(ServiceUnavailable, match="/echo serves no /echo/reset"):
            harness.call("~/reset", GetParameters())


class Fussy(Node):
    """Publishes the frame's encoding, and raises on a mono8 frame (a node's bug, in its callback)."""

    def __init__(self) -> None:
        super().__init__("fussy")
        self.out = self.create_publisher(String, "encodings")
        self.subscription = self.create_subscription(Image, "image", self.on_image)

    def on_image(self, msg: Image) -> None:
        if msg.encoding == "mono8":
            raise ValueError(f"cannot handle mono8 (seq {msg.header.seq})")
        self.out.publish(String(data=msg.encoding))


def test_a_callback_that_raises_fails_the_feed_and_is_counted_as_on_the_bus():
    mono = Image(header=Header(seq=2), data=np.zeros((4, 4), np.uint8), encoding="mono8")
    with NodeHarness(Fussy) as harness:
        with pytest.raises(ValueError, match=r"cannot handle mono8 \(seq 2\)"):
            harness.feed("/image", mono)
        assert harness.node.subscription.stats.callback_errors == 1
        # What was fed beside it is still handed over, as the node's executor would, before the raise.
        harness.feed("/image", frame(3), dispatch=False)
        harness.feed("/image", mono, dispatch=False)
        harness.feed("/image", frame(5), dispatch=False)
        with pytest.raises(ValueError, match="cannot handle mono8"):
            harness.dispatch()
        assert [m.data for m in harness.take("/encodings")] == ["rgb8", "rgb8"]
        assert harness.node.subscription.stats.callback_errors == 2
        harness.feed("/image", frame(6))  # the node goes on
        assert [m.data for m in harness.take("/encodings")] == ["rgb8"]


def test_taking_from_a_topic_the_node_does_not_publish_names_those_it_does():
    with NodeHarness(Fussy) as harness:
        with pytest.raises(KeyError, match=r"/fussy publishes no topic /encoding \(its publishers: "):
            harness.take("/encoding")
        with pytest.raises(KeyError, match="/fussy publishes no topic /encoding"):
            harness.published("/encoding")
        assert harness.take("/encodings") == []  # one it publishes on, nothing yet
