"""What the grasp planner refuses, and with what words: inputs and settings that cannot be right raise
GraspInputError (a ValueError) naming the thing; a bad detection is a reason in the plan. No processes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_grasp_planner import H, K, W, box_pixels, camera_looking_down, render

from perception.grasp import GraspInputError, GraspPlanner, Gripper, Workspace


def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 4 cm cube on the table under the camera: depth in metres, pose, and its box."""
    pose = camera_looking_down()
    depth = render([(0.5, 0.0, 0.04, 0.04, 0.05, 0.0)], pose)
    return depth, pose, np.array([box_pixels(0.5, 0.0, 0.035, pose)])


def refused(message: str, call) -> None:
    with pytest.raises(GraspInputError, match=re.escape(message)):
        call()


def test_depth_in_a_cameras_integer_units_is_refused_with_how_to_make_metres():
    depth, pose, boxes = scene()
    millimetres = np.round(depth * 1000).astype(np.uint16)  # as a RealSense gives it
    refused(
        "depth: expected floats in metres, found uint16: multiply by the camera's depth scale (usually "
        "0.001) for metres",
        lambda: GraspPlanner().plan(millimetres, K, pose, boxes),
    )


def test_depth_in_millimetres_as_floats_is_a_reason_naming_the_distance_and_the_unit():
    """Every object lies too far for a width to be measured: its depth cells are further apart than the
    gripper opens. It was "outside the workspace at (-538.27, -114.10)", in Plan.outside."""
    depth, pose, boxes = scene()
    plan = GraspPlanner().plan(depth * 1000, K, pose, boxes)
    assert plan.grasps == [] and plan.outside == []
    ((index, reason),) = plan.rejected
    assert index == 0 and reason.startswith("its nearest depth reading is 650 m away, where depth cells")
    assert reason.endswith(
        "more than the gripper's 0.078 m opening: is the depth in millimetres? (expected metres)"
    )
    # In metres, the cube is grasped.
    assert GraspPlanner().plan(depth, K, pose, boxes).grasps


def test_intrinsics_of_another_resolution_or_not_a_pinhole_are_refused():
    depth, pose, boxes = scene()
    twice = np.diag([2.0, 2.0, 1.0]) @ K  # the colour stream's at twice the depth's resolution
    refused(
        f"K: expected its principal point within the {W}x{H} depth image, found ({W}, {H}): intrinsics "
        "of another resolution? (scale fx, fy, cx, cy by the depth image's size over theirs)",
        lambda: GraspPlanner().plan(depth, twice, pose, boxes),
    )
    refused(
        "K: expected [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy over 0, found ",
        lambda: GraspPlanner().plan(depth, K * [[-1], [1], [1]], pose, boxes),
    )
    refused("(transposed?)", lambda: GraspPlanner().plan(depth, K.T, pose, boxes))
    not_finite = K.copy()
    not_finite[0, 0] = np.nan
    refused(
        "K: expected finite numbers, found [[nan, 0.0, 160.0]",
        lambda: GraspPlanner().plan(depth, not_finite, pose, boxes),
    )


def test_a_transposed_depth_image_is_refused():
    """W x H depth (an (x, y)-indexed array) passed every check and put each object elsewhere."""
    depth, pose, boxes = scene()
    refused(
        f"depth: expected H x W rows and columns, found shape ({W}, {H}), which puts K's principal point "
        f"({K[0, 2]:g}, {K[1, 2]:g}) far off its centre and the {W}x{H} image's at its centre: transposed? "
        "(give depth.T)",
        lambda: GraspPlanner().plan(np.ascontiguousarray(depth.T), K, pose, boxes),
    )
    # A principal point a little off centre, as real cameras have, is no transposition.
    off = K.copy()
    off[0, 2] += 0.04 * W
    assert GraspPlanner().plan(depth, off, pose, boxes).grasps


def test_a_camera_pose_that_is_not_finite_or_not_rigid_is_refused_by_name():
    depth, pose, boxes = scene()
    plan = GraspPlanner().plan
    # It said "plane fit: the points are collinear".
    refused(
        "world_from_camera: expected finite numbers, found [[nan,",
        lambda: plan(depth, K, np.full((4, 4), np.nan), boxes),
    )
    rotation = (
        "world_from_camera: expected a rotation in its top-left 3 x 3 (orthonormal, determinant +1), found"
    )
    refused(rotation, lambda: plan(depth, K, np.diag([2.0, 2.0, 2.0, 1.0]) @ pose, boxes))  # scaled
    refused(rotation, lambda: plan(depth, K, np.diag([-1.0, 1.0, 1.0, 1.0]) @ pose, boxes))  # mirrored
    projective = pose.copy()
    projective[3] = (0.0, 0.0, 0.1, 1.0)
    refused(
        "world_from_camera: expected the last row [0, 0, 0, 1], found [0.0, 0.0, 0.1, 1.0]",
        lambda: plan(depth, K, projective, boxes),
    )
    # A pose typed to three decimals is a rotation still, near enough.
    tilted = pose.copy()
    angle = np.radians(20)
    tilted[:3, :3] = pose[:3, :3] @ [
        [1, 0, 0],
        [0, np.cos(angle), -np.sin(angle)],
        [0, np.sin(angle), np.cos(angle)],
    ]
    assert plan(depth, K, np.round(tilted, 3), boxes).plane is not None


def test_a_box_of_nan_or_inf_is_a_reason_and_the_other_boxes_are_planned():
    depth, pose, boxes = scene()
    plan = GraspPlanner().plan(depth, K, pose, np.vstack([boxes, [[np.nan] * 4], [[0, 0, np.inf, 10]]]))
    assert plan.rejected == [
        (1, "box [nan, nan, nan, nan] is empty or not finite"),
        (2, "box [0.0, 0.0, inf, 10.0] is empty or not finite"),
    ]
    assert {g.detection for g in plan.grasps} == {0}


def test_class_names_are_any_sequence_of_str_but_not_one_str():
    depth, pose, boxes = scene()
    plan = GraspPlanner().plan
    grasps = plan(depth, K, pose, boxes, np.array(["cube"])).grasps
    assert grasps and {type(g.class_name) for g in grasps} == {str} and grasps[0].class_name == "cube"
    assert plan(depth, K, pose, boxes, ("cube",)).grasps[0].class_name == "cube"
    refused(
        "class_names: expected one name per box, found a str ('cube')",
        lambda: plan(depth, K, pose, boxes, "cube"),
    )
    refused("class_names: expected a str per box, found int 7 at 0", lambda: plan(depth, K, pose, boxes, [7]))


def test_a_detections_message_for_boxes_is_told_what_to_pass():
    from perception.msgs import Detections, Header

    depth, pose, boxes = scene()
    detections = Detections(
        header=Header(), xyxy=boxes.astype(np.float32), scores=[0.9], class_ids=[0], class_names=["cube"]
    )
    refused(
        "boxes: expected N x 4 numbers (x1, y1, x2, y2 pixels), found Detections: pass its .xyxy (and .class_names)",
        lambda: GraspPlanner().plan(depth, K, pose, detections),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Gripper(max_opening=78), "Gripper.max_opening: expected metres in (0, 0.5], found 78"),
        (lambda: Gripper(max_opening=-0.08), "Gripper.max_opening: expected metres in (0, 0.5], found -0.08"),
        (lambda: Gripper(max_opening=0), "Gripper.max_opening: expected metres in (0, 0.5], found 0"),
        (lambda: Gripper(hand_length=208), "Gripper.hand_length: expected metres in (0, 0.5], found 208"),
        (lambda: Gripper(clearance=-0.001), "Gripper.clearance: expected metres in [0, 0.5], found -0.001"),
        (lambda: Gripper(pad_width="22"), "Gripper.pad_width: expected metres in (0, 0.5], found '22'"),
        (lambda: Workspace(max_height=0), "Workspace.max_height: expected metres over 0, found 0"),
        (lambda: Workspace(reach=-1.0), "Workspace.reach: expected metres over 0, found -1.0"),
        (lambda: GraspPlanner(step=0), "GraspPlanner.step: expected an integer, 1 or more, found 0"),
        (lambda: GraspPlanner(step=1.5), "GraspPlanner.step: expected an integer, 1 or more, found 1.5"),
        (
            lambda: GraspPlanner(angle_step_deg=0),
            "GraspPlanner.angle_step_deg: expected degrees over 0, 180 at most, found 0",
        ),
        (
            lambda: GraspPlanner(angle_step_deg=-15),
            "GraspPlanner.angle_step_deg: expected degrees over 0, 180 at most, found -15",
        ),
        (
            lambda: GraspPlanner(per_object=0),
            "GraspPlanner.per_object: expected an integer, 1 or more, found 0",
        ),
        (
            lambda: GraspPlanner(grasp_heights=0),
            "GraspPlanner.grasp_heights: expected an integer, 1 or more, found 0",
        ),
        (
            lambda: GraspPlanner(min_points=2),
            "GraspPlanner.min_points: expected an integer, 3 or more, found 2",
        ),
        (
            lambda: GraspPlanner(min_height=8),
            "GraspPlanner.min_height: expected metres over 0, under max_height 0.3, found 8",
        ),
        (
            lambda: GraspPlanner(jump=0),
            "GraspPlanner.jump: expected metres over 0, under max_height 0.3, found 0",
        ),
    ],
)
def test_settings_out_of_range_are_refused_at_construction_naming_the_setting_and_unit(make, message):
    refused(message, make)


def test_settings_at_the_edges_of_their_ranges_are_taken():
    Gripper(clearance=0.0, palm_height=0.0, max_opening=0.5)
    GraspPlanner(step=np.int64(1), angle_step_deg=180, per_object=1, grasp_heights=1, min_points=3)
    GraspPlanner(workspace=Workspace(max_height=1.0), min_height=0.5, jump=0.5)
