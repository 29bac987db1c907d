"""`FrameSource`: any OpenCV capture source, reopened with backoff when it fails or drops out.

    source = FrameSource("0")                    # a device index; also "/dev/video2"
    source = FrameSource("clip.mp4", loop=True)  # a video file, from the start again at its end
    source = FrameSource("rtsp://cam.local/stream")
    source = FrameSource("v4l2src ! videoconvert ! appsink")   # a GStreamer pipeline
    frame = source.read(now)                     # BGR frame, or None (the reason is in source.status)

`read` never raises for a source that is missing, unplugged or dead: it returns None, counts the
failure, and tries to open the source again after a delay that doubles up to `max_backoff_s`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class SourceStatus:
    connected: bool = False
    frames: int = 0
    failures: int = 0  # reads or opens that failed
    reconnects: int = 0  # successful opens after the first
    last_error: str = ""


def video_backends() -> dict[str, bool]:
    """The video I/O back-ends this OpenCV was built with (FFMPEG, GStreamer, v4l/v4l2, ...), from its
    build information: VideoCapture opens a source through one of them or not at all."""
    info = cv2.getBuildInformation()
    section = info[info.find("Video I/O:") :].split("\n\n")[0].splitlines()[1:]
    backends = {}
    for line in section:
        name, _, value = line.strip().partition(":")
        if line.startswith("    ") and not line.startswith("      ") and value.strip():
            backends[name.strip()] = value.strip().upper().startswith("YES")
    return backends


def check(spec: str) -> None:
    """Refuse at once a source this OpenCV can never open (rather than retrying it forever): a GStreamer
    pipeline where OpenCV has no GStreamer (the PyPI wheels have none)."""
    if describe(spec)[1] == cv2.CAP_GSTREAMER and not video_backends().get("GStreamer", False):
        raise ValueError(
            f"source {spec!r} is a GStreamer pipeline, but this OpenCV ({cv2.__version__}) was built without "
            "GStreamer; install one built with it (Debian's python3-opencv, or opencv-python built with "
            "ENABLE_GSTREAMER), or give a device, file or URL (FFmpeg reads RTSP and HTTP)"
        )


def describe(spec: str) -> tuple[str | int, int]:
    """What cv2.VideoCapture gets for a source string, and the backend to ask for."""
    if spec.isdigit():
        return int(spec), cv2.CAP_ANY
    if "!" in spec:  # a GStreamer pipeline description
        return spec, cv2.CAP_GSTREAMER
    return spec, cv2.CAP_ANY


class FrameSource:
    def __init__(
        self,
        spec: str,
        *,
        width: int = 0,
        height: int = 0,
        fps: float = 0.0,
        loop: bool = False,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
    ) -> None:
        check(spec)
        self.spec, self.width, self.height, self.fps, self.loop = spec, width, height, fps, loop
        self.min_backoff_s, self.max_backoff_s = min_backoff_s, max_backoff_s
        self.status = SourceStatus()
        self._capture: cv2.VideoCapture | None = None
        self._backoff = min_backoff_s
        self._retry_at = 0.0
        self._opened_once = False

    def read(self, now: float | None = None) -> np.ndarray | None:
        """The next frame (BGR), or None when there is none now."""
        now = time.monotonic() if now is None else now
        if self._capture is None and not self._open(now):
            return None
        assert self._capture is not None
        ok, frame = self._capture.read()
        if not ok and self.loop and self._capture.get(cv2.CAP_PROP_FRAME_COUNT) > 0:
            # A file at its end: open it again rather than seek, so a file that was replaced or removed
            # meanwhile is noticed (an open descriptor would keep reading the old one forever).
            self.close()
            if not self._open(now, reopening=True):
                return None
            ok, frame = self._capture.read()
        if not ok or frame is None:
            self._fail(now, f"source {self.spec!r} gave no frame (unplugged, ended or dead)")
            return None
        self._backoff = self.min_backoff_s
        self.status.frames += 1
        return frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        self.status.connected = False

    def _open(self, now: float, reopening: bool = False) -> bool:
        if now < self._retry_at:
            return False
        target, backend = describe(self.spec)
        capture = cv2.VideoCapture(target, backend)
        if not capture.isOpened():
            capture.release()
            self._fail(now, f"source {self.spec!r} did not open")
            return False
        if self.width and self.height:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            capture.set(cv2.CAP_PROP_FPS, self.fps)
        self._capture = capture
        self.status.connected = True
        self.status.reconnects += self._opened_once and not reopening
        self._opened_once = True
        return True

    def _fail(self, now: float, reason: str) -> None:
        self.close()
        self.status.failures += 1
        self.status.last_error = reason
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff_s)
