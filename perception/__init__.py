"""perception: a camera-to-action perception suite on a small ZeroMQ node runtime.

This face is lazy (PEP 562): `from perception import Node, Image, run` loads the runtime on first use,
so the algorithm cores (`perception.detector`, `perception.track`, `perception.grasp`,
`perception.camera`) import and run on arrays alone, where pyzmq and msgpack are not even installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that owns it (one owner per fact: the face only points there)
_EXPORTS = {
    "KEEP_LAST": "perception.runtime.qos",
    "LATEST_ONLY": "perception.runtime.qos",
    "QoS": "perception.runtime.qos",
    "CameraInfo": "perception.msgs",
    "Detection": "perception.msgs",
    "Detections": "perception.msgs",
    "Header": "perception.msgs",
    "Image": "perception.msgs",
    "Pose": "perception.msgs",
    "String": "perception.msgs",
    "Bool": "perception.msgs",
    "Int64": "perception.msgs",
    "Float64": "perception.msgs",
    "Context": "perception.runtime.context",
    "Client": "perception.runtime.client",
    "Node": "perception.runtime.node",
    "Publisher": "perception.runtime.publisher",
    "Service": "perception.runtime.service",
    "Subscription": "perception.runtime.subscription",
    "Timer": "perception.runtime.timer",
    "NodeHarness": "perception.runtime.harness",
    "run": "perception.runtime.runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'perception' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # the names as the type checker sees them (re-exports)
    from perception.msgs import Bool as Bool
    from perception.msgs import CameraInfo as CameraInfo
    from perception.msgs import Detection as Detection
    from perception.msgs import Detections as Detections
    from perception.msgs import Float64 as Float64
    from perception.msgs import Header as Header
    from perception.msgs import Image as Image
    from perception.msgs import Int64 as Int64
    from perception.msgs import Pose as Pose
    from perception.msgs import String as String
    from perception.runtime.client import Client as Client
    from perception.runtime.context import Context as Context
    from perception.runtime.harness import NodeHarness as NodeHarness
    from perception.runtime.node import Node as Node
    from perception.runtime.publisher import Publisher as Publisher
    from perception.runtime.qos import KEEP_LAST as KEEP_LAST
    from perception.runtime.qos import LATEST_ONLY as LATEST_ONLY
    from perception.runtime.qos import QoS as QoS
    from perception.runtime.runner import run as run
    from perception.runtime.service import Service as Service
    from perception.runtime.subscription import Subscription as Subscription
    from perception.runtime.timer import Timer as Timer
