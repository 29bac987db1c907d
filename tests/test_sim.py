"""The simulator on real PyBullet: camera geometry, ground truth, reproducibility, bad input, the node."""

from __future__ import annotations

import math

import numpy as np
import pybullet as p
import pytest
from conftest import spin_until

from perception import Node
from perception.msgs import CameraInfo, GroundTruth, Image, Reset, Result
from sim.camera import CameraSpec, back_project, boxes_from_mask, intrinsics, quaternion_from_matrix
from sim.frames import capture
from sim.tabletop import TabletopParams, TabletopScene, params_from
from sim.world import World


@pytest.fixture(scope="module", params=["tiny", "egl"])
def world(request):
    world = World(request.param)
    assert world.renderer == request.param
    yield world
    world.close()


def scene(world: World, seed: int = 3, **params: object) -> TabletopScene:
    return TabletopScene(world, TabletopParams(**params), seed, CameraSpec(width=320, height=240))  # type: ignore[arg-type]


def test_depth_and_intrinsics_back_project_onto_the_true_position(world):
    """The pixel at a cube's top-face centre, back-projected with its depth, K and the camera pose, lands
    on that point of the cube within a centimetre (it is about a millimetre here)."""
    cubes = scene(world, objects=6, classes=["cube"])
    frame = capture(cubes)
    assert len(frame.ids) == 6
    camera_from_world = np.linalg.inv(frame.pose)
    for body, position in zip(frame.ids, frame.positions, strict=True):
        top = np.array([position[0], position[1], p.getAABB(int(body), physicsClientId=world.client)[1][2]])
        x, y, z = (camera_from_world @ np.r_[top, 1.0])[:3]
        u, v = round(x / z * frame.K[0, 0] + frame.K[0, 2]), round(y / z * frame.K[1, 1] + frame.K[1, 2])
        assert frame.mask[v, u] == body
        point = back_project([u], [v], [frame.depth[v, u]], frame.K, frame.pose)[0]
        assert np.linalg.norm(point - top) < 0.01


def test_ground_truth_boxes_are_the_segmentation_extents(world):
    frame = capture(scene(world, objects=5))
    assert len(frame.ids) == 5 and set(frame.class_names) <= set(TabletopParams().classes)
    for body, box, fraction in zip(frame.ids, frame.xyxy, frame.visible_fraction, strict=True):
        rows, cols = np.nonzero(frame.mask == body)
        assert tuple(box) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        assert 0.3 < fraction <= 1.0  # nothing hides these objects much in this seed
    background = np.isnan(frame.depth)
    assert not background[frame.mask >= 0].any()  # every rendered object pixel has a depth


@pytest.mark.parametrize(
    ("mask", "expected_boxes", "expected_counts"),
    [
        # One pixel: a box one pixel wide (edges, so x2 = x1 + 1).
        ([[-1, -1], [-1, 7]], [[1, 1, 2, 2]], [1]),
        # An L shape: its box spans both arms; an id with no pixel gets NaN and count 0.
        ([[7, -1, -1], [7, 7, 7]], [[0, 0, 3, 2], [np.nan] * 4], [4, 0]),
    ],
)
def test_boxes_from_mask(mask, expected_boxes, expected_counts):
    ids = [7] if len(expected_counts) == 1 else [7, 9]
    boxes, counts = boxes_from_mask(np.array(mask), np.array(ids))
    np.testing.assert_array_equal(boxes, np.array(expected_boxes, np.float32))
    np.testing.assert_array_equal(counts, expected_counts)


def test_the_same_seed_gives_the_same_frames(world):
    first = capture(scene(world, seed=11, objects=5, camera_jitter=0.02, light_jitter=0.3))
    again = capture(scene(world, seed=11, objects=5, camera_jitter=0.02, light_jitter=0.3))
    other = capture(scene(world, seed=12, objects=5, camera_jitter=0.02, light_jitter=0.3))
    np.testing.assert_array_equal(first.rgb, again.rgb)
    np.testing.assert_array_equal(first.depth, again.depth)
    assert first.class_names == again.class_names
    assert not np.array_equal(first.rgb, other.rgb)


def test_intrinsics_follow_the_vertical_field_of_view():
    K = intrinsics(CameraSpec(width=640, height=480, fov_deg=58.0))
    assert K[1, 1] == pytest.approx(240 / math.tan(math.radians(29)))  # 432.97
    assert K[0, 0] == pytest.approx(K[1, 1])  # square pixels when the aspect is W/H


def test_quaternions_agree_with_pybullet():
    for euler in [(0, 0, 0), (math.pi, 0, 0.3), (0.2, -1.1, 2.9), (math.pi / 2, 0, math.pi)]:
        q = p.getQuaternionFromEuler(euler)
        rotation = np.array(p.getMatrixFromQuaternion(q)).reshape(3, 3)
        ours = quaternion_from_matrix(rotation)
        assert np.allclose(ours, q, atol=1e-9) or np.allclose(ours, -np.array(q), atol=1e-9)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"classes": ["cube", "banana"]}, "unknown tabletop class 'banana'; classes: cube, cylinder"),
        ({"objects": 60}, "cannot place 60 objects without overlap"),
        ({"objcts": 3}, "unknown tabletop parameter 'objcts'; parameters: objects, classes"),
        ({"objects": -1}, "objects: expected a count >= 0, found -1"),
    ],
)
def test_bad_scene_parameters_are_named(world, params, message):
    with pytest.raises(ValueError, match=message):
        TabletopScene(world, params_from(params), 0, CameraSpec(width=64, height=48))


def test_camera_spec_rejects_a_view_along_the_up_vector():
    with pytest.raises(ValueError, match=r"up vector .* is parallel to the view direction"):
        CameraSpec(eye=(0.5, 0.0, 1.0), target=(0.5, 0.0, 0.0))


def test_sim_node_publishes_one_stamp_per_frame_and_resets(context, spawn):
    spawn(
        "run",
        "sim.node:SimNode",
        "-p",
        "clock:=fast",
        "-p",
        "renderer:=tiny",
        "-p",
        "width:=160",
        "-p",
        "height:=120",
        "-p",
        "scene_params:={objects: 3}",
    )
    stamps: dict[str, list[int]] = {"image": [], "depth": [], "info": [], "truth": []}
    truths: list[GroundTruth] = []
    depths: list[Image] = []
    with Node("viewer", context=context) as node:
        node.create_subscription(Image, "/camera/image", lambda m: stamps["image"].append(m.header.stamp))
        node.create_subscription(
            Image, "/camera/depth", lambda m: (stamps["depth"].append(m.header.stamp), depths.append(m))
        )
        node.create_subscription(
            CameraInfo, "/camera/camera_info", lambda m: stamps["info"].append(m.header.stamp)
        )
        node.create_subscription(
            GroundTruth, "/ground_truth", lambda m: (stamps["truth"].append(m.header.stamp), truths.append(m))
        )
        spin_until(node, lambda: min(len(s) for s in stamps.values()) >= 10, timeout_s=60, what="10 frames")
        common = set(stamps["image"]) & set(stamps["depth"]) & set(stamps["info"]) & set(stamps["truth"])
        assert len(common) >= 5  # the four messages of a frame carry the same stamp
        assert stamps["image"] == sorted(stamps["image"])
        step = np.diff(sorted(stamps["image"])).min()
        assert step == pytest.approx(1e8, rel=0.05)  # fast clock: sim time, 10 frames per sim second
        assert depths[-1].encoding == "32FC1" and depths[-1].data.shape == (120, 160)
        assert len(truths[-1].ids) == 3

        reset = node.create_client("/sim/reset", Reset, Result)
        assert reset.wait_for_service(10)
        result = reset.call(Reset(seed=5, params={"objects": 4}), timeout_s=30)
        assert result.success, result.message
        truths.clear()
        spin_until(node, lambda: truths and len(truths[-1].ids) == 4, timeout_s=30, what="the new scene")
        refused = reset.call(Reset(seed=1, params={"classes": ["unicorn"]}), timeout_s=30)
        assert not refused.success and "unknown tabletop class 'unicorn'" in refused.message
        truths.clear()
        spin_until(node, lambda: len(truths) >= 2, timeout_s=30, what="frames after a refused reset")
