"""Small nodes the integration tests run in their own processes."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from perception import Node
from perception.msgs import Header, Image, Result, String, Trigger


def pattern(seq: int, shape: tuple[int, ...] = (48, 64, 3)) -> np.ndarray:
    """A frame whose every byte depends on its sequence number, so corruption and mix-ups show."""
    return ((np.arange(np.prod(shape), dtype=np.uint32) * 7 + seq * 13) % 251).astype(np.uint8).reshape(shape)


class SeqPublisher(Node):
    """Publishes `count` pattern frames on `frames` at `rate` Hz (forever when count is 0)."""

    def __init__(self) -> None:
        super().__init__("seq_publisher")
        self.count = self.declare_parameter("count", 0)
        self.wait_for = self.declare_parameter("wait_for_subscribers", 0)
        self.tag = self.declare_parameter("tag", "a")
        self.shape = (self.declare_parameter("height", 48), self.declare_parameter("width", 64), 3)
        rate = self.declare_parameter("rate", 100.0)
        self.publisher = self.create_publisher(Image, "frames")
        self.seq = 0
        self.create_timer(1.0 / rate, self.tick)

    def tick(self) -> None:
        if self.wait_for and self.publisher.subscriber_count < self.wait_for:
            return
        if self.count and self.seq >= self.count:
            print(f"published {self.seq}", flush=True)
            self.request_shutdown()
            return
        header = Header(stamp=time.time_ns(), frame_id=self.tag, seq=self.seq)
        self.publisher.publish(Image(header=header, data=pattern(self.seq, self.shape), encoding="rgb8"))
        self.seq += 1


class FrameCounter(Node):
    """Subscribes to `frames` and publishes how many it got on `count` every 0.2 s; with `hoard`, keeps
    every frame it gets (a subscriber that never lets its publisher's slots go); with `work_s`, takes
    that long over each (a subscriber slower than its publisher)."""

    def __init__(self) -> None:
        super().__init__("frame_counter")
        self.received = 0
        self.hoard = self.declare_parameter("hoard", False)
        self.work_s = self.declare_parameter("work_s", 0.0)
        self.kept: list[Image] = []
        self.create_subscription(Image, "frames", self.on_frame)
        self.out = self.create_publisher(String, "count")
        self.create_timer(0.2, lambda: self.out.publish(String(data=str(self.received))))

    def on_frame(self, msg: Image) -> None:
        self.received += 1
        time.sleep(self.work_s)
        if self.hoard:
            self.kept.append(msg)


class Services(Node):
    """`~/slow` sleeps `delay` s, `~/fail` raises, `~/ok` answers at once."""

    def __init__(self) -> None:
        super().__init__("services")
        self.delay = self.declare_parameter("delay", 1.0)
        self.create_service("~/slow", Trigger, Result, self.slow)
        self.create_service("~/fail", Trigger, Result, self.fail)
        self.create_service("~/ok", Trigger, Result, lambda request: Result(success=True, message="ok"))

    def slow(self, request: Trigger) -> Result:
        time.sleep(self.delay)
        return Result(success=True, message="slow")

    def fail(self, request: Trigger) -> Result:
        raise RuntimeError("the gripper is on fire")


class Params(Node):
    """Declares one parameter of each type."""

    def __init__(self) -> None:
        super().__init__("params")
        self.declare_parameter("rate", 10.0, "a float", range=(0.1, 1000.0))
        self.declare_parameter("count", 3, "an int")
        self.declare_parameter("label", "cam", "a string")
        self.declare_parameter("enabled", True, "a bool")
        self.declare_parameter("size", [640, 480], "a list")
        self.declare_parameter("device", "/dev/video0", "fixed once running", read_only=True)


class ExitsSoon(Node):
    """Exits with `code` after `after` seconds (for respawn and required-node tests)."""

    def __init__(self) -> None:
        super().__init__("exits_soon")
        self.code = self.declare_parameter("code", 3)
        self.create_timer(self.declare_parameter("after", 0.3), self.leave)

    def leave(self) -> None:
        sys.exit(self.code)


class Stuck(Node):
    """Every `after` s a timer callback takes `stuck_s` s (a callback blocked on a dead device); its
    stats go out in between."""

    def __init__(self) -> None:
        super().__init__("stuck")
        self.stuck_s = self.declare_parameter("stuck_s", 9.0)
        self.create_timer(self.declare_parameter("after", 2.0), self.block)

    def block(self) -> None:
        time.sleep(self.stuck_s)


class FailingTimer(Node):
    """A 20 Hz timer whose callback always raises (a sensor that went away)."""

    def __init__(self) -> None:
        super().__init__("failing_timer")
        self.create_timer(0.05, self.read_sensor)

    def read_sensor(self) -> None:
        raise RuntimeError("the sensor is gone")


class Sleeper(Node):
    """Does nothing until stopped; ignores SIGINT when `stubborn` (to test the SIGTERM/SIGKILL path)."""

    def __init__(self) -> None:
        super().__init__("sleeper")
        if self.declare_parameter("stubborn", False):
            import signal

            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


class ViewerScene(Node):
    """A grey camera frame with a white square moving left to right, its detection (a 'mug' box) on
    the same stamp a little later, as a detector would, and a track of it: what the viewer draws."""

    BOX = (40.0, 30.0, 120.0, 90.0)

    def __init__(self) -> None:
        from perception.msgs import Detections, Tracks

        super().__init__("viewer_scene")
        self.images = self.create_publisher(Image, "camera/image")
        self.detections = self.create_publisher(Detections, "detections")
        self.tracks = self.create_publisher(Tracks, "tracks")
        self.seq = 0
        self.create_timer(0.1, self.tick)

    def tick(self) -> None:
        from perception.msgs import Detections, Tracks

        header = Header(stamp=time.time_ns(), frame_id="camera", seq=self.seq)
        frame = np.full((120, 160, 3), 90, np.uint8)
        x = 10 + (self.seq * 6) % 120
        frame[95:115, x : x + 20] = 255
        self.images.publish(Image(header=header, data=frame, encoding="rgb8"))
        self.detections.publish(
            Detections(header=header, xyxy=[self.BOX], scores=[0.9], class_ids=[2], class_names=["mug"])
        )
        self.tracks.publish(
            Tracks(
                header=header,
                ids=[5],
                class_ids=[2],
                class_names=["mug"],
                xyxy=[[x, 95, x + 20, 115]],
                scores=[0.9],
                velocities=[[60.0, 0.0]],
                ages_s=[1.0],
                ground_positions=[[np.nan] * 3],
                distances=[np.nan],
                speeds=[np.nan],
                times_to_collision=[np.inf],
            )
        )
        self.seq += 1


class FoxgloveScene(ViewerScene):
    """The viewer's scene with the camera's calibration and pose beside it, for the Foxglove link."""

    def __init__(self) -> None:
        from perception.msgs import CameraInfo

        super().__init__()
        self.camera_info = self.create_publisher(CameraInfo, "camera/camera_info")

    def tick(self) -> None:
        from perception.msgs import CameraInfo, Pose

        super().tick()
        header = Header(stamp=time.time_ns(), frame_id="camera", seq=self.seq)
        K = np.array([[200.0, 0, 80], [0, 201.0, 60], [0, 0, 1]])
        pose = Pose(position=[0.5, 0.0, 1.2], orientation=[1.0, 0.0, 0.0, 0.0])
        self.camera_info.publish(CameraInfo(header=header, width=160, height=120, K=K, pose=pose))


class Relay(Node):
    """Publishes on `out` a string for each one on `in`, and one a second of its own (two relays
    remapped onto each other make a cycle in the graph)."""

    def __init__(self) -> None:
        from perception.msgs import String

        super().__init__("relay")
        self.out = self.create_publisher(String, "out")
        self.create_subscription(String, "in", lambda msg: None)
        self.create_timer(1.0, lambda: self.out.publish(String(data="tick")))


class ImageFolder(Node):
    """Publishes the PNG images of `folder` on `image` (rgb8), one after the other, round and round."""

    def __init__(self) -> None:
        import cv2

        super().__init__("image_folder")
        folder = Path(self.declare_parameter("folder", "."))
        self.frames = [
            cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(folder.glob("*.png"))
        ]
        self.publisher = self.create_publisher(Image, "image")
        self.index = 0
        self.create_timer(1.0 / self.declare_parameter("rate", 10.0), self.tick)

    def tick(self) -> None:
        frame = self.frames[self.index % len(self.frames)]
        self.publisher.publish(Image(Header.now("cam", self.index), frame, "rgb8"))
        self.index += 1
