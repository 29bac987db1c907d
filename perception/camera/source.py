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

A live source (a device, a stream, a pipeline) delivers at its own pace whatever its reader asks for:
read in a thread of its own as its frames come, `read` gives the latest (None until a new one has come)
and counts the ones it replaced as skipped. Read at the caller's pace instead, OpenCV hands out every
frame in order, each older than the last: a 30 fps stream read 5 times a second was 0.4 s behind after a
second and 9.7 s after twelve. `stamp_ns` is when the frame returned was read off the source.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

MAX_FILE_FPS = 1000.0  # a video file claiming more is read as fast as it is asked for (a broken header)
# How long opening a network stream or reading its frame may take before it counts as failed: FFmpeg's
# own default is 30 s, during which a stream that accepted the connection and says nothing held the
# node (no stats, deaf to Ctrl-C). An RTSP camera may take a few seconds to set up its stream (opened in
# a thread of its own); one that delivers no frame for 2 s has stalled (a read blocks the node).
OPEN_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 2.0
# A source that failed is opened again after a wait that doubles from the first to the second.
MIN_BACKOFF_S, MAX_BACKOFF_S = 0.5, 10.0


class Backoff:
    """When to try a failed source again: after a wait that doubles with each failure in a row, from
    `least_s` up to `most_s`, and starts again from `least_s` after a success."""

    def __init__(self, least_s: float = MIN_BACKOFF_S, most_s: float = MAX_BACKOFF_S) -> None:
        self.least_s, self.most_s = least_s, most_s
        self._wait_s = least_s
        self.retry_at = 0.0

    def due(self, now: float) -> bool:
        return now >= self.retry_at

    def failed(self, now: float) -> None:
        self.retry_at = now + self._wait_s
        self._wait_s = min(self._wait_s * 2, self.most_s)

    def succeeded(self) -> None:
        self._wait_s = self.least_s


@dataclass
class SourceStatus:
    connected: bool = False
    frames: int = 0
    failures: int = 0  # reads or opens that failed
    reconnects: int = 0  # successful opens after the first
    last_error: str = ""
    # Frames passed over: a video file's, to keep up with time; a live source's, replaced by a newer
    # one before they were taken (the source delivers faster than it is read)
    skipped: int = 0
    ended: bool = False  # a video file that reached its end without `loop`: no more frames
    cut_short: bool = False  # a video file that ended before the frame count its header gives


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
    pipeline where OpenCV has no GStreamer (the PyPI wheels have none), and a file that is missing, a
    folder, or not a video OpenCV reads. A device or a URL may come later (plugged in, a stream
    started), so those are retried."""
    if describe(spec)[1] == cv2.CAP_GSTREAMER and not video_backends().get("GStreamer", False):
        raise ValueError(
            f"source {spec!r} is a GStreamer pipeline, but this OpenCV ({cv2.__version__}) was built without "
            "GStreamer; install one built with it (Debian's python3-opencv, or opencv-python built with "
            "ENABLE_GSTREAMER), or give a device, file or URL (FFmpeg reads RTSP and HTTP)"
        )
    if not is_file(spec):
        return
    path = Path(spec)
    if "%" in path.name:  # an image sequence, frame_%04d.png
        _check_sequence(spec, path)
        return
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        example = (
            f"{spec.rstrip('/')}/{_pattern(names[0])}" if names else f"{spec.rstrip('/')}/frame_%04d.png"
        )
        raise ValueError(
            f"source {spec!r}: expected a video file, found a folder; give its images as a numbered "
            f"sequence such as {example} (OpenCV's pattern)"
        )
    if not path.exists():
        raise ValueError(f"source {spec!r}: no such file")
    capture = _capture(spec)
    try:
        if not capture.isOpened() or not capture.grab():
            raise ValueError(
                f"source {spec!r}: expected a video or image file OpenCV can read, found "
                f"{path.stat().st_size:,} bytes it cannot (OpenCV {cv2.__version__}; back-ends: "
                f"{', '.join(name for name, on in video_backends().items() if on)})"
            )
    finally:
        capture.release()


def _check_sequence(spec: str, path: Path) -> None:
    """An image sequence's folder must hold its images, and they must be 8-bit: OpenCV's sequence
    reader scales 16-bit images (depth in millimetres) down to 8-bit colour without a word."""
    if not path.parent.is_dir():
        raise ValueError(
            f"source {spec!r}: an image sequence in a folder that does not exist ({path.parent})"
        )
    # frame_%04d.png -> frame_(\d{4,})\.png: the names OpenCV's reader would take
    digits = re.compile(r"%0?(\d*)d")
    number = re.compile(digits.sub(lambda m: r"(\d{%s,})" % (m.group(1) or 1), re.escape(path.name)))
    frames = sorted(p for p in path.parent.iterdir() if number.fullmatch(p.name))
    if not frames:
        raise ValueError(f"source {spec!r}: no image in {path.parent} matches {path.name}")
    first = cv2.imread(str(frames[0]), cv2.IMREAD_UNCHANGED)
    if first is not None and first.dtype != np.uint8:
        raise ValueError(
            f"source {spec!r}: expected 8-bit images, found {first.dtype} ({frames[0].name}), which "
            "OpenCV's sequence reader would turn into 8-bit colour (depth images are not a camera source)"
        )


# The image files looked for in a folder of views (`calibrate --images`) or of frames (a folder given as a
# camera's source, to name its numbered pattern).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _pattern(name: str) -> str:
    """OpenCV's numbered pattern for a file name such as frame_0001.png: frame_%04d.png."""
    match = re.search(r"(\d+)(?=\.[^.]+$)", name)
    return name if match is None else f"{name[: match.start()]}%0{len(match.group(1))}d{name[match.end() :]}"


def is_device(spec: str) -> bool:
    """A device index (`0`) or path (`/dev/video2`)."""
    return spec.isdigit() or spec.startswith("/dev/")


def is_stream(spec: str) -> bool:
    """A network stream's URL (rtsp://, http://), which FFmpeg reads."""
    return "://" in spec


def is_file(spec: str) -> bool:
    """A source that names a file (or an image sequence), not a device, a URL or a pipeline."""
    return not (is_device(spec) or is_stream(spec) or "!" in spec)


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
        min_backoff_s: float = MIN_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        on_frame: Callable[[], None] | None = None,
    ) -> None:
        """`on_frame`: called (on the reader's thread) as each frame of a live source comes, so that the
        caller takes it then rather than at a rate of its own, whose ticks drift against the source's
        and find none, then two."""
        check(spec)
        self.on_frame = on_frame
        self.spec, self.width, self.height, self.fps, self.loop = spec, width, height, fps, loop
        self.status = SourceStatus()
        self._capture: cv2.VideoCapture | None = None
        self.backoff = Backoff(min_backoff_s, max_backoff_s)
        self._opened_once = False
        # A video file (a source of known length): its frame rate (0 for a live source, which paces
        # itself, or a file that gives none), when its first frame was read, frames read or skipped since.
        self._is_file = False
        self._file_fps = 0.0
        self._started_at: float | None = None
        self._position = 0
        self._frame_count = 0  # as the file's header gives it
        self._opening: _Opening | None = None  # a stream's or device's open under way
        self._live: _LatestFrame | None = None  # a live source, read as it delivers
        self.stamp_ns = 0  # when the last frame returned was read off the source (time.time_ns())

    @property
    def live(self) -> bool:
        """A device, stream or pipeline being read as it delivers (not a file, nor one being opened)."""
        return self._live is not None

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
        if self.status.ended or (self._capture is None and self._live is None and not self._open(now)):
            return None
        if self._live is not None:
            return self._latest(now, self._live)
        assert self._capture is not None
        self._skip_to(now)
        ok, frame = self._capture.read()
        if not ok and self._is_file and self._position:
            # A file at its end: open it again rather than seek, so a file that was replaced or removed
            # meanwhile is noticed (an open descriptor would keep reading the old one forever).
            self.close()
            ending = f"source {self.spec!r} ended after {self._position} frames"
            # A header's count may be off by a frame or two (a container's rounding); more is a file
            # cut short or unreadable beyond a point: said, not taken for its end.
            if self._position < self._frame_count - 2:
                self.status.cut_short = True
                ending += f" of the {self._frame_count} its header gives: cut short or unreadable from there"
            if not self.loop:
                self.status.ended = True
                self.status.last_error = ending
                return None
            if self.status.cut_short:
                self.status.last_error = ending
            if not self._open(now, reopening=True):
                return None
            self._started_at = now
            ok, frame = self._capture.read()
        if not ok or frame is None:
            self._fail(now, f"source {self.spec!r} gave no frame (unplugged, ended or dead)")
            return None
        self.backoff.succeeded()
        self.status.frames += 1
        self._position += 1
        self.stamp_ns = time.time_ns()
        return frame

    def _latest(self, now: float, live: _LatestFrame) -> np.ndarray | None:
        taken = live.take()
        if taken is None:
            if live.error:
                self._fail(now, live.error)
            return None
        frame, self.stamp_ns, passed_over = taken
        self.backoff.succeeded()
        self.status.frames += 1
        self.status.skipped += passed_over
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
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._opening is not None:
            self._opening.abandon()
            self._opening = None
        self.status.connected = False

    def _open(self, now: float, reopening: bool = False) -> bool:
        if not self.backoff.due(now):
            return False
        if is_file(self.spec):  # a file opens at once
            capture = _capture(self.spec)
        else:  # a stream or a device may take seconds: opened aside, so the node goes on meanwhile
            if self._opening is None:
                self._opening = _Opening(self.spec)
            if not self._opening.done.is_set():
                return False
            opened, self._opening = self._opening.capture, None
            assert opened is not None  # set before done
            capture = opened
        if not capture.isOpened():
            capture.release()
            self._fail(now, f"source {self.spec!r} did not open{_why_not(self.spec)}")
            return False
        if self.width and self.height:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            capture.set(cv2.CAP_PROP_FPS, self.fps)
        # A file, or a source of known length (a video over HTTP): it plays at the rate it was recorded
        # at, if it says one. A file whose container gives no length (raw H.264) is a file all the same.
        self._frame_count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        self._is_file = is_file(self.spec) or self._frame_count > 0
        rate = capture.get(cv2.CAP_PROP_FPS) if self._is_file else 0.0
        self._file_fps = rate if 0 < rate <= MAX_FILE_FPS else 0.0
        self._started_at, self._position = None, 0
        if self._is_file:
            self._capture = capture
        else:
            self._live = _LatestFrame(capture, self.spec, self.on_frame)
        self.status.connected = True
        self.status.reconnects += self._opened_once and not reopening
        self._opened_once = True
        return True

    def _fail(self, now: float, reason: str) -> None:
        self.close()
        self.status.failures += 1
        self.status.last_error = reason
        self.backoff.failed(now)


def video_devices() -> list[tuple[str, str]]:
    """This machine's video devices (path, the driver's name for it), as V4L2 lists them."""
    devices = []
    for path in sorted(Path("/dev").glob("video*"), key=lambda p: (len(p.name), p.name)):
        name_file = Path("/sys/class/video4linux") / path.name / "name"
        name = name_file.read_text().strip() if name_file.is_file() else ""
        devices.append((str(path), name))
    return devices


def _why_not(spec: str) -> str:
    """What can be said of a source that did not open, beyond OpenCV's silence."""
    if is_device(spec):
        devices = [path for path, _ in video_devices()]
        return f" (video devices here: {', '.join(devices) or 'none'})"
    if is_stream(spec):
        return f" (refused, or no answer within {OPEN_TIMEOUT_S:g} s)"
    return ""


def _capture(spec: str) -> cv2.VideoCapture:
    """A capture; a network stream's open and reads give up in time. Only FFmpeg honours these
    settings, and a back-end that does not take one refuses the whole open (OpenCV's V4L2 and MJPEG
    readers do), so a device or a file is opened without them."""
    target, backend = describe(spec)
    if not is_stream(spec):
        return cv2.VideoCapture(target, backend)
    timeouts = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(OPEN_TIMEOUT_S * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(READ_TIMEOUT_S * 1000),
    ]
    return cv2.VideoCapture(target, backend, timeouts)


class _Opening:
    """A capture being opened in a thread of its own (a stream's server may take up to OPEN_TIMEOUT_S
    to answer, or never answer): the node's thread keeps its stats and its Ctrl-C meanwhile."""

    def __init__(self, spec: str) -> None:
        self.capture: cv2.VideoCapture | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()  # one of the two threads releases an abandoned capture, once
        self._abandoned = False
        threading.Thread(target=self._run, args=(spec,), name="camera-open", daemon=True).start()

    def _run(self, spec: str) -> None:
        capture = _capture(spec)
        with self._lock:
            self.capture = capture
            self.done.set()
            if self._abandoned:  # closed while it opened: nobody will take it
                capture.release()

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            if self.capture is not None:
                self.capture.release()


class _LatestFrame:
    """A live capture read in a thread of its own as its frames come, keeping the latest: the node's
    thread takes it at its own rate and is never held by a read (a device's may block for seconds)."""

    def __init__(self, capture: cv2.VideoCapture, spec: str, on_frame: Callable[[], None] | None) -> None:
        self._lock = threading.Lock()
        self._on_frame = on_frame
        self._frame: np.ndarray | None = None
        self._stamp_ns = 0
        self._passed_over = 0  # frames replaced before they were taken, since the last take
        self.error = ""  # why reading stopped, said once the thread has released the capture
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(capture, spec), name="camera-read", daemon=True
        )
        self._thread.start()

    def _run(self, capture: cv2.VideoCapture, spec: str) -> None:
        try:
            while not self._stopping.is_set():
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                with self._lock:
                    self._passed_over += self._frame is not None
                    self._frame, self._stamp_ns = frame, time.time_ns()
                if self._on_frame is not None:
                    self._on_frame()
        finally:
            # Here, once the read under way has returned (never from another thread), and before the
            # failure is said: a device opened again while this one still held it would be busy.
            capture.release()
        if not self._stopping.is_set():
            self.error = f"source {spec!r} gave no frame (unplugged, ended or dead)"

    def take(self) -> tuple[np.ndarray, int, int] | None:
        """The newest frame not taken yet, when it was read, and how many it replaced; None if none."""
        with self._lock:
            if self._frame is None:
                return None
            taken = (self._frame, self._stamp_ns, self._passed_over)
            self._frame, self._passed_over = None, 0
            return taken

    def stop(self) -> None:
        """Ask the thread to end, and wait for the read under way (a live source's next frame is due
        within a frame's time; a stalled stream's read gives up after READ_TIMEOUT_S): a process that
        exits while OpenCV reads in a thread of its own aborts ("FATAL: exception not rethrown"). A dead
        device's read may block longer (OpenCV's V4L2 waits 10 s): not waited for, within a launcher's
        5 s grace."""
        self._stopping.set()
        if self._thread is not threading.current_thread():
            self._thread.join(READ_TIMEOUT_S + 1.0)
