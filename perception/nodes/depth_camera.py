"""The depth camera node: colour, depth aligned to colour in metres and the colour camera's intrinsics,
on the simulator's topics, so the grasp planner runs unchanged on a real RGB-D camera.

Topics: `camera/image` (rgb8), `camera/depth` (32FC1 metres, NaN where the camera saw nothing),
`camera/camera_info` (K and distortion from the device; the camera's pose from parameters, or from a
hand-eye calibration through the grasp planner). Drivers: perception/camera/depth.py (`realsense`; a
recording made by the SDK plays through `playback`). With no device, one line says what was found.
"""

from __future__ import annotations

import time

from perception import Node, run
from perception.camera.depth import DRIVERS, DepthCameraError
from perception.errors import ParameterError
from perception.msgs import CameraInfo, Header, Image
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
        self.source = DRIVERS[driver](serial=serial, playback=playback, width=width, height=height, fps=fps)
        try:
            self.source.open()
        except DepthCameraError as exc:
            raise ParameterError(str(exc)) from None
        self.playback = bool(playback)
        self.image_pub = self.create_publisher(Image, "camera/image")
        self.depth_pub = self.create_publisher(Image, "camera/depth")
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info")
        self.frames = self.timeouts = self.seq = 0
        self.join_deadline = time.monotonic() + JOIN_WAIT_S
        self.create_timer(0.5 / fps, self.tick)

    def tick(self) -> None:
        if self.playback and not self.frames and not self._joined():
            return  # a recording's first frames are not sent to no one, as `percept play` holds them too
        frame = self.source.read(timeout_s=0.05 if not self.playback else 1.0)
        if frame is None:
            self.timeouts += 1
            if self.playback and self.frames:
                self.log.info("the recording ended after %d frames", self.frames)
                self.request_shutdown()
            return
        header = Header(stamp=time.time_ns(), frame_id=self.frame_id, seq=self.seq)
        self.seq += 1
        self.frames += 1
        height, width = frame.rgb.shape[:2]
        self.image_pub.publish(Image(header=header, data=frame.rgb, encoding="rgb8"))
        self.depth_pub.publish(Image(header=header, data=frame.depth_m, encoding="32FC1"))
        self.info_pub.publish(
            CameraInfo(header=header, width=width, height=height, K=frame.K, D=frame.D, pose=self.pose)
        )

    def _joined(self) -> bool:
        publishers = (self.image_pub, self.depth_pub, self.info_pub)
        return all(p.subscriber_count for p in publishers) or time.monotonic() > self.join_deadline

    def on_shutdown(self) -> None:
        self.source.close()


if __name__ == "__main__":
    run(DepthCameraNode)
