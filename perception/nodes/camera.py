"""The camera node: any OpenCV source (device, file, RTSP/HTTP URL, GStreamer pipeline) published as
the same topics as the simulator, so the detector, planner and tracker run unchanged on a real camera.

Topics: `camera/image` (rgb8), `camera/camera_info` (K and distortion from a ROS calibration file, or
nominal intrinsics; the camera pose from parameters), `~/stats` (CameraStats) once a second. A source
that fails or drops out is reopened with backoff; the node keeps running and says so in its stats. A
video file plays at its own frame rate (at most `rate`), skipping frames rather than falling behind; at
its end it starts again with `loop`, or else the node finishes (and a launch that requires it ends).
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from perception import Node, run
from perception.camera import Calibration, FrameSource, load_calibration
from perception.camera.calibration import CalibrationError
from perception.camera.source import is_file
from perception.msgs import CameraInfo, Header, Image
from perception.nodes._reporting import SourceReport
from perception.nodes.camera_pose import declare_camera_pose
from perception.runtime.qos import JOIN_WAIT_S


class CameraNode(Node):
    """Publish frames from a camera, a video file or a stream."""

    def __init__(self) -> None:
        super().__init__("camera")
        self.source_spec = str(
            self.declare_parameter(
                "source", "0", "device index, /dev/videoN, file, URL or GStreamer pipeline", read_only=True
            )
        )
        width = self.declare_parameter(
            "width", 0, "requested width (0: the source's)", read_only=True, range=(0, 16384)
        )
        height = self.declare_parameter(
            "height", 0, "requested height (0: the source's)", read_only=True, range=(0, 16384)
        )
        rate = self.declare_parameter(
            "rate", 30.0, "frames per second to publish at most", read_only=True, range=(0.01, 1000.0)
        )
        self.source = FrameSource(
            self.source_spec,
            width=width,
            height=height,
            fps=rate,
            loop=self.declare_parameter("loop", False, "start a video file again at its end", read_only=True),
            on_frame=self.create_waker(self.tick),
        )
        # A live source's frame is published as it comes, unless it comes sooner after the last one
        # published than this: `rate` as a cap (a little under its period: a camera at the rate asked
        # for has jitter, and a frame 32 ms after the last at 30 Hz is not one too many).
        self.min_gap_s = 0.8 / rate
        self.published_at = -float("inf")
        self.wait_s = self.declare_parameter(
            "wait_for_subscriber",
            JOIN_WAIT_S,
            "a video file's first frame waits this long at most for a subscriber to the image "
            "(0: not at all), so a graph's detector starting beside it misses none",
            read_only=True,
            range=(0.0, 3600.0),
        )
        path = self.declare_parameter(
            "calibration", "", "ROS camera_calibration YAML file (also OpenCV's or Kalibr's)", read_only=True
        )
        self.calibration: Calibration | None = load_calibration(path) if path else None
        if self.calibration is not None:
            self.log.info(
                "calibration %s: %dx%d, %s", path, self.calibration.width, self.calibration.height,
                self.calibration.distortion_model,
            )  # fmt: skip
        self.undistort = self.declare_parameter(
            "undistort", False, "publish undistorted images", read_only=True
        )
        if self.undistort and self.calibration is None:
            self.log.warning("undistort:=true needs a calibration file: frames are published as they come")
        self.requested = (width, height)
        self.frame_id = self.declare_parameter("frame_id", "camera", "frame id in headers", read_only=True)
        self.pose = declare_camera_pose(self)
        self.image_pub = self.create_publisher(Image, "camera/image")
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info")
        self.report = SourceReport(self, self.source_spec)
        self._maps: tuple[np.ndarray, np.ndarray] | None = None
        self._warned = ""
        self._started = time.monotonic()
        self._said_cut_short = False
        self.seq = 0
        self.create_timer(1.0 / rate, self.tick)
        self.create_timer(1.0, self.publish_stats)

    def tick(self) -> None:
        now = time.monotonic()
        if self.source.live and now - self.published_at < self.min_gap_s:
            return  # the frame waits, replaced by a newer one if one comes first (counted as skipped)
        if self.source.due_in(now) > 0:  # a video file, ahead of its frame rate
            return
        if self._waiting_for_subscriber(now):
            return
        frame = self.source.read(now)
        if frame is None and self.source.status.connected:  # a live source, with no new frame yet
            return
        if frame is None:
            error = self.source.status.last_error
            if self.source.status.ended:
                level = logging.WARNING if self.source.status.cut_short else logging.INFO
                self.log.log(level, "%s; the camera stops (loop:=true plays it again)", error)
                self.publish_stats()
                self.request_shutdown()
                return
            if error != self._warned:  # once per kind of failure, not once per retry
                self.log.warning("%s; retrying with backoff", error)
                self._warned = error
            return
        self._warned = ""
        if self.source.status.cut_short and not self._said_cut_short:  # looped: said once
            self._said_cut_short = True
            self.log.warning("%s; playing it from the start again", self.source.status.last_error)
        self.published_at = now
        stamp = self.source.stamp_ns  # when it was read off the source, not when this tick took it
        height, width = frame.shape[:2]
        if self.seq == 0:  # the first frame shows the mode the source delivers
            self._check_size(width, height)
        try:
            calibration = self._calibration(width, height)
        except CalibrationError as exc:  # intrinsics no scaling gives: wrong poses downstream, so stop
            self.log.error("%s", exc)
            raise SystemExit(1) from None
        if self.undistort and np.any(calibration.D):
            frame = self._undistorted(frame, calibration)
        header = Header(stamp=stamp, frame_id=self.frame_id, seq=self.seq)
        self.seq += 1
        self.image_pub.publish(
            Image(header=header, data=cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), encoding="rgb8")
        )
        # Undistorted frames are a pinhole's: no distortion, whatever model the calibration had.
        distortion = np.zeros(5) if self.undistort else calibration.D
        model = "plumb_bob" if self.undistort else calibration.distortion_model
        self.info_pub.publish(
            CameraInfo(
                header=header,
                width=width,
                height=height,
                K=calibration.K,
                D=distortion,
                distortion_model=model,
                pose=self.pose,
            )
        )

    def _waiting_for_subscriber(self, now: float) -> bool:
        """A video file's first frame waits (at most `wait_for_subscriber` s) for somebody to take it: a
        file is played once, and frames published before the graph's detector joined are lost to it."""
        if self.seq or not self.wait_s or not is_file(self.source_spec):
            return False
        return not (self.image_pub.subscriber_count or now - self._started >= self.wait_s)

    def _check_size(self, width: int, height: int) -> None:
        """A driver that cannot deliver the mode asked for substitutes another without a word: say so."""
        asked_width, asked_height = self.requested
        if (asked_width and asked_width != width) or (asked_height and asked_height != height):
            self.log.warning(
                "asked for %sx%s, the source delivers %dx%d",
                asked_width or "any", asked_height or "any", width, height,
            )  # fmt: skip

    def _calibration(self, width: int, height: int) -> Calibration:
        if self.calibration is None:
            self.calibration = Calibration.nominal(width, height)
            self.log.warning("no calibration file: nominal intrinsics (60° horizontal field of view)")
        if (self.calibration.width, self.calibration.height) != (width, height) and not self.calibration.path:
            self.calibration = Calibration.nominal(width, height)  # a new mode: nominal again, no scaling
            self._maps = None
        if (self.calibration.width, self.calibration.height) != (width, height):
            calibrated = self.calibration
            # Scale first: another aspect ratio is refused there, and "intrinsics scaled" just before that
            # error said the opposite of what happened.
            self.calibration = calibrated.scaled(width, height)
            self._maps = None
            self.log.warning(
                "calibrated at %dx%d, the source delivers %dx%d: intrinsics scaled",
                calibrated.width,
                calibrated.height,
                width,
                height,
            )
        return self.calibration

    def _undistorted(self, frame: np.ndarray, calibration: Calibration) -> np.ndarray:
        if self._maps is None:
            size = (calibration.width, calibration.height)
            if calibration.distortion_model == "equidistant":  # fisheye: another model, another map
                self._maps = cv2.fisheye.initUndistortRectifyMap(
                    calibration.K, calibration.D[:4], np.eye(3), calibration.K, size, cv2.CV_16SC2
                )
            else:
                self._maps = cv2.initUndistortRectifyMap(
                    calibration.K, calibration.D, None, calibration.K, size, cv2.CV_16SC2
                )
        return cv2.remap(frame, self._maps[0], self._maps[1], cv2.INTER_LINEAR)

    def publish_stats(self) -> None:
        self.report.publish(self.source.status)

    def on_shutdown(self) -> None:
        self.source.close()


if __name__ == "__main__":
    run(CameraNode)
