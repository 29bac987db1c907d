"""Depth cameras: colour, depth aligned to colour in metres, and the colour camera's intrinsics, from a
device or from a recording the device's SDK made. Plain library: the node is
perception/nodes/depth_camera.py.

A driver is a class with `open()`, `read(timeout_s) -> DepthFrame | None` and `close()`, named in
DRIVERS. Intel RealSense (pyrealsense2) is the one built; Luxonis OAK-D (depthai) slots in beside it as
another class of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from perception.errors import PerceptError


class DepthCameraError(PerceptError):
    """No such device, a recording that does not open, a stream the device does not offer."""


class DepthCameraMissing(DepthCameraError):
    """No such device connected (yet): one that may be plugged in, unlike a mode it does not offer."""


@dataclass
class DepthFrame:
    rgb: np.ndarray  # H x W x 3 uint8
    depth_m: np.ndarray  # H x W float32 metres, registered to `rgb`; NaN where the camera saw nothing
    K: np.ndarray  # 3 x 3, the colour camera's (depth is aligned to it)
    D: np.ndarray  # its distortion (Brown-Conrady)
    device_time_ns: int  # the device's timestamp of the frame


class DepthSource(Protocol):
    """What a depth camera driver offers (DRIVERS names them). open(): connect, or raise
    DepthCameraMissing when no such device is connected (it may be plugged in later) and
    DepthCameraError for a mode or recording it cannot open. read(timeout_s): the next DepthFrame
    (colour, depth in metres registered to it, the colour camera's K and distortion), or None when none
    came within timeout_s, as after a recording's last frame. close(): release the device."""

    def open(self) -> None: ...
    def read(self, timeout_s: float) -> DepthFrame | None: ...
    def close(self) -> None: ...


class RealSense:
    """An Intel RealSense through librealsense's pipeline, with depth aligned to colour (rs.align).

    `serial` picks one of several cameras; `playback` reads a recording made by the SDK (realsense-viewer,
    rs-record, or the SDK's recorder) instead of a device, as fast as it is read."""

    def __init__(
        self, serial: str = "", playback: str = "", width: int = 640, height: int = 480, fps: int = 30
    ) -> None:
        from perception.installed import require

        self.rs: Any = require("pyrealsense2", "the RealSense driver")
        self.serial, self.playback = serial, playback
        self.width, self.height, self.fps = width, height, fps
        self.pipeline: Any = None

    def open(self) -> None:
        rs = self.rs
        config = rs.config()
        if self.playback:
            if not Path(self.playback).is_file():
                raise DepthCameraError(f"RealSense recording {self.playback}: no such file")
            config.enable_device_from_file(self.playback, repeat_playback=False)
            config.enable_stream(rs.stream.depth)
            config.enable_stream(rs.stream.color)
        else:
            found = realsense_devices(rs)
            if not found or (self.serial and self.serial not in [s for _, s in found]):
                seen = ", ".join(f"{name} (serial {serial})" for name, serial in found) or "none"
                wanted = f"serial {self.serial}" if self.serial else "a RealSense"
                raise DepthCameraMissing(f"RealSense: expected {wanted} connected, found: {seen}")
            if self.serial:
                config.enable_device(self.serial)
            config.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, self.fps)
            config.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        self.pipeline = rs.pipeline()
        try:
            profile = self.pipeline.start(config)
        except RuntimeError as exc:
            what = self.playback or f"{self.width}x{self.height} at {self.fps} Hz"
            raise DepthCameraError(f"RealSense {what}: the pipeline did not start ({exc})") from None
        device = profile.get_device()
        if self.playback:
            device.as_playback().set_real_time(False)  # every recorded frame, as fast as it is read
        self.depth_scale = float(device.first_depth_sensor().get_depth_scale())
        self.align = rs.align(rs.stream.color)

    def read(self, timeout_s: float) -> DepthFrame | None:
        ok, frames = self.pipeline.try_wait_for_frames(int(timeout_s * 1000))
        if not ok:
            return None
        frames = self.align.process(frames)
        depth, color = frames.get_depth_frame(), frames.get_color_frame()
        if not depth or not color:
            return None
        rgb = np.asanyarray(color.get_data())
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise DepthCameraError(f"RealSense colour stream: expected RGB8, found shape {rgb.shape}")
        if color.profile.format() == self.rs.format.bgr8:
            rgb = rgb[..., ::-1]
        raw = np.asanyarray(depth.get_data())
        metres = raw.astype(np.float32) * np.float32(self.depth_scale)
        metres[raw == 0] = np.nan  # 0: no depth there
        intrinsics = color.profile.as_video_stream_profile().intrinsics
        K = np.array([[intrinsics.fx, 0, intrinsics.ppx], [0, intrinsics.fy, intrinsics.ppy], [0, 0, 1.0]])
        return DepthFrame(
            np.ascontiguousarray(rgb),
            metres,
            K,
            np.asarray(intrinsics.coeffs, float),
            int(color.get_timestamp() * 1e6),
        )

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.stop()
            self.pipeline = None


DRIVERS: dict[str, type] = {"realsense": RealSense}


def realsense_devices(rs: Any) -> list[tuple[str, str]]:
    """The RealSense cameras connected (name, serial number), as librealsense sees them."""
    return [
        (d.get_info(rs.camera_info.name), d.get_info(rs.camera_info.serial_number))
        for d in rs.context().query_devices()
    ]
