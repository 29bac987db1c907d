"""Grasp planning: a library (no ZeroMQ) from depth, camera model and detections to ranked grasps, and
the pick policy (which grasp to try next, when to stop) that the pick loop and its benchmark share."""

from perception.grasp.pick_policy import PickLimits, PickPolicy, first_untried
from perception.grasp.planner import Grasp, GraspPlanner, Gripper, Plan, Workspace

__all__ = [
    "Grasp",
    "GraspPlanner",
    "Gripper",
    "PickLimits",
    "PickPolicy",
    "Plan",
    "Workspace",
    "first_untried",
]
