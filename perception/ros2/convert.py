"""Our messages to and from ROS 2's, as rosbags message objects (perception/ros2/types.py): plain
functions on arrays, no DDS in here. Images come in as views of the received bytes wherever the
encoding is one of ours (rgb8, bgr8, rgba8, mono8, 16UC1, 32FC1, rows with or without padding); other
encodings are converted with OpenCV (a copy) or refused in one line naming the encoding. mono16 is
16-bit grey light, which we have no encoding for (16UC1, its twin in layout, is depth in millimetres to
us, and the detector refused it): it comes in as mono8, its high byte, as cv_bridge converts it.

What goes out, and how (for a ROS user reading our topics):
  Detections, Tracks -> vision_msgs/msg/Detection2DArray: one Detection2D per box, its bbox centre and
      size in pixels, one hypothesis (class_id: the class name, score); `id` the track id ("" when
      untracked). Tracks' scores are their last detection's.
  Grasps -> geometry_msgs/msg/PoseArray: the grasp poses (gripper frame: z the approach, y the closing
      direction), best first, in the world frame (the bridge's `world_frame`: `base` where the planner
      applies a hand-eye calibration); widths and qualities have no place in a PoseArray and stay ours.
  In, besides images and camera info: geometry_msgs/msg/PoseStamped (a robot's gripper pose) -> ours.
  CameraInfo -> sensor_msgs/msg/CameraInfo, and tf2_msgs/msg/TFMessage: the camera's optical frame
      (its header's frame_id) in the world frame its pose is given in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from perception.errors import PerceptError
from perception.msgs import CameraInfo, Detections, Grasps, Header, Image, Message, Pose, PoseStamped, Tracks
from perception.ros2.types import deserialize, serialize, store

# ROS encodings ours take as they are, and those OpenCV converts (a copy) to one of ours.
SAME_ENCODINGS = {
    "rgb8": "rgb8",
    "bgr8": "bgr8",
    "rgba8": "rgba8",
    "mono8": "mono8",
    "8UC1": "mono8",
    "8UC3": "bgr8",  # OpenCV's own order, as cv_bridge reads it
    "16UC1": "16UC1",
    "mono16": "16UC1",  # read as laid out, then made mono8 (see GREY16)
    "32FC1": "32FC1",
}
CONVERTED_ENCODINGS = {  # ROS encoding -> (OpenCV conversion, channels in, our encoding)
    "bgra8": (cv2.COLOR_BGRA2RGBA, 4, "rgba8"),
    "yuv422": (cv2.COLOR_YUV2RGB_UYVY, 2, "rgb8"),  # ROS' yuv422 is UYVY
    "uyvy": (cv2.COLOR_YUV2RGB_UYVY, 2, "rgb8"),
    "yuv422_yuy2": (cv2.COLOR_YUV2RGB_YUY2, 2, "rgb8"),
    "yuyv": (cv2.COLOR_YUV2RGB_YUY2, 2, "rgb8"),
    # OpenCV names a Bayer pattern by the second row's first two pixels, ROS by the first row's
    "bayer_rggb8": (cv2.COLOR_BayerBG2RGB, 1, "rgb8"),
    "bayer_bggr8": (cv2.COLOR_BayerRG2RGB, 1, "rgb8"),
    "bayer_gbrg8": (cv2.COLOR_BayerGR2RGB, 1, "rgb8"),
    "bayer_grbg8": (cv2.COLOR_BayerGB2RGB, 1, "rgb8"),
}
GREY16 = "mono16"  # grey light in 16 bits: comes in as mono8, its high byte (cv_bridge's 1/256)
BYTES_PER_PIXEL = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "mono8": 1, "16UC1": 2, "32FC1": 4}
DTYPES: dict[str, np.dtype[Any]] = {"16UC1": np.dtype("<u2"), "32FC1": np.dtype("<f4")}


class ConversionError(PerceptError):
    """A message that cannot become one of ours (or of theirs): the bridge counts it and goes on."""


def _types() -> Any:
    return store().types


def time_from_ns(ns: int) -> Any:
    return _types()["builtin_interfaces/msg/Time"](
        sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000)
    )


def header_to_ros(header: Header) -> Any:
    return _types()["std_msgs/msg/Header"](stamp=time_from_ns(header.stamp), frame_id=header.frame_id)


def header_from_ros(header: Any) -> Header:
    return Header(
        stamp=int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec), frame_id=header.frame_id
    )


# -- in --------------------------------------------------------------------------------------------


def image_from_ros(msg: Any) -> Image:
    """sensor_msgs/Image -> Image: a view of msg.data where the encoding is one of ours."""
    height, width, step, encoding = int(msg.height), int(msg.width), int(msg.step), str(msg.encoding)
    data = np.asarray(msg.data, dtype=np.uint8)
    if encoding in SAME_ENCODINGS:
        ours = SAME_ENCODINGS[encoding]
        row_bytes = width * BYTES_PER_PIXEL[ours]
    elif encoding in CONVERTED_ENCODINGS:
        code, channels, ours = CONVERTED_ENCODINGS[encoding]
        row_bytes = width * channels
    else:
        known = ", ".join([*SAME_ENCODINGS, *CONVERTED_ENCODINGS])
        raise ConversionError(f"image encoding {encoding!r} cannot be converted (we take {known})")
    if height <= 0 or width <= 0:
        raise ConversionError(
            f"image {width} x {height} {encoding}: expected a width and height of 1 or more"
        )
    if step < row_bytes:
        raise ConversionError(
            f"image {width} x {height} {encoding}, step {step}: expected a step of at least {row_bytes} bytes "
            "(a row)"
        )
    if len(data) < step * (height - 1) + row_bytes:
        raise ConversionError(
            f"image {width} x {height} {encoding}, step {step}: expected at least "
            f"{step * (height - 1) + row_bytes} bytes of data, found {len(data)}"
        )
    rows = np.lib.stride_tricks.as_strided(data, (height, row_bytes), (step, 1), writeable=False)
    if encoding in CONVERTED_ENCODINGS:
        pixels = rows.reshape(height, width, channels) if channels > 1 else rows
        try:
            converted = cv2.cvtColor(np.ascontiguousarray(pixels), code)
        except cv2.error:  # e.g. 4:2:2 with an odd width
            raise ConversionError(f"image {width} x {height} {encoding}: OpenCV cannot convert it") from None
        return Image(header_from_ros(msg.header), converted, ours)
    dtype: np.dtype[Any] = DTYPES.get(ours, np.dtype(np.uint8))
    array: np.ndarray = rows
    if dtype.itemsize > 1:  # a view still: only the last axis need be contiguous
        array = rows.view(dtype.newbyteorder(">") if msg.is_bigendian else dtype)
        if msg.is_bigendian:
            array = array.astype(dtype)
    channels = BYTES_PER_PIXEL[ours] // dtype.itemsize
    array = array.reshape(height, width, channels) if channels > 1 else array.reshape(height, width)
    if encoding == GREY16:
        return Image(header_from_ros(msg.header), grey16_to_mono8(array), "mono8")
    return Image(header_from_ros(msg.header), array, ours)


def grey16_to_mono8(grey: np.ndarray) -> np.ndarray:
    """16-bit grey light as our mono8: the high byte (a copy)."""
    return (grey >> 8).astype(np.uint8)


def compressed_image_from_ros(msg: Any) -> Image:
    """sensor_msgs/CompressedImage (JPEG, PNG; 16-bit depth as compressedDepth PNG) -> Image."""
    fmt = str(msg.format).lower()
    data = np.asarray(msg.data, dtype=np.uint8)
    if "compresseddepth" in fmt:
        if "16uc1" not in fmt and "mono16" not in fmt:
            raise ConversionError(
                f"compressed image format {msg.format!r}: only 16UC1 compressedDepth is taken"
            )
        data = data[12:]  # compressed_depth_image_transport's header: the format and two floats
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if len(data) else None
    if pixels is None:
        raise ConversionError(
            f"compressed image format {msg.format!r}: {len(data)} bytes OpenCV cannot decode"
        )
    if pixels.dtype == np.uint16 and pixels.ndim == 2:
        if fmt.split(";")[0].strip() == GREY16:  # image_transport's "mono16; png compressed mono16"
            return Image(header_from_ros(msg.header), grey16_to_mono8(pixels), "mono8")
        return Image(header_from_ros(msg.header), pixels, "16UC1")
    if pixels.dtype != np.uint8:
        raise ConversionError(
            f"compressed image format {msg.format!r}: decoded to {pixels.dtype}, expected 8 bits"
        )
    if pixels.ndim == 2:
        return Image(header_from_ros(msg.header), pixels, "mono8")
    if pixels.shape[2] == 4:
        return Image(header_from_ros(msg.header), cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA), "rgba8")
    return Image(header_from_ros(msg.header), pixels, "bgr8")  # what JPEG and PNG decode to


def camera_info_from_ros(msg: Any, pose: Pose | None = None) -> CameraInfo:
    """sensor_msgs/CameraInfo -> CameraInfo (the camera's pose in the world from the bridge's parameter)."""
    return CameraInfo(
        header=header_from_ros(msg.header),
        width=int(msg.width),
        height=int(msg.height),
        K=np.asarray(msg.k, dtype=np.float64).reshape(3, 3),
        D=np.asarray(msg.d, dtype=np.float64),
        distortion_model=str(msg.distortion_model) or "plumb_bob",
        pose=pose or Pose(),
    )


def pose_stamped_from_ros(msg: Any) -> PoseStamped:
    """geometry_msgs/PoseStamped -> PoseStamped (a robot driver's gripper pose, say)."""
    p, q = msg.pose.position, msg.pose.orientation
    return PoseStamped(header_from_ros(msg.header), Pose((p.x, p.y, p.z), (q.x, q.y, q.z, q.w)))


# -- out -------------------------------------------------------------------------------------------


def image_to_ros(image: Image) -> Any:
    data = np.ascontiguousarray(image.data)
    return _types()["sensor_msgs/msg/Image"](
        header=header_to_ros(image.header),
        height=image.height,
        width=image.width,
        encoding=image.encoding,
        is_bigendian=0,
        step=int(data.strides[0]),
        data=data.reshape(-1).view(np.uint8),
    )


def camera_info_to_ros(info: CameraInfo) -> Any:
    t = _types()
    K = np.asarray(info.K, dtype=np.float64)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return t["sensor_msgs/msg/CameraInfo"](
        header=header_to_ros(info.header),
        height=info.height,
        width=info.width,
        distortion_model=info.distortion_model,
        d=np.asarray(info.D, dtype=np.float64),
        k=K.reshape(-1),
        r=np.eye(3).reshape(-1),
        p=P.reshape(-1),
        binning_x=0,
        binning_y=0,
        roi=t["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


def _detection_array(
    header: Header,
    xyxy: np.ndarray,
    scores: np.ndarray,
    class_names: list[str],
    class_ids: np.ndarray,
    ids: list[str],
) -> Any:
    """One Detection2D per box; a class without a name goes out as its id."""
    t = _types()
    ros_header = header_to_ros(header)
    no_pose = t["geometry_msgs/msg/PoseWithCovariance"](
        pose=_pose((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)), covariance=np.zeros(36)
    )
    names = [name or str(int(c)) for name, c in zip(class_names, class_ids, strict=True)]
    detections = []
    for box, score, name, ident in zip(np.asarray(xyxy, np.float64), scores, names, ids, strict=True):
        x0, y0, x1, y1 = (float(v) for v in box)
        detections.append(
            t["vision_msgs/msg/Detection2D"](
                header=ros_header,
                results=[
                    t["vision_msgs/msg/ObjectHypothesisWithPose"](
                        hypothesis=t["vision_msgs/msg/ObjectHypothesis"](class_id=name, score=float(score)),
                        pose=no_pose,
                    )
                ],
                bbox=t["vision_msgs/msg/BoundingBox2D"](
                    center=t["vision_msgs/msg/Pose2D"](
                        position=t["vision_msgs/msg/Point2D"](x=(x0 + x1) / 2, y=(y0 + y1) / 2), theta=0.0
                    ),
                    size_x=x1 - x0,
                    size_y=y1 - y0,
                ),
                id=ident,
            )
        )
    return t["vision_msgs/msg/Detection2DArray"](header=ros_header, detections=detections)


def detections_to_ros(detections: Detections) -> Any:
    d = detections
    ids = ["" if track < 0 else str(int(track)) for track in d.track_ids]
    return _detection_array(d.header, d.xyxy, d.scores, d.class_names, d.class_ids, ids)


def tracks_to_ros(tracks: Tracks) -> Any:
    ids = [str(int(i)) for i in tracks.ids]
    return _detection_array(
        tracks.header, tracks.xyxy, tracks.scores, tracks.class_names, tracks.class_ids, ids
    )


def _pose(position: Any, orientation: Any) -> Any:
    t = _types()
    x, y, z = (float(v) for v in position)
    qx, qy, qz, qw = (float(v) for v in orientation)
    return t["geometry_msgs/msg/Pose"](
        position=t["geometry_msgs/msg/Point"](x=x, y=y, z=z),
        orientation=t["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
    )


def grasps_to_ros(grasps: Grasps, world_frame: str = "world") -> Any:
    """The grasp poses in `world_frame`: the planner's world (the robot's base frame when it applies a
    hand-eye calibration); our Grasps keep the camera's frame id, which the viewer draws them by."""
    poses = [_pose(p, q) for p, q in zip(grasps.positions, grasps.orientations, strict=True)]
    header = header_to_ros(Header(stamp=grasps.header.stamp, frame_id=world_frame))
    return _types()["geometry_msgs/msg/PoseArray"](header=header, poses=poses)


def camera_tf_to_ros(info: CameraInfo, world_frame: str = "world") -> Any:
    """The camera's optical frame in `world_frame`, as one TF transform."""
    t = _types()
    x, y, z = info.pose.position
    qx, qy, qz, qw = info.pose.orientation
    transform = t["geometry_msgs/msg/TransformStamped"](
        header=header_to_ros(Header(stamp=info.header.stamp, frame_id=world_frame)),
        child_frame_id=info.header.frame_id or "camera",
        transform=t["geometry_msgs/msg/Transform"](
            translation=t["geometry_msgs/msg/Vector3"](x=x, y=y, z=z),
            rotation=t["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
        ),
    )
    return t["tf2_msgs/msg/TFMessage"](transforms=[transform])


@dataclass(frozen=True)
class Conversion:
    """One way a ROS 2 type and one of ours map: `ours` is the message type on our side. `setting` names
    what the function takes beside the message, where it needs it: "camera_pose" (the camera's pose in
    the world, which ROS 2's camera info does not carry) or "world_frame" (the frame poses go out in);
    a caller gives the settings it has by name, and a function falls back to its default without one."""

    ros_type: str
    ours: type[Message]
    function: Callable[..., Any]
    setting: str = ""

    def to_ours(self, cdr: bytes | memoryview, **settings: Any) -> Message:
        """CDR bytes of `ros_type` as one of ours; ConversionError or PerceptError where they cannot be."""
        return self.function(deserialize(cdr, self.ros_type), *self._settings(settings))  # type: ignore[no-any-return]

    def to_ros(self, msg: Message, **settings: Any) -> bytes:
        """One of ours as CDR bytes of `ros_type`."""
        return serialize(self.function(msg, *self._settings(settings)), self.ros_type)

    def _settings(self, settings: dict[str, Any]) -> list[Any]:
        return [settings[self.setting]] if self.setting in settings else []


# Into our graph, by ROS type; out of it, by (ROS type, our type name). The first per ROS type out is
# the default when a mapping does not name ours.
INTO_OURS = {
    "sensor_msgs/msg/Image": Conversion("sensor_msgs/msg/Image", Image, image_from_ros),
    "sensor_msgs/msg/CompressedImage": Conversion(
        "sensor_msgs/msg/CompressedImage", Image, compressed_image_from_ros
    ),
    "sensor_msgs/msg/CameraInfo": Conversion(
        "sensor_msgs/msg/CameraInfo", CameraInfo, camera_info_from_ros, "camera_pose"
    ),
    "geometry_msgs/msg/PoseStamped": Conversion(
        "geometry_msgs/msg/PoseStamped", PoseStamped, pose_stamped_from_ros
    ),
}
OUT_OF_OURS = {
    ("vision_msgs/msg/Detection2DArray", "Detections"): Conversion(
        "vision_msgs/msg/Detection2DArray", Detections, detections_to_ros
    ),
    ("vision_msgs/msg/Detection2DArray", "Tracks"): Conversion(
        "vision_msgs/msg/Detection2DArray", Tracks, tracks_to_ros
    ),
    ("geometry_msgs/msg/PoseArray", "Grasps"): Conversion(
        "geometry_msgs/msg/PoseArray", Grasps, grasps_to_ros, "world_frame"
    ),
    ("sensor_msgs/msg/Image", "Image"): Conversion("sensor_msgs/msg/Image", Image, image_to_ros),
    ("sensor_msgs/msg/CameraInfo", "CameraInfo"): Conversion(
        "sensor_msgs/msg/CameraInfo", CameraInfo, camera_info_to_ros
    ),
    ("tf2_msgs/msg/TFMessage", "CameraInfo"): Conversion(
        "tf2_msgs/msg/TFMessage", CameraInfo, camera_tf_to_ros, "world_frame"
    ),
}
