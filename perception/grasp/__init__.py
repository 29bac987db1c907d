"""Grasp planning: a library (no ZeroMQ) from depth, camera model and detections to ranked grasps, and
the pick policy (which grasp to try next, when to stop) that the pick loop and its benchmark share."""

from perception.grasp.inputs import GraspInputError, Gripper, Workspace
from perception.grasp.pick_policy import (
    GRASP,
    PUSH,
    Action,
    FailedGrasps,
    PickLimits,
    PickPolicy,
    first_untried,
)
from perception.grasp.planner import Grasp, GraspPlanner, Plan, Push

__all__ = [
    "GRASP",
    "PUSH",
    "Action",
    "FailedGrasps",
    "Grasp",
    "GraspInputError",
    "GraspPlanner",
    "Gripper",
    "PickLimits",
    "PickPolicy",
    "Plan",
    "Push",
    "Workspace",
    "first_untried",
]
