"""perception: a camera-to-action perception suite on a small ZeroMQ node runtime."""

from perception.context import Context
from perception.msgs import CameraInfo, Detection, Detections, Header, Image, Pose, String
from perception.node import Client, Node, Publisher, Service, Subscription, Timer
from perception.qos import KEEP_LAST, LATEST_ONLY, QoS
from perception.runner import run

__all__ = [
    "KEEP_LAST",
    "LATEST_ONLY",
    "CameraInfo",
    "Client",
    "Context",
    "Detection",
    "Detections",
    "Header",
    "Image",
    "Node",
    "Pose",
    "Publisher",
    "QoS",
    "Service",
    "String",
    "Subscription",
    "Timer",
    "run",
]
__version__ = "0.1.0"
