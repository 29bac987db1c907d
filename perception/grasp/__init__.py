"""Grasp planning: a library (no ZeroMQ) from depth, camera model and detections to ranked grasps."""

from perception.grasp.planner import Grasp, GraspPlanner, Gripper, Plan, Workspace, first_untried

__all__ = ["Grasp", "GraspPlanner", "Gripper", "Plan", "Workspace", "first_untried"]
