"""`percept view`: a web page of the running graph, served on localhost.

The node subscribes to every topic it finds (rates for all; images, camera info, detections, tracks
and grasps kept for drawing). The web server runs in threads beside it and serves:

| path | what |
|---|---|
| `/` | the page (plain HTML and JavaScript, no build step) |
| `/api/graph` | nodes, topics with type, rate, publishers and subscribers, and the image streams (JSON) |
| `/snapshot?topic=T&overlays=1` | topic T's current picture as one JPEG, overlays drawn; its ETag names the picture, and a request whose If-None-Match names it still is answered 304 |
| `/stream?topic=T&fps=15&overlays=1` | the same as MJPEG (multipart/x-mixed-replace), for players and `<img>` tags |

The page pulls each stream's pictures with `/snapshot`, the next once the last has come: a slow link
shows fewer pictures, each current, where a pushed stream queues them in the socket's buffers (a
40 KB/s link was a minute behind), and no request holds one of the 6 connections a browser keeps to a
server (past 6 MJPEG streams, in any tabs, every page froze). `/stream` sends a picture only once the
link holds less than a picture's bytes unacknowledged, so at most about two are on their way. A picture
is drawn and encoded once per new input, however many browsers watch it, and only while one does: an
unwatched stream costs the viewer its subscription alone. Every request first passes the checks of
perception.viewer.access (its Host header, its Origin, and off loopback or with a keystore a token).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import select
import socket
import termios
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlparse

from perception.runtime.graph import graph_nodes, tool_node
from perception.runtime.qos import QoS
from perception.runtime.registry import registry_address
from perception.runtime.security import Keys
from perception.runtime.stats import Throttle
from perception.runtime.stopping import StopFlag, stop_signals_call
from perception.viewer.access import Access
from perception.viewer.state import ViewerState

log = logging.getLogger("percept.viewer")

BOUNDARY = "percept-frame"
MAX_FPS = 30.0


class ViewerServer(ThreadingHTTPServer):
    daemon_threads = True  # a browser left open does not hold the process at exit
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], state: ViewerState, default_fps: float, access: Access | None = None
    ) -> None:
        super().__init__(address, _Handler)
        self.state, self.default_fps = state, default_fps
        self.access = access or Access.for_address(address[0], None)
        self.access.use_port(self.server_address[1])  # port 0 is known only now
        self.stopping = threading.Event()
        self.error_log = Throttle()  # a page refreshing a broken picture must not flood the log


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a request log per frame would drown the terminal

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        refusal = self.server.access.refusal(
            {k.lower(): v for k, v in self.headers.items()}, query, str(self.connection.getsockname()[0])
        )
        if refusal is not None:
            self._send(refusal[0], "text/plain; charset=utf-8", refusal[1].encode())
            return
        self.cookie = self.server.access.cookie_for(query)
        try:
            if url.path in ("/", "/index.html"):
                page = resources.files("perception.viewer").joinpath("index.html").read_bytes()
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", page)
            elif url.path == "/api/graph":
                self._send(HTTPStatus.OK, "application/json", json.dumps(self._graph()).encode())
            elif url.path == "/snapshot":
                self._snapshot(query)
            elif url.path == "/stream":
                self._stream(query)
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", f"no page {url.path}".encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away
        except Exception as exc:  # a frame or overlay that cannot be drawn: one line, not a traceback
            if self.server.error_log.ready():
                log.error("viewer: %s %s failed: %s: %s", url.path, query, type(exc).__name__, exc)
            if url.path != "/stream":  # a stream has sent its headers already: it just ends
                with contextlib.suppress(OSError):
                    body = f"{type(exc).__name__}: {exc}".encode()
                    self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", body)

    cookie: str | None = None  # the token's cookie, for a request that brought the token in its address

    def _send(
        self, status: HTTPStatus, content_type: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        if self.cookie:
            self.send_header("Set-Cookie", self.cookie)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _snapshot(self, query: dict[str, str]) -> None:
        topic = query.get("topic", "")
        frame = self.server.state.frame(topic, query.get("overlays", "1") != "0")
        if frame is None:
            self._not_found(topic)
            return
        tag = f'"{hash(frame.key) & 0xFFFFFFFFFFFF:x}"'
        if self.headers.get("If-None-Match") == tag:  # the page has this picture: no bytes again
            self._send(HTTPStatus.NOT_MODIFIED, "image/jpeg", b"", {"ETag": tag})
            return
        self._send(HTTPStatus.OK, "image/jpeg", frame.jpeg, {"ETag": tag})
        self.server.state.count_sent(topic)

    def _not_found(self, topic: str) -> None:
        streams = ", ".join(self.server.state.image_topics()) or "none yet"
        text = f"no image topic {topic!r} (image topics: {streams})"
        self._send(HTTPStatus.NOT_FOUND, "text/plain", text.encode())

    def _graph(self) -> dict[str, Any]:
        state = self.server.state
        rates = state.rates()
        with state.lock:
            nodes = [n for n in state.graph if not n["name"].startswith("/_percept_view")]
            registry_error = state.registry_error
            types = dict(state.types)
            sent = dict(state.frames_sent)
        topics: dict[str, dict[str, Any]] = {}
        for node in nodes:
            for role, key in (("publishers", "publishers"), ("subscribers", "subscriptions")):
                for endpoint in node[key]:
                    entry = topics.setdefault(
                        endpoint["topic"],
                        {
                            "topic": endpoint["topic"],
                            "type": endpoint["type"],
                            "publishers": [],
                            "subscribers": [],
                        },
                    )
                    entry[role].append(node["name"])
                    if role == "publishers":
                        entry["type"] = endpoint["type"]
        for topic, entry in topics.items():
            entry["rate_hz"] = rates.get(topic, 0.0)
            entry["type"] = entry["type"] or types.get(topic, "")
        return {
            "nodes": [
                {
                    "name": n["name"],
                    "publishes": sorted({p["topic"] for p in n["publishers"]}),
                    "subscribes": sorted({s["topic"] for s in n["subscriptions"]}),
                }
                for n in nodes
            ],
            "topics": sorted(topics.values(), key=lambda t: t["topic"]),
            "streams": state.image_topics(),
            # the page's pace unless its address asks ?fps=, and the most it may ask
            "stream_fps": {"default": min(self.server.default_fps, MAX_FPS), "max": MAX_FPS},
            "frames_sent": sent,
            "registry": {"address": registry_address(), "error": registry_error},
        }

    def _stream(self, query: dict[str, str]) -> None:
        state, topic = self.server.state, query.get("topic", "")
        with_overlays = query.get("overlays", "1") != "0"
        try:
            fps = float(query.get("fps", self.server.default_fps))
        except ValueError:
            fps = math.nan
        if not math.isfinite(fps) or fps <= 0:
            text = f"fps: expected a number above 0, found {query.get('fps')!r}"
            self._send(HTTPStatus.BAD_REQUEST, "text/plain", text.encode())
            return
        fps = min(fps, MAX_FPS)
        if state.frame(topic, with_overlays) is None:
            self._not_found(topic)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        period, last_key, next_time = 1.0 / fps, None, time.monotonic()
        while not self.server.stopping.is_set():
            frame = state.frame(topic, with_overlays)
            # A link slower than the stream: the next picture waits until the last has left the
            # socket, rather than queue behind it in the kernel's buffers (megabytes: a minute behind).
            if (
                frame is not None
                and frame.key != last_key
                and _unsent_bytes(self.connection) < len(frame.jpeg)
            ):
                head = (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame.jpeg)}\r\n\r\n"
                )
                self.wfile.write(head.encode() + frame.jpeg + b"\r\n")
                self.wfile.flush()
                state.count_sent(topic)
                last_key = frame.key
            elif self._client_gone():
                return  # a closed tab: without this its thread waited for the topic's next frame
            next_time = max(next_time + period, time.monotonic())
            time.sleep(max(next_time - time.monotonic(), 0.0))

    def _client_gone(self) -> bool:
        """True once the browser has closed the stream: a browser sends nothing more on it, so its
        socket turning readable means end of file (or a reset)."""
        # poll, not select: select takes no descriptor above 1023, and every process raises its
        # open-file limit (runtime.gatekeeper), so a busy viewer may hold such a one.
        poller = select.poll()
        poller.register(self.connection, select.POLLIN)
        if not poller.poll(0):
            return False
        try:
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True
        return peeked == b""


def _unsent_bytes(connection: socket.socket) -> int:
    """Bytes written to a TCP socket that its peer has not acknowledged yet (Linux's SIOCOUTQ); 0 where
    the system does not say."""
    try:
        queued = bytearray(4)
        fcntl.ioctl(connection.fileno(), termios.TIOCOUTQ, queued)
        return int.from_bytes(queued, "little", signed=True)
    except OSError:
        return 0


def _keeper(state: ViewerState, topic: str) -> Callable[[Any], None]:
    return lambda msg: state.add(topic, msg)


def run(
    host: str,
    port: int,
    fps: float,
    jpeg_quality: int,
    duration_s: float | None,
    token: str | None = None,
    allow_hosts: tuple[str, ...] = (),
) -> int:
    """The viewer node and its web server until Ctrl-C (or `duration_s`)."""
    state = ViewerState(jpeg_quality)
    # The keys the viewer's node joins the graph with (PERCEPT_KEYSTORE's): a graph that keeps other
    # users out must not be handed to them by its viewer on loopback.
    access = Access.for_address(host, token, allow_hosts, keystore=Keys.from_environment() is not None)
    # First: a port in use fails before any socket is made.
    server = ViewerServer((host, port), state, fps, access)
    node = tool_node("view")
    subscribed: set[str] = set()
    everything = QoS(depth=4)  # rates count what arrives; a slow drawing never builds a backlog

    def discover() -> None:
        try:
            nodes = graph_nodes(include_hidden=True)
        except Exception as exc:  # no registry (yet): the page says so, and the graph is emptied
            with state.lock:
                state.registry_error = str(exc)
                state.graph = []
            return
        with state.lock:
            state.graph = nodes
            state.registry_error = ""
        for n in nodes:
            if n["name"].startswith("/_percept_view"):
                continue
            for publisher in n["publishers"]:
                topic = publisher["topic"]
                if topic not in subscribed:
                    subscribed.add(topic)
                    node.create_subscription(None, topic, _keeper(state, topic), everything)

    thread = threading.Thread(target=server.serve_forever, name="viewer-http", daemon=True)
    stop = StopFlag()
    deadline = None if duration_s is None else time.monotonic() + duration_s
    with stop_signals_call(stop.set):
        try:
            thread.start()
            shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
            address = f"http://{shown}:{server.server_address[1]}/"
            if access.token is not None:
                address += f"?token={access.token}"
            print(f"viewer at {address} (Ctrl-C to stop)", flush=True)
            discover()
            node.create_timer(1.0, discover)
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                node.spin_once(0.05)
        finally:
            server.stopping.set()
            server.shutdown()
            server.server_close()
            node.destroy()
    return 0
