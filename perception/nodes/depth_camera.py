"""The depth camera node: colour, depth aligned to colour in metres and the colour camera's intrinsics,
on the simulator's topics, so the grasp planner runs unchanged on a real RGB-D camera.

Topics: `camera/image` (rgb8), `camera/depth` (32FC1 metres, NaN where the camera saw nothing),
`camera/camera_info` (K and distortion from the device; the camera's pose from parameters, or from a
hand-eye calibration through the grasp planner), `~/stats` (CameraStats) once a second. Drivers:
perception/camera/depth.py (`realsense`; a recording made by the SDK plays through `playback`). A device
that is not there (unplugged, or not yet) is looked for again with a backoff that doubles to 10 s, as
the colour camera node does and realsense2_camera waits for its device; one line says what was found.
A recording that is missing or broken stops the node at once; at its end it stops, or plays again
with `loop`.
"""

from __future__ import annotations

import time

from perception import Node, run
from perception.camera.depth import DRIVERS, DepthCameraError, DepthCameraMissing
from perception.camera.source import READ_TIMEOUT_S, Backoff, SourceStatus
from perception.errors import ParameterError
from perception.msgs import CameraInfo, Header, Image
from perception.nodes._reporting import SourceReport
from perception.nodes.camera_pose import declare_camera_pose
from perception.runtime.qos import JOIN_WAIT_S


class DepthCameraNode(Node):
    """Publish colour, aligned depth and intrinsics from a depth camera."""

    def __init__(self) -> None:
        super().__init__("depth_camera")
        driver = self.declare_parameter("driver", "realsense", f"one of {', '.join(DRIVERS)}", read_only=True)
        if driver not in DRIVERS:
            raise ParameterError(
                f"parameter 'driver': expected one of {', '.join(DRIVERS)}, found {driver!r}"
            )
        serial = self.declare_parameter(
            "serial", "", "the device's serial number (empty: the first)", read_only=True
        )
        playback = self.declare_parameter(
            "playback", "", "a recording made by the SDK, instead of a device", read_only=True
        )
        width = self.declare_parameter("width", 640, "stream width", read_only=True, range=(1, 4096))
        height = self.declare_parameter("height", 480, "stream height", read_only=True, range=(1, 4096))
        fps = self.declare_parameter("rate", 30, "the device's frame rate", read_only=True, range=(1, 300))
        self.frame_id = self.declare_parameter("frame_id", "camera", "frame id in headers", read_only=True)
        self.pose = declare_camera_pose(self)
        self.loop = self.declare_parameter("loop", False, "play a recording again at its end", read_only=True)
        self.source_name = playback or f"{driver}{f' {serial}' if serial else ''}"
        self.source = DRIVERS[driver](serial=serial, playback=playback, width=width, height=height, fps=fps)
        self.playback = bool(playback)
        self.status = SourceStatus()
        self.backoff = Backoff()
        self._last_frame_at = time.monotonic()
        try:
            self._open()
        except DepthCameraMissing as exc:  # may be plugged in later: looked for again
            self._failed(str(exc))
        except DepthCameraError as exc:  # a recording that will not open, a mode it does not offer
            raise ParameterError(str(exc)) from None
        self.image_pub = self.create_publisher(Image, "camera/image")
        self.depth_pub = self.create_publisher(Image, "camera/depth")
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info")
        self.report = SourceReport(self, self.source_name)
        self.timeouts = self.seq = 0
        self.join_deadline = time.monotonic() + JOIN_WAIT_S
        self.create_timer(0.5 / fps, self.tick)
        self.create_timer(1.0, self.publish_stats)

    def _open(self) -> None:
        self.source.open()
        self._last_frame_at = time.monotonic()  # a device's first frame may take a moment
        self.status.reconnects += self.status.frames > 0 or self.status.failures > 0
        self.status.connected = True
        self.backoff.succeeded()

    def _failed(self, reason: str) -> None:
        """Not there (or gone): said once per kind of failure, looked for again after a backoff."""
        if reason != self.status.last_error:
            self.log.warning("%s; looking again with backoff", reason)
        self.status.connected, self.status.last_error = False, reason
        self.status.failures += 1
        self.backoff.failed(time.monotonic())

    def tick(self) -> None:
        if not self.status.connected:
            if not self.backoff.due(time.monotonic()):
                return
            try:
                self._open()
            except DepthCameraError as exc:
                self._failed(str(exc))
                return
            self.log.info("%s connected", self.source_name)
        if self.playback and not self.status.frames and not self._joined():
            return  # a recording's first frames are not sent to no one, as `percept play` holds them too
        frame = self.source.read(timeout_s=0.05 if not self.playback else 1.0)
        if frame is None:
            self.timeouts += 1
            if self.playback and self.status.frames:
                self._recording_ended()
            elif not self.playback and time.monotonic() - self._last_frame_at > READ_TIMEOUT_S:
                self.source.close()  # unplugged mid-stream: its pipeline waits for frames forever
                self._failed(f"{self.source_name}: no frame for {READ_TIMEOUT_S:g} s (unplugged?)")
            return
        self.status.frames += 1
        self._last_frame_at = time.monotonic()
        header = Header(stamp=time.time_ns(), frame_id=self.frame_id, seq=self.seq)
        self.seq += 1
        height, width = frame.rgb.shape[:2]
        self.image_pub.publish(Image(header=header, data=frame.rgb, encoding="rgb8"))
        self.depth_pub.publish(Image(header=header, data=frame.depth_m, encoding="32FC1"))
        self.info_pub.publish(
            CameraInfo(header=header, width=width, height=height, K=frame.K, D=frame.D, pose=self.pose)
        )

    def _recording_ended(self) -> None:
        if not self.loop:
            self.log.info("the recording ended after %d frames", self.status.frames)
            self.status.ended = True
            self.publish_stats()
            self.request_shutdown()
            return
        self.source.close()
        try:
            self.source.open()  # from its start again; the stamps are the wall clock's, so they go on
        except DepthCameraError as exc:  # the recording was replaced or removed meanwhile
            self.log.error("%s", exc)
            raise SystemExit(1) from None

    def publish_stats(self) -> None:
        self.report.publish(self.status)

    def _joined(self) -> bool:
        publishers = (self.image_pub, self.depth_pub, self.info_pub)
        return all(p.subscriber_count for p in publishers) or time.monotonic() > self.join_deadline

    def on_shutdown(self) -> None:
        self.source.close()


if __name__ == "__main__":
    run(DepthCameraNode)
