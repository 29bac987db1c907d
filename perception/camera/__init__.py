"""Real cameras: OpenCV capture sources with reconnection, and ROS-format calibration files (no ZeroMQ)."""

from perception.camera.calibration import Calibration, load_calibration
from perception.camera.source import FrameSource

__all__ = ["Calibration", "FrameSource", "load_calibration"]
