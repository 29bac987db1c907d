"""Every message type of the suite, declared in one place.

A message is a dataclass registered under a stable type name (`percept/Image`) and a schema version.
Fields may be scalars (bool, int, float, str), numpy arrays (sent as raw frames, never copied),
other messages, lists of scalars or of messages, and dicts of plain values. Arrays received from the
wire are read-only views of the received frame: copy one before changing it.

Later issues add their messages here (grasps, tracks, ground truth) with the same decorator.
"""

from __future__ import annotations

import numbers
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from perception.errors import MessageError
from perception.geometry import matrix_from_quaternion


class Message:
    """Base class of every message; subclasses are dataclasses registered with `@message`."""

    TYPE_NAME: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 0
    READS_VERSIONS: ClassVar[frozenset[int]] = frozenset()  # older versions it decodes too
    # The largest message of this type a receiver takes (all its frames): a bigger one is refused
    # before it is read whole (wire.max_message_bytes; PERCEPT_MAX_MESSAGE_MB overrides every type's).
    MAX_BYTES: ClassVar[int] = 16 << 20


M = TypeVar("M", bound=Message)
_TYPES: dict[str, type[Message]] = {}


def message(type_name: str, version: int = 1, reads: tuple[int, ...] = ()) -> Callable[[type[M]], type[M]]:
    """Register a dataclass as a message type under a stable name and schema version. `reads`: older
    versions whose messages it still decodes, because the fields added since have defaults (a recording
    made before a field was added replays)."""

    def register(cls: type[M]) -> type[M]:
        if type_name in _TYPES and _TYPES[type_name] is not cls:
            raise MessageError(f"message type {type_name!r} is already registered by {_TYPES[type_name]}")
        cls.TYPE_NAME = type_name
        cls.SCHEMA_VERSION = version
        cls.READS_VERSIONS = frozenset({version, *reads})
        _TYPES[type_name] = cls
        return cls

    return register


def message_type(type_name: str) -> type[Message]:
    """Look a message class up by its type name; the error lists the known names."""
    try:
        return _TYPES[type_name]
    except KeyError:
        known = ", ".join(sorted(_TYPES))
        raise MessageError(f"unknown message type {type_name!r}; known types: {known}") from None


def registered_types() -> dict[str, type[Message]]:
    return dict(_TYPES)


def registered_type(type_name: str) -> type[Message] | None:
    """The class registered under `type_name`, or None (without copying the registry)."""
    return _TYPES.get(type_name)


def is_number(value: Any) -> bool:
    """A real number (numpy's too), not a flag: True and False are ints to Python."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def field_value(where: str, hint: Any, value: Any) -> Any:
    """`value` as a field of type `hint` holds it, or a MessageError naming the field (`where`, e.g.
    `percept/Pose.position`), what it expects and what was found. A value from a peer or a YAML line
    comes in as plain msgpack or YAML types: an integer for a float becomes a float, a whole float for
    an integer an integer (a JavaScript client writes 2 and 2.0 alike), a list for a tuple a tuple. Messages, lists of messages and arrays are the caller's (their types convert them)."""

    def refuse(expected: str) -> MessageError:
        return MessageError(f"{where}: expected {expected}, found {type(value).__name__} {value!r:.80}")

    if hint is str:
        if not isinstance(value, str):
            raise refuse("text")
        return value
    if hint is bool:
        if not isinstance(value, bool | np.bool_):
            raise refuse("true or false")
        return bool(value)
    if hint is int:
        if isinstance(value, float) and value.is_integer():  # JSON-like encoders cannot tell 2.0 from 2
            return int(value)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool | np.bool_):
            raise refuse("an integer")
        return int(value)
    if hint is float:
        if not is_number(value):
            raise refuse("a number")
        return float(value)
    origin, args = _origin_and_args(hint)
    if origin is tuple:  # of numbers: a fixed count of them unless `tuple[float, ...]`
        count = len(args) if Ellipsis not in args else None
        if (
            not isinstance(value, list | tuple)
            or not all(map(is_number, value))
            or count not in (None, len(value))
        ):
            raise refuse(f"a list of {count or 'some'} numbers")
        return tuple(float(v) for v in value) if float in args else tuple(value)
    if origin is list and args and args[0] in SCALAR_TYPES:
        if not isinstance(value, list):
            raise refuse(f"a list of {_NAMES[args[0]]}")
        if set(map(type, value)) <= {args[0]}:  # the usual case: checked at C speed, kept as it is
            return value
        return [field_value(f"{where}[{i}]", args[0], item) for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise refuse("a map with text keys")
        if args and args[1] is str and not all(isinstance(v, str) for v in value.values()):
            raise refuse("a map of text to text")
        return value
    return value


SCALAR_TYPES = (str, int, float, bool)  # the field types checked as they are, alone or in a list
_NAMES = {str: "text", int: "integers", float: "numbers", bool: "true or false"}
_HINTS: dict[Any, tuple[Any, tuple[Any, ...]]] = {}


def _origin_and_args(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    """typing.get_origin and get_args of a hint, worked out once per hint (they cost a microsecond)."""
    found = _HINTS.get(hint)
    if found is None:
        found = _HINTS[hint] = (typing.get_origin(hint), typing.get_args(hint))
    return found


@message("percept/Header")
@dataclass(slots=True)
class Header(Message):
    """Stamp (ns since the epoch, or sim time in ns in sim-clock mode), coordinate frame, sequence number."""

    stamp: int = 0
    frame_id: str = ""
    seq: int = 0

    def __post_init__(self) -> None:
        # A header from the wire is a peer's: a stamp that is text or true would break every stamp
        # comparison downstream (pairing, ordering, staleness) far from where it came in.
        if type(self.stamp) is int and type(self.seq) is int and type(self.frame_id) is str:
            return  # the usual case, checked first: this runs for every message received
        self.stamp = field_value("Header.stamp", int, self.stamp)  # numpy's integers too, as plain ints
        self.seq = field_value("Header.seq", int, self.seq)
        self.frame_id = field_value("Header.frame_id", str, self.frame_id)

    @classmethod
    def now(cls, frame_id: str = "", seq: int = 0) -> Header:
        return cls(stamp=time.time_ns(), frame_id=frame_id, seq=seq)

    @property
    def stamp_s(self) -> float:
        """The stamp in seconds, as the cores that reckon with time take it (`ByteTracker.update`)."""
        return self.stamp / 1e9


@message("percept/String")
@dataclass(slots=True)
class String(Message):
    data: str = ""


# One value each, as ROS's std_msgs Bool, Int64 and Float64: a count, a flag or a reading of a
# user's node needs no message of its own (nor to travel as text).
@message("percept/Bool")
@dataclass(slots=True)
class Bool(Message):
    data: bool = False


@message("percept/Int64")
@dataclass(slots=True)
class Int64(Message):
    data: int = 0


@message("percept/Float64")
@dataclass(slots=True)
class Float64(Message):
    data: float = 0.0


# encoding -> (dtype, channels)
IMAGE_ENCODINGS: dict[str, tuple[np.dtype[Any], int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}


@message("percept/Image")
@dataclass(slots=True)
class Image(Message):
    """An H x W x C (or H x W for one channel) array. 32FC1 is depth in metres, 16UC1 depth in mm."""

    MAX_BYTES: ClassVar[int] = 64 << 20  # 4096 x 4096 RGBA or float32 depth; 4K RGB is 24 MiB

    header: Header
    data: np.ndarray
    encoding: str = "rgb8"

    def __post_init__(self) -> None:
        if self.encoding not in IMAGE_ENCODINGS:
            raise MessageError(
                f"Image.encoding: expected one of {', '.join(IMAGE_ENCODINGS)}, found {self.encoding!r}"
            )
        dtype, channels = IMAGE_ENCODINGS[self.encoding]
        data = self.data
        if not isinstance(data, np.ndarray):
            raise MessageError(f"Image.data: expected a numpy array, found {type(data).__name__}")
        if data.dtype != dtype:
            raise MessageError(
                f"Image.data: encoding {self.encoding} needs dtype {dtype}, found {data.dtype}"
            )
        shape_ok = (data.ndim == 3 and data.shape[2] == channels) or (data.ndim == 2 and channels == 1)
        if not shape_ok:
            expected = "H x W" + (f" or H x W x {channels}" if channels == 1 else f" x {channels}")
            raise MessageError(
                f"Image.data: encoding {self.encoding} needs shape {expected}, found {tuple(data.shape)}"
            )
        if data.shape[0] == 0 or data.shape[1] == 0:
            raise MessageError(f"Image.data: expected at least 1 x 1 pixels, found {tuple(data.shape)}")

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])


@message("percept/Pose")
@dataclass(slots=True)
class Pose(Message):
    """Position in metres and orientation as a unit quaternion (x, y, z, w)."""

    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.position) != 3:
            raise MessageError(f"Pose.position: expected 3 values (x, y, z), found {len(self.position)}")
        if len(self.orientation) != 4:
            raise MessageError(
                f"Pose.orientation: expected 4 values (x, y, z, w), found {len(self.orientation)}"
            )
        self.position = tuple(float(v) for v in self.position)  # type: ignore[assignment]
        self.orientation = tuple(float(v) for v in self.orientation)  # type: ignore[assignment]


@message("percept/PoseStamped")
@dataclass(slots=True)
class PoseStamped(Message):
    """A pose at a time, in the frame `header.frame_id`: a robot's gripper in its base frame, as an
    arm's driver reports it (geometry_msgs/PoseStamped through the ROS 2 bridge)."""

    header: Header
    pose: Pose = field(default_factory=Pose)


@message("percept/CameraInfo")
@dataclass(slots=True)
class CameraInfo(Message):
    """Intrinsics and the pose of the camera's optical frame (x right, y down, z forward) in the world."""

    header: Header
    width: int
    height: int
    K: np.ndarray  # 3 x 3 float64
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))  # float64
    distortion_model: str = "plumb_bob"
    pose: Pose = field(default_factory=Pose)

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64)
        if K.shape != (3, 3):
            raise MessageError(f"CameraInfo.K: expected a 3 x 3 matrix, found shape {K.shape}")
        self.K = K
        self.D = np.asarray(self.D, dtype=np.float64).reshape(-1)
        if self.width <= 0 or self.height <= 0:
            raise MessageError(f"CameraInfo: expected a positive size, found {self.width} x {self.height}")

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])


@dataclass(slots=True, frozen=True)
class Detection:
    """One detection: a view of one row of `Detections` (not a wire type on its own)."""

    xyxy: tuple[float, float, float, float]
    score: float
    class_id: int
    class_name: str = ""
    track_id: int | None = None


@message("percept/Detections")
@dataclass(slots=True)
class Detections(Message):
    """Detections of one frame as parallel arrays (rows of xyxy pixels); `track_ids` is -1 where unset."""

    header: Header
    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    class_names: list[str] = field(default_factory=list)
    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise MessageError(f"Detections.xyxy: expected shape (n, 4), found {xyxy.shape}")
        self.xyxy = xyxy
        n = len(xyxy)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int32).reshape(-1)
        self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(-1)
        if len(self.track_ids) == 0 and n:
            self.track_ids = np.full(n, -1, np.int64)
        if not self.class_names and n:
            self.class_names = [""] * n
        sizes = {
            "scores": len(self.scores),
            "class_ids": len(self.class_ids),
            "class_names": len(self.class_names),
            "track_ids": len(self.track_ids),
        }
        wrong = {name: size for name, size in sizes.items() if size != n}
        if wrong:
            raise MessageError(f"Detections: xyxy has {n} rows, but these fields differ in length: {wrong}")
        # A NaN box would become a track that breaks every later assignment, or a viewer overlay.
        finite = np.isfinite(xyxy).all(axis=1) & np.isfinite(self.scores)
        if not finite.all():
            row = int(np.argmin(finite))
            raise MessageError(
                f"Detections row {row}: expected finite numbers, found xyxy {xyxy[row].tolist()} "
                f"and score {float(self.scores[row])}"
            )

    @classmethod
    def from_list(cls, header: Header, detections: list[Detection]) -> Detections:
        return cls(
            header=header,
            xyxy=np.array([d.xyxy for d in detections], np.float32).reshape(-1, 4),
            scores=np.array([d.score for d in detections], np.float32),
            class_ids=np.array([d.class_id for d in detections], np.int32),
            class_names=[d.class_name for d in detections],
            track_ids=np.array([-1 if d.track_id is None else d.track_id for d in detections], np.int64),
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int) -> Detection:
        track = int(self.track_ids[index])
        box = self.xyxy[index]
        return Detection(
            xyxy=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
            score=float(self.scores[index]),
            class_id=int(self.class_ids[index]),
            class_name=self.class_names[index],
            track_id=None if track < 0 else track,
        )

    def __iter__(self) -> Iterator[Detection]:
        return (self[i] for i in range(len(self)))


@message("percept/TopicStats")
@dataclass(slots=True)
class TopicStats(Message):
    """One endpoint's traffic over the last stats period."""

    topic: str
    type_name: str
    direction: str  # "pub" or "sub"
    count: int = 0  # total since start
    msgs_per_s: float = 0.0
    bytes_per_s: float = 0.0
    latency_p50_ms: float = -1.0  # from header stamp to receipt; -1 when unknown
    # Total, for a subscription, evicted by its keep-last / latest-only queue; for a publisher,
    # deliveries a subscriber on this host missed (its pipe full, or no shared-memory slot free).
    dropped_queue: int = 0
    dropped_gap: int = 0  # total lost before arriving (sequence gaps per publisher)
    malformed: int = 0  # total dropped as undecodable or of an unexpected type
    callback_errors: int = 0  # total messages whose callback raised (logged with the traceback)


@message("percept/NodeStats", version=2, reads=(1,))
@dataclass(slots=True)
class NodeStats(Message):
    """Published by every node on `/percept/stats` once per stats period. Version 2 added
    `refused_connections`."""

    header: Header
    node: str
    pid: int
    topics: list[TopicStats] = field(default_factory=list)
    timer_errors: int = 0  # total timer callbacks that raised (logged with the traceback)
    service_errors: int = 0  # total service requests that failed (malformed, or the handler raised)
    # Total connections to the node's process refused: a key not in the keystore, a peer without CURVE,
    # a handshake broken or not completed in time (perception.runtime.gatekeeper).
    refused_connections: int = 0


@message("percept/GetParameters")
@dataclass(slots=True)
class GetParameters(Message):
    """Request: the names to read (empty: all)."""

    names: list[str] = field(default_factory=list)


@message("percept/SetParameters")
@dataclass(slots=True)
class SetParameters(Message):
    """Request: new values by name."""

    values: dict[str, Any] = field(default_factory=dict)


@message("percept/ParameterValues")
@dataclass(slots=True)
class ParameterValues(Message):
    """Reply: values, their type names and descriptions, by name."""

    values: dict[str, Any] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)


@message("percept/Trigger")
@dataclass(slots=True)
class Trigger(Message):
    """An empty request."""


@message("percept/Result")
@dataclass(slots=True)
class Result(Message):
    """A reply: whether it worked, and why not."""

    success: bool = True
    message: str = ""


@message("percept/GroundTruth")
@dataclass(slots=True)
class GroundTruth(Message):
    """What the simulator knows about the visible objects of one frame, as parallel arrays: a stable
    id per object (kept for the whole sequence), class, visible box (xyxy pixels, from the segmentation
    mask), pose in the world (position; quaternion x, y, z, w) and visible fraction (0-1)."""

    header: Header
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    class_names: list[str] = field(default_factory=list)
    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float64))
    orientations: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float64))
    visible_fraction: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __post_init__(self) -> None:
        n = len(self.ids)
        shapes = {
            "class_ids": (len(self.class_ids),),
            "class_names": (len(self.class_names),),
            "xyxy": np.shape(self.xyxy),
            "positions": np.shape(self.positions),
            "orientations": np.shape(self.orientations),
            "visible_fraction": (len(self.visible_fraction),),
        }
        expected = {"xyxy": (n, 4), "positions": (n, 3), "orientations": (n, 4)}
        wrong = {k: v for k, v in shapes.items() if v != expected.get(k, (n,))}
        if wrong:
            raise MessageError(f"GroundTruth: {n} ids, but these fields have other shapes: {wrong}")


@message("percept/Grasps", version=3, reads=(1, 2))
@dataclass(slots=True)
class Grasps(Message):
    """Parallel-jaw grasps planned on one frame, best first, as parallel arrays (world frame: position
    between the fingertips; orientation x, y, z, w with the hand's z axis the approach and y the closing
    direction; opening width in metres; the closing direction itself as a unit vector, as the planner
    computed it), the detections that got none, with the reason, and those outside the workspace (not
    to be picked: in the tray, on the arm). For detections without a grasp, pushes, best first: straight
    lines at the fingertips' height from `push_starts` to `push_ends` (world), made with the fingers
    closed. Version 2 added `closings`, version 3 the pushes."""

    header: Header
    positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float64))
    orientations: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float64))
    widths: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    qualities: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    detection_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    class_names: list[str] = field(default_factory=list)
    rejected_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    rejected_reasons: list[str] = field(default_factory=list)
    outside_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # not to pick
    planning_ms: float = 0.0
    closings: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float64))  # unit vectors
    push_starts: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float64))
    push_ends: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float64))
    push_qualities: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    push_detection_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    push_class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.push_starts = np.asarray(self.push_starts, np.float64).reshape(-1, 3)
        self.push_ends = np.asarray(self.push_ends, np.float64).reshape(-1, 3)
        self.push_qualities = np.asarray(self.push_qualities, np.float32).reshape(-1)
        self.push_detection_indices = np.asarray(self.push_detection_indices, np.int32).reshape(-1)
        pushes = {
            "push_ends": len(self.push_ends),
            "push_qualities": len(self.push_qualities),
            "push_detection_indices": len(self.push_detection_indices),
            "push_class_names": len(self.push_class_names),
        }
        unequal = {name: size for name, size in pushes.items() if size != len(self.push_starts)}
        if unequal:
            raise MessageError(
                f"Grasps: {len(self.push_starts)} push starts, but these fields differ in length: {unequal}"
            )
        self.positions = np.asarray(self.positions, np.float64).reshape(-1, 3)
        self.orientations = np.asarray(self.orientations, np.float64).reshape(-1, 4)
        self.closings = np.asarray(self.closings, np.float64).reshape(-1, 3)
        if len(self.closings) == 0 and len(self.orientations):  # not given: the hand's y axis
            self.closings = np.array([matrix_from_quaternion(q)[:, 1] for q in self.orientations])
        self.widths = np.asarray(self.widths, np.float32).reshape(-1)
        self.qualities = np.asarray(self.qualities, np.float32).reshape(-1)
        self.detection_indices = np.asarray(self.detection_indices, np.int32).reshape(-1)
        self.rejected_indices = np.asarray(self.rejected_indices, np.int32).reshape(-1)
        self.outside_indices = np.asarray(self.outside_indices, np.int32).reshape(-1)
        n = len(self.positions)
        sizes = {
            "orientations": len(self.orientations),
            "closings": len(self.closings),
            "widths": len(self.widths),
            "qualities": len(self.qualities),
            "detection_indices": len(self.detection_indices),
            "class_names": len(self.class_names),
        }
        wrong = {name: size for name, size in sizes.items() if size != n}
        if wrong:
            raise MessageError(f"Grasps: {n} positions, but these fields differ in length: {wrong}")
        if len(self.rejected_reasons) != len(self.rejected_indices):
            raise MessageError(
                f"Grasps: {len(self.rejected_indices)} rejected indices but {len(self.rejected_reasons)} reasons"
            )

    def __len__(self) -> int:
        return len(self.positions)


@message("percept/PickAttempt", version=2, reads=(1,))
@dataclass(slots=True)
class PickAttempt(Message):
    """One action of a pick-and-place loop: the grasp tried, or the push made (`action` "push": `pose`
    where the fingers came down, `push_end` where they stopped, `width` 0), and what came of it. Version 2
    added pushes; `attempt` counts actions of both kinds."""

    header: Header
    attempt: int = 0
    class_name: str = ""
    pose: Pose = field(default_factory=Pose)
    width: float = 0.0
    quality: float = 0.0
    success: bool = False
    reason: str = ""
    objects_left: int = -1  # detections on the newest frame after the attempt; -1 if unknown
    action: str = "grasp"  # or "push"
    push_end: tuple[float, float, float] = (0.0, 0.0, 0.0)


@message("percept/Tracks")
@dataclass(slots=True)
class Tracks(Message):
    """Confirmed tracks seen in one frame, as parallel arrays: a persistent id, class, box (xyxy pixels),
    image velocity of the box centre (px/s), age (s), and with a camera pose, the ground-plane position
    (world, m), distance from the camera (m), speed (m/s) and time to collision (s; inf if not closing).
    Ground fields are NaN where unknown (no CameraInfo, or a box whose bottom lies above the horizon)."""

    header: Header
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    class_names: list[str] = field(default_factory=list)
    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    velocities: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    ages_s: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    ground_positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float64))
    distances: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    speeds: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    times_to_collision: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.ids = np.asarray(self.ids, np.int64).reshape(-1)
        self.class_ids = np.asarray(self.class_ids, np.int32).reshape(-1)
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.velocities = np.asarray(self.velocities, np.float32).reshape(-1, 2)
        self.ages_s = np.asarray(self.ages_s, np.float32).reshape(-1)
        self.ground_positions = np.asarray(self.ground_positions, np.float64).reshape(-1, 3)
        self.distances = np.asarray(self.distances, np.float32).reshape(-1)
        self.speeds = np.asarray(self.speeds, np.float32).reshape(-1)
        self.times_to_collision = np.asarray(self.times_to_collision, np.float32).reshape(-1)
        sizes = {
            name: len(getattr(self, name))
            for name in (
                "class_ids",
                "class_names",
                "xyxy",
                "scores",
                "velocities",
                "ages_s",
                "ground_positions",
                "distances",
                "speeds",
                "times_to_collision",
            )
        }
        wrong = {name: size for name, size in sizes.items() if size != n}
        if wrong:
            raise MessageError(f"Tracks: {n} ids, but these fields differ in length: {wrong}")
        finite = np.isfinite(self.xyxy).all(axis=1)  # ground fields may be NaN (unknown); boxes may not
        if not finite.all():
            row = int(np.argmin(finite))
            raise MessageError(
                f"Tracks row {row}: expected a finite box, found xyxy {self.xyxy[row].tolist()}"
            )

    def __len__(self) -> int:
        return len(self.ids)


@message("percept/TrackerStats")
@dataclass(slots=True)
class TrackerStats(Message):
    """A tracker's work over the last stats period."""

    header: Header
    tracks_alive: int = 0  # confirmed and lost tracks held
    tracks_confirmed: int = 0  # seen in the newest frame
    update_p50_ms: float = 0.0
    update_p95_ms: float = 0.0
    frames_per_s: float = 0.0
    resets: int = 0  # times the tracks were dropped because stamps went back (a looped replay, a reset)


@message("percept/CameraStats", version=2, reads=(1,))
@dataclass(slots=True)
class CameraStats(Message):
    """A camera node's source over the last stats period: is it delivering, and what went wrong."""

    header: Header
    source: str
    connected: bool = False
    frames_per_s: float = 0.0
    frames: int = 0  # since the start
    failures: int = 0  # failed opens and reads since the start
    reconnects: int = 0
    last_error: str = ""
    skipped: int = 0  # frames passed over: a video file's to keep its pace, a live source's for a newer one
    ended: bool = False  # a video file at its end, not looped: no more frames come


@message("percept/Reset")
@dataclass(slots=True)
class Reset(Message):
    """Request: rebuild the scene with this seed and these scene parameters (empty: keep them)."""

    seed: int = 0
    scene: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@message("percept/ExecuteGrasp")
@dataclass(slots=True)
class ExecuteGrasp(Message):
    """Request: grasp at `pose` (the point between the fingertips, world frame; the gripper's z axis is
    the approach direction) with the fingers opened to `width` metres, then lift; `place` drops a held
    object in the tray."""

    pose: Pose = field(default_factory=Pose)
    width: float = 0.08
    place: bool = True


@message("percept/GraspResult")
@dataclass(slots=True)
class GraspResult(Message):
    """Reply: whether the object was lifted at least 10 cm and held for 1 s of sim time, and why not."""

    success: bool = False
    reason: str = ""
    object_id: int = -1
    lifted_m: float = 0.0
    placed: bool = False
    done_stamp: int = 0  # when the motion ended, on the clock of the simulator's image stamps (ns)


@message("percept/ExecutePush")
@dataclass(slots=True)
class ExecutePush(Message):
    """Request: with the fingers closed, come down at `start` and push in a straight line to `end` (world
    points, metres, at the fingertips' height above the table), then rise."""

    start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    end: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            point = getattr(self, name)
            if len(point) != 3:
                raise MessageError(f"ExecutePush.{name}: expected 3 values (x, y, z), found {len(point)}")
            setattr(self, name, tuple(float(v) for v in point))


@message("percept/PushResult")
@dataclass(slots=True)
class PushResult(Message):
    """Reply: whether the push was carried out (not whether it made room: the next frame tells), why not,
    and how far the object that moved most moved."""

    success: bool = False
    reason: str = ""
    object_id: int = -1
    moved_m: float = 0.0
    done_stamp: int = 0  # when the motion ended, on the clock of the simulator's image stamps (ns)


@message("percept/DetectorStats")
@dataclass(slots=True)
class DetectorStats(Message):
    """A detector's work over the last stats period (times are medians per frame)."""

    header: Header
    model: str
    frames_per_s: float = 0.0
    frames_skipped: int = 0  # total: frames that arrived while it was busy (latest-only) or were lost
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0
