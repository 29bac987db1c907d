"""`FrameSource`: any OpenCV capture source, reopened with backoff when it fails or drops out.

    source = FrameSource("0")                    # a device index; also "/dev/video2"
    source = FrameSource("clip.mp4", loop=True)  # a video file, from the start again at its end
    source = FrameSource("rtsp://cam.local/stream")
    source = FrameSource("v4l2src ! videoconvert ! appsink")   # a GStreamer pipeline
    frame = source.read(now)                     # BGR frame, or None (the reason is in source.status)

`read` never raises for a source that is missing, unplugged or dead: it returns None, counts the
failure, and tries to open the source again after a delay that doubles up to `max_backoff_s`.

A video file plays at its own frame rate, as a camera would deliver it: `due_in(now)` says how long
until its next frame is due, and a reader that fell behind skips the frames it missed rather than play
slower than time. At its end the file starts again with `loop`, or else the source has ended
(`status.ended`) and gives no more frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

MAX_FILE_FPS = 1000.0  # a video file claiming more is read as fast as it is asked for (a broken header)


@dataclass
class SourceStatus:
    connected: bool = False
    frames: int = 0
    failures: int = 0  # reads or opens that failed
    reconnects: int = 0  # successful opens after the first
    last_error: str = ""
    skipped: int = 0  # a video file's frames passed over to keep up with time
    ended: bool = False  # a video file that reached its end without `loop`: no more frames


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
        # A video file (a source of known length): its frame rate (0 for a live source, which paces
        # itself, or a file that gives none), when its first frame was read, frames read or skipped since.
        self._is_file = False
        self._file_fps = 0.0
        self._started_at: float | None = None
        self._position = 0

    def due_in(self, now: float | None = None) -> float:
        """Seconds until a video file's next frame is due at the file's frame rate; 0 for a live source
        (its reads wait for the device) and when the next read should not wait."""
        if not self._file_fps or self._started_at is None:
            return 0.0
        now = time.monotonic() if now is None else now
        return max(0.0, self._started_at + self._position / self._file_fps - now)

    def read(self, now: float | None = None) -> np.ndarray | None:
        """The next frame (BGR), or None when there is none now."""
        now = time.monotonic() if now is None else now
        if self.status.ended or (self._capture is None and not self._open(now)):
            return None
        assert self._capture is not None
        self._skip_to(now)
        ok, frame = self._capture.read()
        if not ok and self._is_file and self._position:
            # A file at its end: open it again rather than seek, so a file that was replaced or removed
            # meanwhile is noticed (an open descriptor would keep reading the old one forever).
            self.close()
            if not self.loop:
                self.status.ended = True
                self.status.last_error = f"source {self.spec!r} ended after {self._position} frames"
                return None
            if not self._open(now, reopening=True):
                return None
            self._started_at = now
            ok, frame = self._capture.read()
        if not ok or frame is None:
            self._fail(now, f"source {self.spec!r} gave no frame (unplugged, ended or dead)")
            return None
        self._backoff = self.min_backoff_s
        self.status.frames += 1
        self._position += 1
        return frame

    def _skip_to(self, now: float) -> None:
        """A video file read later than its frames fall due: pass over the ones missed (grab, not decode)."""
        assert self._capture is not None
        if not self._file_fps:
            return
        if self._started_at is None:
            self._started_at = now
        due = int((now - self._started_at) * self._file_fps)  # the index of the frame due now
        while self._position < due and self._capture.grab():
            self._position += 1
            self.status.skipped += 1

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
        # A source of known length is a file: it plays at the rate it was recorded at, if it says one.
        self._is_file = capture.get(cv2.CAP_PROP_FRAME_COUNT) > 0
        rate = capture.get(cv2.CAP_PROP_FPS) if self._is_file else 0.0
        self._file_fps = rate if 0 < rate <= MAX_FILE_FPS else 0.0
        self._started_at, self._position = None, 0
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
