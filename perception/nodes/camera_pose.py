"""The camera's pose in the world as node parameters: one declaration and one check for every node that
publishes camera info (the camera, the depth camera, the ROS 2 bridge)."""

from __future__ import annotations

import numpy as np

from perception import Node
from perception.errors import ParameterError
from perception.msgs import Pose


def declare_camera_pose(node: Node, position: str = "position", orientation: str = "orientation") -> Pose:
    """Declare the two read-only parameters and return the pose (the quaternion normalised: a rounded
    one from a launch file is meant as a rotation)."""
    xyz = node.declare_parameter(
        position, [0.0, 0.0, 0.0], "camera position in the world (m)", read_only=True
    )
    q = node.declare_parameter(
        orientation,
        [0.0, 0.0, 0.0, 1.0],
        "optical frame orientation in the world (x, y, z, w)",
        read_only=True,
    )
    if len(xyz) != 3 or not all(isinstance(v, (int, float)) for v in xyz):
        raise ParameterError(f"parameter {position!r}: expected [x, y, z] in metres, found {xyz!r}")
    if len(q) != 4 or not 0.5 < float(np.linalg.norm(q)) < 2.0:
        raise ParameterError(
            f"parameter {orientation!r}: expected a unit quaternion [x, y, z, w], found {q!r}"
        )
    unit = np.asarray(q, float) / np.linalg.norm(q)
    return Pose(tuple(float(v) for v in xyz), tuple(float(v) for v in unit))  # type: ignore[arg-type]
