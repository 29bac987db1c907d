"""What the viewer has seen: written by the node's thread, read by the web server's threads.

Each image stream is drawn with the overlays that belong to it: detections, tracks and grasps whose
header names the same camera frame. Because the detector answers a frame some milliseconds after it was
taken, a stream shows the newest image that every live overlay topic has already answered (matching
stamps), not simply the newest image with the boxes of an older one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2

from perception import msgs
from perception.display import overlay

IMAGES_KEPT = 16  # per image topic: how far back a stream can look for an answered frame
OVERLAYS_KEPT = 32
RATE_WINDOW_S = 3.0
LIVE_S = 2.0  # an overlay topic silent this long no longer holds a stream back
TRAIL_LENGTH = 30
OVERLAY_TYPES = (msgs.Detections, msgs.Tracks, msgs.Grasps)


@dataclass
class Frame:
    key: tuple[Any, ...]  # what it was drawn from (stamps and sequence numbers): same key, same picture
    jpeg: bytes


class ViewerState:
    def __init__(self, jpeg_quality: int = 80) -> None:
        self.jpeg_quality = jpeg_quality
        self.lock = threading.Lock()
        self.images: dict[str, deque[msgs.Image]] = {}
        self.overlays: dict[str, deque[tuple[float, Any]]] = {}  # (arrival, message)
        self.camera_info: dict[str, deque[msgs.CameraInfo]] = {}  # by frame id, newest last
        self.trails: dict[str, dict[int, deque[tuple[float, float]]]] = {}
        self.arrivals: dict[str, deque[float]] = {}
        self.first_seen: dict[str, float] = {}
        self.types: dict[str, str] = {}
        self.graph: list[dict[str, Any]] = []
        self.registry_error = ""  # why the registry did not answer the last time it was asked
        self.frames_sent: dict[str, int] = {}
        self._drawn: dict[tuple[str, bool], Frame] = {}

    # The node's thread ----------------------------------------------------------------------------

    def add(self, topic: str, msg: Any) -> None:
        now = time.monotonic()
        with self.lock:
            arrivals = self.arrivals.setdefault(topic, deque())
            arrivals.append(now)
            while now - arrivals[0] > RATE_WINDOW_S:
                arrivals.popleft()
            self.first_seen.setdefault(topic, now)
            self.types[topic] = getattr(msg, "TYPE_NAME", "") or getattr(msg, "type_name", "")
            if isinstance(msg, msgs.Image):
                self.images.setdefault(topic, deque(maxlen=IMAGES_KEPT)).append(msg)
            elif isinstance(msg, msgs.CameraInfo):
                self.camera_info.setdefault(msg.header.frame_id, deque(maxlen=IMAGES_KEPT)).append(msg)
            elif isinstance(msg, OVERLAY_TYPES):
                self.overlays.setdefault(topic, deque(maxlen=OVERLAYS_KEPT)).append((now, msg))
                if isinstance(msg, msgs.Tracks):
                    self._extend_trails(topic, msg)

    def _extend_trails(self, topic: str, tracks: msgs.Tracks) -> None:
        trails = self.trails.setdefault(topic, {})
        alive = {int(i) for i in tracks.ids}
        for gone in set(trails) - alive:
            del trails[gone]
        for track_id, (x1, _, x2, y2) in zip(tracks.ids, tracks.xyxy, strict=True):
            trails.setdefault(int(track_id), deque(maxlen=TRAIL_LENGTH)).append(
                ((float(x1) + float(x2)) / 2, float(y2))
            )

    # The web server's threads ---------------------------------------------------------------------

    def rates(self) -> dict[str, float]:
        """Messages per second over the last few seconds, per topic (0 once a topic falls silent)."""
        now = time.monotonic()
        with self.lock:
            result = {}
            for topic, times in self.arrivals.items():
                recent = sum(1 for t in times if now - t <= RATE_WINDOW_S)  # a silent topic is not pruned
                # Over the whole window once there is one: a burst (a backlog handed over at once when
                # the subscription starts) then weighs no more than it should.
                span = min(now - self.first_seen[topic], RATE_WINDOW_S)
                result[topic] = round(recent / span, 2) if span > 0.5 else 0.0
            return result

    def image_topics(self) -> list[str]:
        with self.lock:
            return sorted(self.images)

    def frame(self, topic: str, with_overlays: bool = True) -> Frame | None:
        """The stream's current picture as JPEG; drawn once per new input and shared by all viewers."""
        with self.lock:
            picked = self._pick(topic, with_overlays)
            if picked is None:
                return None
            image, drawn_overlays, info = picked
            key = (_identity(image), *((t, _identity(m)) for t, m in drawn_overlays))
            cached = self._drawn.get((topic, with_overlays))
            if cached is not None and cached.key == key:
                return cached
            trails = {
                t: {i: list(points) for i, points in self.trails.get(t, {}).items()}
                for t, m in drawn_overlays
                if isinstance(m, msgs.Tracks)
            }
        canvas = overlay.displayable(image)
        labels: overlay.PlacedLabels = []  # every overlay's labels make room for those drawn before them
        for overlay_topic, msg in drawn_overlays:
            if isinstance(msg, msgs.Detections):
                overlay.draw_detections(canvas, msg, labels)
            elif isinstance(msg, msgs.Tracks):
                overlay.draw_tracks(canvas, msg, trails[overlay_topic], labels)
            elif isinstance(msg, msgs.Grasps) and info is not None:
                overlay.draw_grasps(canvas, msg, info)
        ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            return None
        frame = Frame(key, encoded.tobytes())
        with self.lock:
            self._drawn[(topic, with_overlays)] = frame
        return frame

    def _pick(
        self, topic: str, with_overlays: bool
    ) -> tuple[msgs.Image, list[tuple[str, Any]], msgs.CameraInfo | None] | None:
        """(image, the (topic, overlay message) pairs to draw on it, its camera's info); lock held."""
        images = self.images.get(topic)
        if not images:
            return None
        newest = images[-1]
        frame_id = newest.header.frame_id
        if not with_overlays:
            return newest, [], None
        now = time.monotonic()
        live = {
            overlay_topic: kept
            for overlay_topic, kept in self.overlays.items()
            if kept and kept[-1][1].header.frame_id == frame_id and now - kept[-1][0] <= LIVE_S
        }
        answered = [{m.header.stamp for _, m in kept} for kept in live.values()]
        image = next(
            (i for i in reversed(images) if all(i.header.stamp in stamps for stamps in answered)), newest
        )
        drawn = []
        for overlay_topic, kept in live.items():
            older = [m for _, m in kept if m.header.stamp <= image.header.stamp]
            if older:
                drawn.append((overlay_topic, max(older, key=lambda m: m.header.stamp)))
        # A camera on an arm moves: grasps are drawn through the pose the camera had for this image.
        infos = [i for i in self.camera_info.get(frame_id, []) if i.header.stamp <= image.header.stamp]
        info = max(infos, key=lambda i: i.header.stamp) if infos else None
        return image, drawn, info

    def count_sent(self, topic: str) -> None:
        with self.lock:
            self.frames_sent[topic] = self.frames_sent.get(topic, 0) + 1


def _identity(msg: Any) -> tuple[int, int]:
    """A message's (stamp, sequence number): what tells one frame's picture from the next."""
    return int(msg.header.stamp), int(msg.header.seq)
