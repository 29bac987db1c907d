"""A synthetic camera: publishes a moving test pattern with camera info, for demos and tests."""

from __future__ import annotations

import numpy as np

from perception import Node, run
from perception.msgs import CameraInfo, Image, Pose


class TestCamera(Node):
    """Publish `image` (rgb8) and `camera_info` at `rate` Hz."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self) -> None:
        super().__init__("test_camera")
        self.width = self.declare_parameter("width", 640, "image width in pixels", range=(1, 8192))
        self.height = self.declare_parameter("height", 480, "image height in pixels", range=(1, 8192))
        rate = self.declare_parameter("rate", 30.0, "frames per second", range=(0.01, 1000.0))
        self.frame_id = self.declare_parameter("frame_id", "camera", "the frame the images are in")
        self.image_pub = self.create_publisher(Image, "image")
        self.info_pub = self.create_publisher(CameraInfo, "camera_info")
        focal = 0.5 * self.width / np.tan(np.radians(30))  # a 60 degree horizontal field of view
        self.K = np.array([[focal, 0, self.width / 2], [0, focal, self.height / 2], [0, 0, 1]])
        rows, cols = np.mgrid[0 : self.height, 0 : self.width]
        self.background = np.stack(
            [cols * 255 // self.width, rows * 255 // self.height, np.full_like(rows, 96)], axis=-1
        ).astype(np.uint8)
        self.seq = 0
        self.timer = self.create_timer(1.0 / rate, self.tick)
        self.parameters.on_change(self.on_parameter)

    def on_parameter(self, name: str, value: object) -> None:
        if name == "rate":  # `percept param set /camera rate 10` takes effect at once
            self.timer.cancel()
            self.timer = self.create_timer(1.0 / float(value), self.tick)  # type: ignore[arg-type]
        elif name in ("width", "height"):
            raise ValueError(f"{name} is fixed once the camera runs; relaunch to change it")

    def tick(self) -> None:
        frame = self.background.copy()  # a fresh buffer each time: published arrays are not reused
        x = (self.seq * 4) % max(1, self.width - 40)
        frame[self.height // 2 - 20 : self.height // 2 + 20, x : x + 40] = (255, 255, 255)
        header = self.header(self.frame_id)
        header.seq = self.seq
        self.image_pub.publish(Image(header=header, data=frame, encoding="rgb8"))
        self.info_pub.publish(
            CameraInfo(header=header, width=self.width, height=self.height, K=self.K, pose=Pose())
        )
        self.seq += 1


if __name__ == "__main__":
    run(TestCamera)
