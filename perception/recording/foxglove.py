"""Our messages in Foxglove's schemas (protobuf, from `foxglove-schemas-protobuf`), so that a recording
opens in Foxglove with the images, the detection and track boxes, track trails, the camera and the
grasps drawn, without a plugin. These are views for people: replay reads our own channels, which stay
exact.

| our type | Foxglove schema |
|---|---|
| percept/Image | foxglove.RawImage or CompressedImage: the image itself, stored once (images.py) |
| percept/CameraInfo | foxglove.CameraCalibration, and foxglove.FrameTransform (world -> camera) |
| percept/Detections | foxglove.ImageAnnotations: a box outline and "class score" per detection |
| percept/Tracks | foxglove.ImageAnnotations: box, "#id class" and the trail of the box's bottom centre |
| percept/Grasps | foxglove.SceneUpdate: per grasp a slab as wide as the opening, per push a line, in the world frame |

The live link (live.py) sends the same views, and every other message as JSON (`as_json`), so that
stats and results can be plotted and read in Foxglove's panels.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from foxglove_schemas_protobuf.CameraCalibration_pb2 import CameraCalibration
from foxglove_schemas_protobuf.Color_pb2 import Color
from foxglove_schemas_protobuf.CubePrimitive_pb2 import CubePrimitive
from foxglove_schemas_protobuf.FrameTransform_pb2 import FrameTransform
from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations
from foxglove_schemas_protobuf.LinePrimitive_pb2 import LinePrimitive
from foxglove_schemas_protobuf.Point2_pb2 import Point2
from foxglove_schemas_protobuf.Point3_pb2 import Point3
from foxglove_schemas_protobuf.PointsAnnotation_pb2 import PointsAnnotation
from foxglove_schemas_protobuf.SceneEntity_pb2 import SceneEntity
from foxglove_schemas_protobuf.SceneUpdate_pb2 import SceneUpdate
from foxglove_schemas_protobuf.TextAnnotation_pb2 import TextAnnotation
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.descriptor_pb2 import FileDescriptorSet
from google.protobuf.message import Message as Proto
from google.protobuf.timestamp_pb2 import Timestamp

from perception import msgs
from perception.display import palette

TOPIC_PREFIX = "/foxglove"  # /camera/image is mirrored as /foxglove/camera/image
WORLD_FRAME = "world"
TRAIL_LENGTH = 30  # track trail points kept per track


def schema_data(descriptor: Any) -> bytes:
    """The FileDescriptorSet MCAP wants as a protobuf channel's schema: the file and all it imports."""
    files = FileDescriptorSet()
    seen: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            add(dependency)
        file.CopyToProto(files.file.add())

    add(descriptor.file)
    return bytes(files.SerializeToString())


def colour(key: int, alpha: float = 1.0) -> Color:
    """The viewer's colour for this class or track id, so both show an object alike."""
    r, g, b, a = palette.rgba(key, alpha)
    return Color(r=r, g=g, b=b, a=a)


def frame_id_of(header: msgs.Header) -> str:
    """Foxglove links an image, its calibration and its transform by frame id, which must not be empty."""
    return header.frame_id or "camera"


def timestamp_of(header: msgs.Header) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(header.stamp))
    return stamp


def _box(stamp: Timestamp, xyxy: np.ndarray, key: int, label: str) -> tuple[PointsAnnotation, TextAnnotation]:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    outline = PointsAnnotation(
        timestamp=stamp,
        type=PointsAnnotation.LINE_LOOP,
        points=[Point2(x=x1, y=y1), Point2(x=x2, y=y1), Point2(x=x2, y=y2), Point2(x=x1, y=y2)],
        outline_color=colour(key),
        thickness=2,
    )
    text = TextAnnotation(
        timestamp=stamp,
        position=Point2(x=x1, y=max(y1 - 2, 0)),
        text=label,
        font_size=12,
        text_color=Color(r=1, g=1, b=1, a=1),
        background_color=colour(key, 0.7),
    )
    return outline, text


@dataclass
class Converter:
    """Turns our messages into Foxglove ones, topic by topic; keeps the track trails between messages."""

    prefix: str = TOPIC_PREFIX  # a recording holds our own channels too; a live link has only these
    trails: dict[tuple[str, int], deque[tuple[float, float]]] = field(default_factory=dict)

    def convert(self, topic: str, msg: Any) -> list[tuple[str, Proto]]:
        """(Foxglove topic, message) pairs for one of our messages; none for types without a view."""
        handlers: dict[type, Callable[[str, Any], list[tuple[str, Proto]]]] = {
            msgs.CameraInfo: self._camera_info,
            msgs.Detections: self._detections,
            msgs.Tracks: self._tracks,
            msgs.Grasps: self._grasps,
        }
        handler = handlers.get(type(msg))
        return handler(self.prefix + topic, msg) if handler else []

    def forget(self, topic: str) -> None:
        """Drop what is kept for `topic` (its track trails): its publishers have gone, and one that
        comes back starts afresh."""
        for key in [k for k in self.trails if k[0] == self.prefix + topic]:
            del self.trails[key]

    def _camera_info(self, topic: str, info: msgs.CameraInfo) -> list[tuple[str, Proto]]:
        stamp, K = timestamp_of(info.header), info.K
        projection = np.hstack([K, np.zeros((3, 1))])
        calibration = CameraCalibration(
            timestamp=stamp,
            frame_id=frame_id_of(info.header),
            width=info.width,
            height=info.height,
            distortion_model=info.distortion_model,
            D=[float(v) for v in info.D],
            K=[float(v) for v in K.reshape(-1)],
            R=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            P=[float(v) for v in projection.reshape(-1)],
        )
        x, y, z = info.pose.position
        qx, qy, qz, qw = info.pose.orientation
        transform = FrameTransform(
            timestamp=stamp,
            parent_frame_id=WORLD_FRAME,
            child_frame_id=frame_id_of(info.header),
        )
        transform.translation.x, transform.translation.y, transform.translation.z = x, y, z
        rotation = transform.rotation
        rotation.x, rotation.y, rotation.z, rotation.w = qx, qy, qz, qw
        return [(topic, calibration), (self.prefix + "/tf", transform)]

    def _detections(self, topic: str, detections: msgs.Detections) -> list[tuple[str, Proto]]:
        stamp = timestamp_of(detections.header)
        annotations = ImageAnnotations()
        for xyxy, score, class_id, name in zip(
            detections.xyxy, detections.scores, detections.class_ids, detections.class_names, strict=True
        ):
            outline, text = _box(stamp, xyxy, int(class_id), f"{name or class_id} {score:.2f}")
            annotations.points.append(outline)
            annotations.texts.append(text)
        return [(topic, annotations)]

    def _tracks(self, topic: str, tracks: msgs.Tracks) -> list[tuple[str, Proto]]:
        stamp = timestamp_of(tracks.header)
        annotations = ImageAnnotations()
        alive = set()
        for track_id, name, xyxy in zip(tracks.ids, tracks.class_names, tracks.xyxy, strict=True):
            key = (topic, int(track_id))
            alive.add(key)
            trail = self.trails.setdefault(key, deque(maxlen=TRAIL_LENGTH))
            trail.append((float(xyxy[0] + xyxy[2]) / 2, float(xyxy[3])))
            outline, text = _box(stamp, xyxy, int(track_id), f"#{int(track_id)} {name}")
            annotations.points.append(outline)
            annotations.texts.append(text)
            if len(trail) > 1:
                annotations.points.append(
                    PointsAnnotation(
                        timestamp=stamp,
                        type=PointsAnnotation.LINE_STRIP,
                        points=[Point2(x=x, y=y) for x, y in trail],
                        outline_color=colour(int(track_id), 0.8),
                        thickness=2,
                    )
                )
        for key in [k for k in self.trails if k[0] == topic and k not in alive]:
            del self.trails[key]
        return [(topic, annotations)]

    def _grasps(self, topic: str, grasps: msgs.Grasps) -> list[tuple[str, Proto]]:
        stamp = timestamp_of(grasps.header)
        update = SceneUpdate()
        entity = SceneEntity(timestamp=stamp, frame_id=WORLD_FRAME, id=topic, frame_locked=False)
        for rank, (position, orientation, width) in enumerate(
            zip(grasps.positions, grasps.orientations, grasps.widths, strict=True)
        ):
            # The hand's y axis closes the fingers, its z axis approaches: a slab as wide as the opening.
            best = rank == 0
            cube = CubePrimitive(
                color=Color(r=0.1, g=0.9, b=0.2, a=0.9) if best else Color(r=0.9, g=0.6, b=0.1, a=0.5)
            )
            cube.size.x, cube.size.y, cube.size.z = 0.01, float(width), 0.04
            cube.pose.position.x, cube.pose.position.y, cube.pose.position.z = (float(v) for v in position)
            q = cube.pose.orientation
            q.x, q.y, q.z, q.w = (float(v) for v in orientation)
            entity.cubes.append(cube)
        b, g, r = palette.PUSH
        for start, end in zip(grasps.push_starts, grasps.push_ends, strict=True):  # a line per push
            line = LinePrimitive(
                type=LinePrimitive.LINE_STRIP,
                thickness=0.006,
                color=Color(r=r / 255, g=g / 255, b=b / 255, a=0.9),
            )
            line.pose.orientation.w = 1.0
            line.points.extend(Point3(x=float(x), y=float(y), z=float(z)) for x, y, z in (start, end))
            entity.lines.append(line)
        update.entities.append(entity)
        return [(topic, update)]


LARGEST_JSON_ARRAY = 4096  # elements; a larger array is named by its shape, not spelled out


def as_json(value: Any) -> Any:
    """A message as JSON-ready values: fields by name, arrays as (nested) lists, stamps as Foxglove's
    {sec, nsec}; an array too large to read in a panel is named by its shape and type instead."""
    if isinstance(value, msgs.Header):
        sec, nsec = divmod(int(value.stamp), 1_000_000_000)
        return {"stamp": {"sec": sec, "nsec": nsec}, "frame_id": value.frame_id, "seq": int(value.seq)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, np.ndarray):
        if value.size > LARGEST_JSON_ARRAY:
            return f"<array {'x'.join(map(str, value.shape))} {value.dtype}>"
        return as_json(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    return value
