"""The live Foxglove link: the running graph served over Foxglove's WebSocket protocol with the
`foxglove-sdk` package, so that Foxglove (app or desktop) watches it as it runs, as it opens a
recording. `percept foxglove` runs this node; a launch file starts it as
`node: perception.recording.live:FoxgloveLink`.

Each topic a publisher announces becomes a Foxglove channel when its first message arrives, through the
recorder's own conversions (foxglove.py, images.py): images as foxglove.RawImage (or CompressedImage
with `image_format: jpeg|png`, for a slow link), detections and tracks as ImageAnnotations, camera info
as CameraCalibration plus a FrameTransform on /tf, grasps as a SceneUpdate, and every other message as
JSON (stats and results can be plotted). Topics keep their names, so the annotations are picked beside
their image in Foxglove's Image panel. When a topic's last publisher leaves the graph its channels are
closed, so Foxglove drops it from its list (a panel on it would otherwise freeze on the last frame),
and they are opened again when a publisher comes back.

A message is decoded and converted only while a Foxglove client subscribes to one of its channels: an
unwatched topic costs its subscription alone. `max_fps` thins each topic by its messages' stamps, not by
arrival, so an image and its boxes (same stamp) are kept or skipped together. Slow clients are the SDK's
to handle: it keeps a backlog per client and drops the oldest messages when it fills.

foxglove-sdk's WebSocket server has no authentication (0.30: TLS for wss:// only, no token, no hook
that refuses a client), and neither has foxglove_bridge: whoever reaches the port reads every channel,
on loopback any local user. Without a keystore they can read the graph itself anyway; with one (the
link's own keys), the link would be their way past it, so it refuses to start unless
`allow_unauthenticated` says the user knows (`percept foxglove --allow-unauthenticated`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from perception import msgs
from perception.errors import PerceptError, RegistryUnavailable
from perception.installed import require
from perception.recording import IMAGE_FORMATS, OLD_SUBPROTOCOL, SDK_SUBPROTOCOL
from perception.recording.foxglove import Converter, as_json, schema_data
from perception.recording.images import descriptor, encode
from perception.runtime.names import is_hidden
from perception.runtime.node import Node
from perception.runtime.qos import QoS
from perception.runtime.registry import query
from perception.runtime.stats import Throttle
from perception.runtime.wire import decode

DEFAULT_PORT = 8765  # Foxglove's own default for a WebSocket data source
JSON_SCHEMA = json.dumps({"type": "object"}).encode()  # named by our type; fields as as_json gives them
DISCOVERY_PERIOD_S = 1.0
QUEUE = QoS(depth=4)  # a slow conversion never builds a backlog; what it skips is counted as dropped


@dataclass
class Route:
    """One of our topics and the Foxglove channels its messages have gone to."""

    topic: str
    channels: list[Any] = field(default_factory=list)
    last_slot: int = -1  # the max_fps time slot of the last message sent
    # No publisher of it is left in the graph: its channels are closed, and the last messages of the
    # publisher that left, which may still arrive, must not open them again (see discover).
    gone: bool = False
    unseen: int = 0  # looks at the graph in a row that found no publisher of it


@dataclass
class Counts:
    sent: int = 0  # messages converted and handed to the server
    unwatched: int = 0  # arrived while no client subscribed to their channels
    thinned: int = 0  # skipped by max_fps
    failed: int = 0  # did not decode or convert (each logged, at most once a second)
    # Arrived while their topic had no publisher in the graph, its channels closed: the last of a publisher
    # that left, or the first of one that came back before the next look at the graph (within a second).
    unpublished: int = 0


class FoxgloveLink(Node):
    """Serve the running graph to Foxglove over its WebSocket protocol (images, boxes, tracks, calibration)."""

    def __init__(self, name: str = "foxglove") -> None:
        super().__init__(name)
        foxglove = require("foxglove", "the live Foxglove link")
        host = self.declare_parameter(
            "host", "127.0.0.1", "address to serve on (0.0.0.0: every interface)", read_only=True
        )
        port = self.declare_parameter(
            "port", DEFAULT_PORT, "WebSocket port (0 picks a free one)", read_only=True
        )
        self.topics: list[str] = self.declare_parameter(
            "topics", [], "topics to serve (empty: every topic, as publishers appear)", read_only=True
        )
        self.image_format: str = self.declare_parameter(
            "image_format", "raw", "raw, or jpeg or png to compress images for a slow link", read_only=True
        )
        self.declare_parameter(
            "max_fps", 0.0, "at most this many messages per topic a second (0: all)", range=(0.0, 1e6)
        )
        allow_unauthenticated: bool = self.declare_parameter(
            "allow_unauthenticated",
            False,
            "serve even when the graph has a keystore: the server has no authentication, so any local user "
            "(and off loopback anyone who reaches the port) reads every topic served",
            read_only=True,
        )
        if self.image_format not in IMAGE_FORMATS:
            raise PerceptError(
                f"image_format: expected one of {', '.join(IMAGE_FORMATS)}, found {self.image_format!r}"
            )
        if not 0 <= port <= 65535:
            raise PerceptError(f"port: expected 0-65535, found {port}")
        if self.context.keys is not None and not allow_unauthenticated:
            raise PerceptError(
                f"Foxglove link on {host}:{port}: not started, the graph has a keystore "
                f"({self.context.keys.keystore}) and foxglove-sdk's WebSocket server has no authentication, "
                "so any local user could read the graph's topics through it; to serve it anyway: "
                "--allow-unauthenticated (in a launch file: allow_unauthenticated: true), or watch it in "
                "`percept view`, which asks for a token"
            )
        self._foxglove = foxglove
        logging.getLogger("foxglove").setLevel(logging.WARNING)  # its start and stop lines repeat ours
        _quiet_sdk_logs()
        self._context = foxglove.Context()  # its own: two links in one process never share channels
        try:
            self.server = foxglove.start_server(
                name="percept", host=host, port=port, context=self._context, server_listener=_Listener(self)
            )
        except Exception as exc:  # the SDK raises RuntimeError for a port in use or a bad address
            raise PerceptError(f"cannot serve Foxglove on {host}:{port}: {exc}") from None
        self.url = f"ws://{host}:{self.server.port}"
        self.counts = Counts()
        self._converter = Converter(prefix="")  # topics keep their names: nothing else is on this link
        self.routes: dict[str, Route] = {}
        self._channels: dict[tuple[str, str], Any] = {}  # (Foxglove topic, schema) -> channel
        self._errors = Throttle()
        self.log.info("Foxglove link at %s (Foxglove: Open connection, Foxglove WebSocket)", self.url)
        if self.context.keys is not None:
            self.log.warning(
                "allow_unauthenticated: the graph has a keystore, but any local user (and off loopback "
                "anyone who reaches %s) can read every topic this link serves",
                self.url,
            )
        for topic in self.topics:
            self._serve(self.resolve(topic))
        self.discover()
        self.create_timer(DISCOVERY_PERIOD_S, self.discover)

    def discover(self) -> None:
        """Serve every topic a publisher announces (tools' hidden ones aside; only those named, when
        some are), and close the channels of those whose publishers have all gone."""
        try:
            nodes = query(
                "graph", address=self.context.registry, timeout_s=0.5, keys=self.context.keys or False
            )["nodes"]
        except RegistryUnavailable:
            return  # the node's registry link says so already; known topics keep flowing
        published = {publisher["topic"] for node in nodes for publisher in node["publishers"]}
        if not self.topics:
            for topic in sorted(published - set(self.routes)):
                if not is_hidden(topic):
                    self._serve(topic)
        for route in self.routes.values():
            route.unseen = 0 if route.topic in published else route.unseen + 1
            if route.gone and route.topic in published:
                route.gone = False  # a publisher is back: its next message advertises the channels
        self._close_unpublished()

    def _close_unpublished(self) -> None:
        """Close the Foxglove channels of topics no publisher in the graph has left: Foxglove then
        unadvertises them, where it would have kept them in its list, their panels frozen on the last
        frame. Missing from two looks in a row: a registry that has just restarted answers with the
        nodes that have joined it again so far, within a heartbeat. A channel another topic still sends
        to (/tf, from every camera's info) stays. The subscription stays too, so a publisher that comes
        back is served again: its first message opens the channels anew (Foxglove: advertise)."""
        gone = [r for r in self.routes.values() if not r.gone and r.channels and r.unseen >= 2]
        if not gone:
            return
        staying = [r for r in self.routes.values() if r.channels and r.unseen < 2]
        in_use = {id(channel) for route in staying for channel in route.channels}
        for route in gone:
            closing = {id(channel) for channel in route.channels} - in_use
            for key, channel in list(self._channels.items()):
                if id(channel) in closing:
                    del self._channels[key]
                    channel.close()
            route.channels, route.last_slot, route.gone = [], -1, True
            self._converter.forget(route.topic)
        self.log.info(
            "no publisher left for %s: Foxglove channels closed", ", ".join(route.topic for route in gone)
        )

    def _serve(self, topic: str) -> None:
        route = self.routes[topic] = Route(topic)
        self.create_subscription(None, topic, lambda frames: self._on_frames(route, frames), QUEUE, raw=True)

    def _on_frames(self, route: Route, frames: list[Any]) -> None:
        if route.gone:
            self.counts.unpublished += 1
            return
        if route.channels and not any(channel.has_sinks() for channel in route.channels):
            self.counts.unwatched += 1
            return
        try:
            msg = decode(frames).msg  # raw frames: the topic first, as they came
            if not self._due(route, msg):
                self.counts.thinned += 1
                return
            views = self._views(route.topic, msg)
        except Exception as exc:  # one bad message: counted and logged, never the end of the link
            self.counts.failed += 1
            if self._errors.ready():
                self.log.error("%s: no Foxglove view (%s: %s)", route.topic, type(exc).__name__, exc)
            return
        for channel_key, schema, data in views:
            channel = self._channels.get(channel_key)
            if channel is None:
                channel = self._channels[channel_key] = self._open_channel(*channel_key, schema)
            if channel not in route.channels:
                route.channels.append(channel)
            channel.log(data)
        self.counts.sent += 1

    def _due(self, route: Route, msg: Any) -> bool:
        """With max_fps, one message per 1/max_fps of stamp time: the same stamps are kept on every
        topic, so boxes arrive for the images that were sent."""
        max_fps = float(self.get_parameter("max_fps"))
        if max_fps <= 0:
            return True
        header = getattr(msg, "header", None)
        stamp = int(header.stamp) if header is not None else time.time_ns()
        slot = stamp // int(1e9 / max_fps)
        if slot == route.last_slot:
            return False
        route.last_slot = slot
        return True

    def _views(self, topic: str, msg: Any) -> list[tuple[tuple[str, str], Any, bytes]]:
        """((Foxglove topic, schema name), schema, payload) for each channel this message goes to."""
        if isinstance(msg, msgs.Image):
            image = encode(msg, self.image_format)
            return [((topic, image.schema), descriptor(image.schema), image.data)]
        converted = self._converter.convert(topic, msg)
        if converted:
            return [
                ((view_topic, view.DESCRIPTOR.full_name), view.DESCRIPTOR, view.SerializeToString())
                for view_topic, view in converted
            ]
        # A type this process has not imported arrives as wire.UnknownMessage, which names its type.
        type_name = msg.TYPE_NAME if isinstance(msg, msgs.Message) else msg.type_name
        return [((topic, type_name), None, json.dumps(as_json(msg), default=str).encode())]

    def _open_channel(self, topic: str, schema_name: str, descriptor: Any) -> Any:
        fox = self._foxglove
        if descriptor is None:  # JSON, with a schema that names our type
            schema = fox.Schema(name=schema_name, encoding="jsonschema", data=JSON_SCHEMA)
            return fox.Channel(topic, schema=schema, message_encoding="json", context=self._context)
        schema = fox.Schema(name=schema_name, encoding="protobuf", data=schema_data(descriptor))
        return fox.Channel(topic, schema=schema, message_encoding="protobuf", context=self._context)

    def destroy(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()
            counts = self.counts
            self.log.info(
                "Foxglove link stopped: %d messages sent, %d unwatched, %d thinned by max_fps, %d failed, "
                "%d while their topic had no publisher",
                counts.sent,
                counts.unwatched,
                counts.thinned,
                counts.failed,
                counts.unpublished,
            )
        super().destroy()


class _Listener:
    """The SDK calls these from its own threads: they only log."""

    def __init__(self, link: FoxgloveLink) -> None:
        self._log = link.log

    def on_subscribe(self, client: Any, channel: Any) -> None:
        self._log.info("Foxglove client %s subscribed to %s", client.id, channel.topic)

    def on_unsubscribe(self, client: Any, channel: Any) -> None:
        self._log.info("Foxglove client %s unsubscribed from %s", client.id, channel.topic)


class _ClientLines(logging.Filter):
    """The SDK's lines about its clients, one per event and saying what happened.

    A client that stops reading and goes away gets an error line from the SDK for every message the SDK
    still tries to send it (127 lines "Broken pipe" for one stalled client), and a refused handshake
    gets "handshake failed", which does not say why. The first line about a client gone becomes one
    that says so, and the rest about it are dropped until the SDK says its connection closed; a refused
    handshake names the subprotocol this server needs."""

    _ABOUT_CLIENT = re.compile(r"^Error (?:sending message to|receiving from) client (\S+): (.*)$")
    _CLOSED = re.compile(r"^Connection closed by client (\S+)$")
    _HANDSHAKE = re.compile(r"^Dropping client (\S+): handshake failed$")
    _MAX_GONE = 1024  # clients remembered as gone, should the SDK ever not say their connection closed

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()  # the SDK logs from its own threads
        self._gone: dict[str, None] = {}  # addresses told gone, oldest first

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if closed := self._CLOSED.match(text):
            with self._lock:
                self._gone.pop(closed.group(1), None)
            return False  # INFO, let through only to learn that; ours say who came and went
        if (about := self._ABOUT_CLIENT.match(text)) and _LOST.search(about.group(2)):
            address, error = about.groups()
            with self._lock:
                if address in self._gone:
                    return False
                self._gone[address] = None
                if len(self._gone) > self._MAX_GONE:
                    del self._gone[next(iter(self._gone))]
            _reword(
                record,
                logging.WARNING,
                f"Foxglove client {address} gone ({error}); dropped what was queued for it",
            )
            return True
        if refused := self._HANDSHAKE.match(text):
            _reword(
                record,
                logging.WARNING,
                f"Foxglove client {refused.group(1)} refused at the WebSocket handshake: not a WebSocket "
                f"client, or one not offering the subprotocol {SDK_SUBPROTOCOL} (the Foxglove app), which is "
                f"all this server (foxglove-sdk) accepts; one offering only {OLD_SUBPROTOCOL} (Lichtblick, "
                "older Foxglove Studio) cannot connect",
            )
            return True
        return record.levelno >= logging.WARNING


# The errors that mean a client's connection is lost for good (the rest it may recover from: said each)
_LOST = re.compile(r"broken pipe|connection reset|connection closed|not connected", re.IGNORECASE)


def _reword(record: logging.LogRecord, level: int, text: str) -> None:
    record.msg, record.args = text, None
    record.levelno, record.levelname = level, logging.getLevelName(level)


_CLIENT_LINES = _ClientLines()


def _quiet_sdk_logs() -> None:
    """Put _ClientLines on the SDK's loggers of client connections (named after its Rust modules). The
    poller's INFO lines are let through to the filter, which keeps only what it needs of them."""
    for name in ("foxglove.websocket.server", "foxglove.websocket.connected_client.poller"):
        logger = logging.getLogger(name)
        logger.addFilter(_CLIENT_LINES)  # once, however many links this process runs
        logger.setLevel(logging.INFO)
