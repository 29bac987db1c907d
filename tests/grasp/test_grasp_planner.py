"""The grasp planner's geometry on synthetic depth maps: no simulator, no processes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception.geometry import back_project, matrix_from_quaternion, quaternion_from_matrix
from perception.grasp import GraspPlanner
from perception.grasp.geometry import fit_plane
from perception.grasp.planner import OPEN_MARGIN

W, H, F = 320, 240, 300.0
K = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1.0]])
CAMERA_HEIGHT = 0.7


def camera_looking_down(x: float = 0.5, y: float = 0.0) -> np.ndarray:
    """Optical frame (OpenCV axes) above (x, y), looking straight down; image x is world -y."""
    pose = np.eye(4)
    pose[:3, :3] = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    pose[:3, 3] = (x, y, CAMERA_HEIGHT)
    return pose


def render(boxes: list[tuple[float, float, float, float, float, float]], pose: np.ndarray) -> np.ndarray:
    """Depth of a floor at z = 0 with upright boxes (cx, cy, length, width, height, yaw) on it."""
    v, u = np.indices((H, W), dtype=np.float64)
    rays = np.stack([(u - K[0, 2]) / F, (v - K[1, 2]) / F, np.ones_like(u)], axis=-1) @ pose[:3, :3].T
    depth = np.full((H, W), CAMERA_HEIGHT)  # the floor: straight down, z equals the optical depth
    for cx, cy, length, width, height, yaw in sorted(boxes, key=lambda b: b[4]):
        t = (CAMERA_HEIGHT - height) / -rays[..., 2]  # where each ray meets the box's top
        px, py = pose[0, 3] + t * rays[..., 0] - cx, pose[1, 3] + t * rays[..., 1] - cy
        along = px * math.cos(yaw) + py * math.sin(yaw)
        across = -px * math.sin(yaw) + py * math.cos(yaw)
        top = (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)
        depth[top] = CAMERA_HEIGHT - height
    return depth.astype(np.float32)


def box_pixels(cx: float, cy: float, half: float, pose: np.ndarray) -> list[float]:
    """A loose image box around a world point, like a detector's."""
    camera = np.linalg.inv(pose) @ np.array([cx, cy, 0.03, 1.0])
    u, v = F * camera[0] / camera[2] + W / 2, F * camera[1] / camera[2] + H / 2
    r = F * half / camera[2]
    return [u - r, v - r, u + r, v + r]


def yaw_of_closing(grasp) -> float:
    return math.atan2(grasp.closing[1], grasp.closing[0])


@pytest.mark.parametrize("yaw_deg", [0, 30, 75, 120])
def test_a_box_gets_a_grasp_at_its_centre_across_its_narrow_side(yaw_deg):
    yaw = math.radians(yaw_deg)
    pose = camera_looking_down()
    depth = render([(0.52, 0.03, 0.10, 0.04, 0.05, yaw)], pose)
    plan = GraspPlanner().plan(depth, K, pose, np.array([box_pixels(0.52, 0.03, 0.08, pose)]), ["jenga"])
    assert plan.rejected == []
    best = plan.grasps[0]
    assert best.class_name == "jenga" and best.detection == 0
    assert np.allclose(best.position[:2], (0.52, 0.03), atol=0.004)
    assert 0.01 <= best.position[2] <= 0.05
    # Fingers close across the 4 cm side: along the box's own y axis, either way round.
    narrow = yaw + math.pi / 2
    assert abs(math.remainder(yaw_of_closing(best) - narrow, math.pi)) < math.radians(6)
    # The opening: the 4 cm side, the clearance, and the margin the free table round it allows.
    assert best.width == pytest.approx(
        0.04 + 2 * GraspPlanner().gripper.clearance + 2 * OPEN_MARGIN, abs=0.006
    )
    # The hand points down, and its y axis is the closing direction.
    rotation = matrix_from_quaternion(best.orientation)
    assert np.allclose(rotation[:, 2], (0, 0, -1), atol=1e-3)
    assert np.allclose(rotation[:, 1], best.closing, atol=1e-6)
    assert np.allclose(plan.plane.normal, (0, 0, 1), atol=1e-3) and abs(plan.plane.offset) < 1e-3


def test_an_object_wider_than_the_gripper_everywhere_is_rejected_with_the_reason():
    pose = camera_looking_down()
    depth = render([(0.5, 0.0, 0.12, 0.10, 0.04, 0.0)], pose)
    plan = GraspPlanner().plan(depth, K, pose, np.array([box_pixels(0.5, 0.0, 0.09, pose)]))
    assert plan.grasps == []
    ((index, reason),) = plan.rejected
    assert index == 0 and "wider than the opening" in reason


def test_a_neighbour_where_a_finger_would_go_turns_the_grasp():
    pose = camera_looking_down()
    # A tall neighbour 4.5 cm away along the cube's x: closing along x would put a pad on it.
    depth = render([(0.5, 0.0, 0.04, 0.04, 0.05, 0.0), (0.545, 0.0, 0.02, 0.06, 0.08, 0.0)], pose)
    planner = GraspPlanner()
    plan = planner.plan(depth, K, pose, np.array([box_pixels(0.5, 0.0, 0.035, pose)]))
    best = plan.grasps[0]
    assert abs(best.closing[1]) > 0.99, "the fingers close along y, away from the neighbour"


def test_holes_and_boxes_outside_the_image_get_reasons_not_crashes():
    pose = camera_looking_down()
    depth = render([(0.5, 0.0, 0.04, 0.04, 0.05, 0.0)], pose)
    depth[100:140, 140:160] = np.nan  # the cube's pixels have no reading: NaN from one camera,
    depth[100:140, 160:180] = 0.0  # zero from another
    boxes = np.array([box_pixels(0.5, 0.0, 0.03, pose), [400, 300, 450, 350], [10, 10, 10, 20]])
    plan = GraspPlanner().plan(depth, K, pose, boxes)
    reasons = dict(plan.rejected)
    assert plan.grasps == []
    assert "holes, or nothing there" in reasons[0]
    assert "outside the 320x240 depth image" in reasons[1]
    assert "empty" in reasons[2]


def test_inputs_of_the_wrong_shape_are_named_not_indexed_into():
    """A 2 x 2 K, a box of three numbers and too few names raised IndexError or a reshape's ValueError
    from deep inside; a workspace range of one number, a TypeError at the first object."""
    from perception.grasp.inputs import Workspace

    pose = camera_looking_down()
    depth = render([(0.5, 0.0, 0.04, 0.04, 0.05, 0.0)], pose)
    box = box_pixels(0.5, 0.0, 0.03, pose)
    planner = GraspPlanner()
    for args, message in (
        ((depth, K[:2, :2], pose, [box]), r"K: expected the 3 x 3 intrinsics, found shape \(2, 2\)"),
        ((depth, K, pose[:3], [box]), r"world_from_camera: expected a 4 x 4 pose, found shape \(3, 4\)"),
        ((depth, K, pose, [[1.0, 2.0, 3.0]]), r"boxes: expected N x 4 .*, found shape \(1, 3\)"),
        ((depth, K, pose, [box, box], ["mug"]), r"class_names: expected one per box \(2\), found 1"),
    ):
        with pytest.raises(ValueError, match=message):
            planner.plan(*args)
    for bounds in (0.5, (0.8, -0.8)):
        with pytest.raises(ValueError, match=r"Workspace.x: expected \(least, most\) metres, found "):
            Workspace(x=bounds)  # type: ignore[arg-type]


def test_no_table_in_view_is_a_reason():
    pose = camera_looking_down()
    depth = np.full((H, W), np.nan, np.float32)
    plan = GraspPlanner().plan(depth, K, pose, np.array([[10.0, 10.0, 50.0, 50.0]]))
    assert plan.grasps == [] and "to find the table" in plan.rejected[0][1]


def test_plane_fit_and_back_projection_and_quaternions():
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(-1, 1, (500, 2)), np.full(500, 0.2)]
    points[:50, 2] += rng.uniform(0.05, 0.3, 50)  # outliers
    plane, inliers = fit_plane(points, np.array([0, 0, 1.0]), rng)
    assert inliers == 450 and np.allclose(plane.normal, (0, 0, 1)) and plane.offset == pytest.approx(-0.2)
    pose = camera_looking_down()
    world = back_project(np.array([W / 2]), np.array([H / 2]), np.array([0.7]), K, pose)
    assert np.allclose(world, [[0.5, 0.0, 0.0]])
    for q in [(0, 0, 0, 1), (1, 0, 0, 0), (0.5, 0.5, 0.5, 0.5), (0.0, 0.6, 0.0, 0.8)]:
        back = quaternion_from_matrix(matrix_from_quaternion(q))
        assert np.allclose(back, q) or np.allclose(back, -np.array(q))


@pytest.mark.parametrize("cls", ["cube", "jenga", "mug"])
def test_grasps_on_a_simulated_frame_land_on_the_objects_true_position(cls):
    """Depth, K and camera pose from the simulator: the planned grasp is over the object's true centre."""
    import pybullet as p

    from sim.camera import CameraSpec
    from sim.frames import capture
    from sim.tabletop import TabletopParams, TabletopScene
    from sim.world import World

    world = World("tiny")
    try:
        scene = TabletopScene(
            world, TabletopParams(objects=1, classes=[cls]), 7, CameraSpec(width=640, height=480)
        )
        frame = capture(scene)
        low, high = (np.array(v) for v in p.getAABB(scene.objects[0].body, physicsClientId=world.client))
    finally:
        world.close()
    plan = GraspPlanner().plan(frame.depth, frame.K, frame.pose, frame.xyxy, frame.class_names)
    assert plan.rejected == [] and 1 <= len(plan.grasps) <= GraspPlanner().per_object
    grasp = plan.grasps[0]
    centre = (low + high) / 2
    assert np.allclose(grasp.position[:2], centre[:2], atol=0.012), (grasp.position, centre)
    assert 0.005 < grasp.position[2] < high[2]
    assert np.allclose(plan.plane.normal, (0, 0, 1), atol=0.01) and abs(plan.plane.offset) < 0.003


def test_first_untried_skips_grasps_that_failed_before_either_way_round():
    from perception.grasp import first_untried

    positions = np.array([[0.5, 0.0, 0.02], [0.5, 0.0, 0.02], [0.6, 0.1, 0.02]])
    closings = np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0]])
    assert first_untried(positions, closings, []) == 0
    failed = [(np.array([0.505, 0.0, 0.02]), np.array([-1.0, 0, 0]))]  # the same grasp, jaws swapped
    assert first_untried(positions, closings, failed) == 1  # same place, turned 90°: worth a try
    failed.append((np.array([0.5, 0.0, 0.02]), np.array([0, 1.0, 0])))
    assert first_untried(positions, closings, failed) == 2
    failed.append((positions[2], closings[2]))
    assert first_untried(positions, closings, failed) is None


def test_a_quaternion_of_another_length_is_normalised_and_a_null_one_refused():
    half_turn = matrix_from_quaternion((0.0, 0.0, 1.0, 0.0))
    np.testing.assert_allclose(matrix_from_quaternion((0.0, 0.0, 2.0, 0.0)), half_turn, atol=1e-12)
    rounded = matrix_from_quaternion((0.0, 0.0, 0.7071, 0.7071))  # a quarter turn, typed by hand
    np.testing.assert_allclose(rounded @ rounded.T, np.eye(3), atol=1e-12)
    with pytest.raises(ValueError, match="expected a rotation, found"):
        matrix_from_quaternion((0.0, 0.0, 0.0, 0.0))


def test_a_square_near_the_opening_is_grasped_across_its_sides_whatever_its_turn():
    # 6 cm square: 7.6 cm with clearance fits the 7.8 cm opening only within 2 degrees of a side; its
    # spread has no narrow axis, so the sides come from the smallest enclosing rectangle.
    pose = camera_looking_down()
    for yaw_deg in (0, 20, 37):
        yaw = math.radians(yaw_deg)
        depth = render([(0.5, 0.0, 0.06, 0.06, 0.04, yaw)], pose)
        plan = GraspPlanner().plan(depth, K, pose, np.array([box_pixels(0.5, 0.0, 0.06, pose)]))
        assert plan.rejected == [], (yaw_deg, plan.rejected)
        off_side = math.remainder(yaw_of_closing(plan.grasps[0]) - yaw, math.pi / 2)
        assert abs(off_side) < math.radians(3), yaw_deg


def test_a_wide_base_below_the_fingertips_does_not_widen_the_grasp():
    # A 10 cm plinth 2 cm tall under a 4 cm post 7 cm tall: the pads close on the post.
    pose = camera_looking_down()
    depth = render([(0.5, 0.0, 0.10, 0.10, 0.02, 0.0), (0.5, 0.0, 0.04, 0.04, 0.07, 0.0)], pose)
    plan = GraspPlanner().plan(depth, K, pose, np.array([box_pixels(0.5, 0.0, 0.07, pose)]))
    assert plan.rejected == [] and plan.grasps
    best = plan.grasps[0]
    assert best.position[2] > 0.02 + 0.005  # above the plinth
    # The post's 4 cm (less up to a grid step of 4 mm at this range) and the clearance: not the plinth's 10.
    assert best.width == pytest.approx(
        0.04 + 2 * GraspPlanner().gripper.clearance + 2 * OPEN_MARGIN, abs=0.008
    )


def test_a_higher_grasp_lets_the_fingers_pass_over_lower_neighbours_all_round():
    # An 8 cm tall box ringed 1.2 cm away by 4.5 cm tall neighbours: at the deepest grasp (4 cm up)
    # a pad would land on one whatever the angle; 6 cm up the fingertips pass over them.
    pose = camera_looking_down()
    ring = [(0.5 + dx, dy, lx, ly, 0.045, 0.0) for dx, dy, lx, ly in (
        (0.05, 0.0, 0.02, 0.12), (-0.05, 0.0, 0.02, 0.12), (0.0, 0.05, 0.12, 0.02), (0.0, -0.05, 0.12, 0.02)
    )]  # fmt: skip
    depth = render([(0.5, 0.0, 0.056, 0.056, 0.08, 0.0), *ring], pose)
    boxes = np.array([box_pixels(0.5, 0.0, 0.035, pose)])
    deepest_only = GraspPlanner(grasp_heights=1).plan(depth, K, pose, boxes)
    assert deepest_only.grasps == [] and "neighbour" in deepest_only.rejected[0][1]
    plan = GraspPlanner().plan(depth, K, pose, boxes)
    assert plan.grasps and plan.grasps[0].position[2] > 0.045 + 0.01


def test_bench_grasp_names_a_bad_layout_or_object_count():
    from conftest import percept

    for args, message in (
        (["--objects", "16"], "--objects: expected 1-15, found 16"),
        (["--layout", "heap"], "--layout: expected one of spread, packed, pile, found 'heap'"),
    ):
        result = percept("bench", "grasp", *args)
        assert result.returncode == 1 and result.stderr.strip() == f"percept: error: {message}", result.stderr


def test_bench_grasp_warns_when_the_detector_has_no_class_for_a_users_object(capsys):
    """Otherwise the run ends with every such object left on the table and nothing said why."""
    from perception.cli.bench.grasp import _warn_of_unknown_classes
    from perception.installed import SHIPPED_MODEL

    _warn_of_unknown_classes(SHIPPED_MODEL, ["bracket", "mug"])
    assert capsys.readouterr().err == (
        f"percept: warning: --model {SHIPPED_MODEL} has no class 'bracket', so the loop will leave every "
        "bracket on the table (make a model for it with percept teach, or run with --truth)\n"
    )


def test_touching_objects_are_told_apart_by_the_step_between_them_and_by_their_boxes():
    pose = camera_looking_down()
    planner = GraspPlanner()
    # A 5 cm tall block against a 3 cm tall one; the detector's box round the first reaches a centimetre
    # into the second. The step between their tops cuts the patch: the grasp is the first block's alone.
    depth = render([(0.5, 0.0, 0.04, 0.04, 0.05, 0.0), (0.54, 0.0, 0.04, 0.04, 0.03, 0.0)], pose)
    plan = planner.plan(depth, K, pose, np.array([box_pixels(0.5, 0.0, 0.03, pose)]))
    assert plan.grasps, plan.rejected
    best = plan.grasps[0]
    assert np.allclose(best.position[:2], (0.5, 0.0), atol=0.006)
    assert best.width == pytest.approx(0.04 + 2 * planner.gripper.clearance + 2 * OPEN_MARGIN, abs=0.008)
    # Two blocks of one height side by side, each with its own box: the boxes share the patch out, and
    # each is grasped at its own centre, across the line between them (a pad between them has no room).
    depth = render([(0.5, 0.0, 0.04, 0.04, 0.04, 0.0), (0.5, 0.04, 0.04, 0.04, 0.04, 0.0)], pose)
    boxes = np.array([box_pixels(0.5, 0.0, 0.025, pose), box_pixels(0.5, 0.04, 0.025, pose)])
    plan = planner.plan(depth, K, pose, boxes)
    assert plan.rejected == []
    for index, centre_y in ((0, 0.0), (1, 0.04)):
        best = next(g for g in plan.grasps if g.detection == index)
        assert np.allclose(best.position[:2], (0.5, centre_y), atol=0.006), index
        assert abs(best.closing[0]) > 0.97, index  # closing along x, not towards the other block


def test_one_wide_object_is_not_cut_into_graspable_pieces():
    pose = camera_looking_down()
    # A 10 cm slab 3 cm thick with a 2 cm step on half of it: the step is a jump the cut sees, but it is
    # the object's own, and its box holds every piece.
    depth = render([(0.5, 0.0, 0.10, 0.10, 0.03, 0.0), (0.5, 0.0, 0.10, 0.05, 0.05, 0.0)], pose)
    plan = GraspPlanner().plan(depth, K, pose, np.array([box_pixels(0.5, 0.0, 0.075, pose)]))
    assert plan.grasps == [] and "wider than the opening" in plan.rejected[0][1]


def test_a_block_wedged_between_walls_is_pushed_out_along_the_gap():
    # A 4 cm wide, 10 cm long block between two taller walls that touch its long sides: the fingers
    # cannot close across it (a pad would land on a wall) nor along it (10 cm). The push comes down
    # beyond one end, on free table, and shoves it along the gap; nothing moves it into a wall.
    pose = camera_looking_down()
    walls = [(0.5, dy, 0.26, 0.02, 0.07, 0.0) for dy in (-0.031, 0.031)]
    depth = render([(0.5, 0.0, 0.10, 0.04, 0.04, 0.0), *walls], pose)
    boxes = np.array([box_pixels(0.5, 0.0, 0.05, pose)])
    plan = GraspPlanner().plan(depth, K, pose, boxes, ["jenga"])
    assert plan.grasps == [] and "neighbour" in plan.rejected[0][1]
    assert plan.pushes, "expected a push for the wedged block"
    for push in plan.pushes:
        start, end = np.array(push.start), np.array(push.end)
        heading = (end - start)[:2] / np.linalg.norm((end - start)[:2])
        assert abs(heading[0]) > 0.97, heading  # along the gap (world x)
        assert abs(start[0] - 0.5) > 0.05 and abs(start[1]) < 0.01  # beyond an end, on its middle line
        assert 0.01 <= start[2] <= 0.02 and end[2] == pytest.approx(start[2])
        assert push.detection == 0 and push.class_name == "jenga" and 0 < push.quality <= 1
    assert GraspPlanner(pushes=False).plan(depth, K, pose, boxes).pushes == []


def test_a_push_never_moves_an_object_out_of_the_workspace_nor_lands_on_a_neighbour():
    from perception.grasp import Workspace
    from perception.grasp.planner import PUSH_MARGIN
    from perception.grasp.push import PUSH_DISTANCE

    # A slab too wide to grasp near the workspace's +x edge, a tall post just behind it at -x: pushes
    # towards +x would leave the workspace, and those from the +x side... the fingers start beside the
    # slab, so only pushes whose start is clear of the post and whose end keeps the slab inside remain.
    pose = camera_looking_down()
    depth = render([(0.5, 0.0, 0.12, 0.10, 0.03, 0.0), (0.42, 0.0, 0.03, 0.03, 0.08, 0.0)], pose)
    workspace = Workspace(x=(0.2, 0.58), y=(-0.3, 0.3))
    plan = GraspPlanner(workspace=workspace).plan(
        depth, K, pose, np.array([box_pixels(0.5, 0.0, 0.08, pose)])
    )
    assert plan.grasps == [] and plan.pushes
    for push in plan.pushes:
        start, end = np.array(push.start), np.array(push.end)
        heading = (end - start)[:2] / np.linalg.norm((end - start)[:2])
        assert 0.5 + PUSH_DISTANCE * heading[0] <= 0.58 - PUSH_MARGIN + 0.01
        assert np.linalg.norm(start[:2] - (0.42, 0.0)) > 0.03  # not down on the post


def test_the_fingers_open_wider_than_the_object_needs_only_as_far_as_the_neighbours_allow():
    # A 4 x 6 cm block with a wall 1.7 cm beyond one side: closing across the 4 cm, a pad's outer face
    # lies 4.0 cm from the middle, the wall 4.5 cm: half a centimetre of the margin is free. The wall
    # (5 cm) stays under the hand's body, which passes over it 5.9 cm up.
    pose = camera_looking_down()
    planner = GraspPlanner()
    depth = render([(0.5, 0.0, 0.06, 0.04, 0.04, 0.0), (0.5, 0.055, 0.12, 0.02, 0.05, 0.0)], pose)
    plan = planner.plan(depth, K, pose, np.array([box_pixels(0.5, 0.0, 0.04, pose)]))
    best = plan.grasps[0]
    assert abs(best.closing[1]) > 0.97  # across the 4 cm
    measured = 0.04 + 2 * planner.gripper.clearance
    assert measured + 0.004 <= best.width <= measured + 0.016  # some of the margin, not all of it


def test_the_grasps_kept_for_an_object_are_distinct_so_a_failure_leaves_others_to_try():
    from perception.grasp import first_untried

    pose = camera_looking_down()
    depth = render([(0.5, 0.0, 0.05, 0.05, 0.05, 0.3)], pose)  # a square: many angles fit, alike in quality
    plan = GraspPlanner().plan(depth, K, pose, np.array([box_pixels(0.5, 0.0, 0.05, pose)]))
    assert len(plan.grasps) == 3
    positions = np.array([g.position for g in plan.grasps])
    closings = np.array([g.closing for g in plan.grasps])
    for tried in range(3):  # each one failing still leaves the next, not a repeat of it
        failed = [(positions[i], closings[i]) for i in range(tried + 1)]
        assert first_untried(positions, closings, failed) == (tried + 1 if tried < 2 else None)


def test_failed_grasps_are_not_offered_again_and_pushes_come_only_when_no_grasp_is_left():
    from perception.grasp import FailedGrasps

    pose = camera_looking_down()
    walls = [(0.5, dy, 0.26, 0.02, 0.07, 0.0) for dy in (-0.031, 0.031)]
    wedged = [(0.5, 0.0, 0.10, 0.04, 0.04, 0.0), *walls]
    free_cube = (0.5, 0.15, 0.04, 0.04, 0.04, 0.0)
    boxes = np.array([box_pixels(0.5, 0.0, 0.05, pose), box_pixels(0.5, 0.15, 0.03, pose)])
    planner = GraspPlanner()
    # The cube can be grasped: the wedged block gets no push yet (a loop grasps first).
    plan = planner.plan(render([*wedged, free_cube], pose), K, pose, boxes, ["jenga", "cube"])
    assert [g.detection for g in plan.grasps] == [1, 1, 1] and plan.rejected[0][0] == 0
    assert plan.pushes == []
    # Each of the cube's grasps failed: none is offered, the cube is rejected, and now pushes come.
    failed = FailedGrasps()
    for g in plan.grasps:
        failed.record("grasp", np.array(g.position), np.array(g.closing), success=False)
    again = planner.plan(render([*wedged, free_cube], pose), K, pose, boxes, ["jenga", "cube"], failed)
    assert again.grasps == [] and (1, "each of its 3 grasp(s) failed before") in again.rejected
    assert {p.detection for p in again.pushes} >= {0}
    # A push forgets the failures: the cube's grasps are offered again.
    failed.record("push", np.zeros(3), np.array([1.0, 0, 0]), success=True)
    assert len(failed) == 0
    assert len(planner.plan(render([*wedged, free_cube], pose), K, pose, boxes, None, failed).grasps) == 3


def test_an_object_beyond_the_arms_reach_is_not_to_be_picked():
    from perception.grasp import Workspace

    pose = camera_looking_down()
    depth = render([(0.5, 0.0, 0.04, 0.04, 0.04, 0.0)], pose)
    plan = GraspPlanner(workspace=Workspace(reach=0.45)).plan(
        depth, K, pose, np.array([box_pixels(0.5, 0.0, 0.03, pose)])
    )
    assert plan.grasps == [] and plan.rejected == []
    assert plan.outside == [
        (0, "out of the arm's reach at (0.50, 0.00): 0.50 m from its base, more than 0.45 m")
    ]


def test_no_grasp_brings_the_hand_down_on_a_neighbour_taller_than_its_underside():
    # A 3 x 8 cm brick, 3 cm tall, with a long wall 5.5 cm beyond its side: the fingers, closing across
    # the 3 cm, land well clear of the wall, but the hand's body (20.8 cm along the closing direction,
    # its underside 3.9 cm over the grasp point) would come down on it when the wall stands taller.
    pose = camera_looking_down()
    brick = (0.5, 0.0, 0.08, 0.03, 0.03, 0.0)
    box = np.array([box_pixels(0.5, 0.0, 0.045, pose)])
    low = GraspPlanner().plan(render([brick, (0.5, 0.07, 0.30, 0.02, 0.04, 0.0)], pose), K, pose, box)
    assert low.grasps and abs(low.grasps[0].closing[1]) > 0.97  # across the brick, the hand over the wall
    high = GraspPlanner().plan(render([brick, (0.5, 0.07, 0.30, 0.02, 0.12, 0.0)], pose), K, pose, box)
    assert high.grasps == []
    assert "the hand would come down on a neighbour" in high.rejected[0][1]
