"""The grasp planner node (in process, through the node harness) and the pick-and-place graph in the
simulator (real processes, real sockets)."""

from __future__ import annotations

import numpy as np
import pytest
from test_grasp_planner import K, box_pixels, camera_looking_down, render

from perception.detector.defaults import DEFAULT_CONFIDENCE
from perception.geometry import matrix_from_quaternion, quaternion_from_matrix
from perception.msgs import CameraInfo, Detections, Grasps, Header, Image, PickAttempt, Pose, SetParameters


def test_the_planner_node_pairs_depth_and_camera_info_with_detections_by_stamp():
    """The node adapter alone, in process (NodeHarness): the graph test below runs it between processes."""
    from perception.nodes.grasp_planner import GraspPlannerNode
    from perception.runtime.harness import NodeHarness

    pose = camera_looking_down()
    depth = render([(0.52, 0.03, 0.10, 0.04, 0.05, 0.3)], pose)
    info = CameraInfo(
        header=Header(),
        width=depth.shape[1],
        height=depth.shape[0],
        K=K,
        pose=Pose(tuple(pose[:3, 3]), quaternion_from_matrix(pose[:3, :3])),  # type: ignore[arg-type]
    )
    box = np.array([box_pixels(0.52, 0.03, 0.08, pose)], np.float32)
    wait_s = 0.05
    with NodeHarness(GraspPlannerNode, parameters={"tolerance_s": 0.01, "pair_wait_s": wait_s}) as harness:
        now = [0.0]  # the pairing's clock, moved by hand: a stalled test process cannot run a wait out
        harness.node.sync.clock = lambda: now[0]

        def answer(
            stamp: int, with_depth: bool = True, with_info: bool = True, depth=depth, encoding="32FC1"
        ) -> Grasps:
            header = Header(stamp=stamp, frame_id="camera")
            if with_depth:
                harness.feed("/depth", Image(header=header, data=depth, encoding=encoding))
            if with_info:
                info.header = header
                harness.feed("/camera_info", info)
            detections = Detections(
                header=header, xyxy=box, scores=np.array([0.9]), class_ids=[0], class_names=["jenga"]
            )
            harness.feed("/detections", detections)
            if not (with_depth and with_info):  # held for the missing partner until its wait runs out
                assert harness.take("/grasps") == []
                now[0] += wait_s
                harness.run_timers()  # finds it overdue: one more turn, for a partner read after timers
                harness.run_timers()
            (grasps,) = harness.take("/grasps", Grasps)
            assert grasps.header.stamp == stamp
            return grasps

        # Detections that overtook their frame's depth and camera info (each topic has its own socket)
        # wait for them.
        header = Header(stamp=500_000_000, frame_id="camera")
        info.header = Header(stamp=1)  # an earlier frame's: both topics are publishing
        harness.feed("/camera_info", info)
        harness.feed("/depth", Image(header=info.header, data=depth, encoding="32FC1"))
        info.header = header
        harness.feed(
            "/detections",
            Detections(header=header, xyxy=box, scores=np.array([0.9]), class_ids=[0], class_names=["jenga"]),
        )
        harness.feed("/depth", Image(header=header, data=depth, encoding="32FC1"))
        assert harness.take("/grasps") == []
        harness.feed("/camera_info", info)
        (overtaken,) = harness.take("/grasps", Grasps)
        assert overtaken.header.stamp == 500_000_000 and len(overtaken) == 1

        first = answer(1_000_000_000)
        assert first.header.stamp == 1_000_000_000 and 1 <= len(first) <= 3  # best candidates first
        # The pick loop's attempts: a grasp that failed is not offered again, until a push.
        failure = PickAttempt(
            header=Header(stamp=1_000_000_000),
            pose=Pose(tuple(first.positions[0]), tuple(first.orientations[0])),  # type: ignore[arg-type]
            success=False,
            action="grasp",
        )
        harness.feed("/attempts", failure)
        retried = answer(1_000_000_001)
        assert len(first) == 1 and len(retried) == 0  # the 10 cm block has one grasp, across it
        assert retried.rejected_reasons == ["each of its 1 grasp(s) failed before"] and len(
            retried.push_starts
        )
        harness.feed(
            "/attempts", PickAttempt(header=Header(stamp=1_000_000_001), action="push", success=True)
        )
        assert len(answer(1_000_000_002)) == len(first)
        # Millimetres in 16 bits, as ROS 2 depth drivers publish (REP 118; 0 where nothing was seen),
        # plan as metres do.
        millimetres = np.round(np.nan_to_num(depth) * 1000).astype(np.uint16)
        in_mm = answer(1_000_000_003, depth=millimetres, encoding="16UC1")
        assert len(in_mm) == len(first)
        np.testing.assert_allclose(in_mm.positions, first.positions, atol=0.002)
        grey = answer(1_000_000_004, depth=np.zeros(depth.shape, np.uint8), encoding="mono8")
        assert len(grey) == 0 and grey.rejected_reasons == [
            "depth encoding 'mono8'; expected 32FC1 (metres) or 16UC1 (millimetres)"
        ]
        assert set(first.class_names) == {"jenga"} and set(first.detection_indices.tolist()) == {0}
        np.testing.assert_allclose(first.positions[0][:2], (0.52, 0.03), atol=0.005)
        assert list(first.qualities) == sorted(first.qualities, reverse=True) and first.planning_ms > 0
        # The closing direction the planner computed travels with each grasp, a unit vector across the
        # hand (its y axis), so the pick loop need not rebuild it from the orientation.
        np.testing.assert_allclose(np.linalg.norm(first.closings, axis=1), 1.0, atol=1e-6)
        hand_y = np.array([matrix_from_quaternion(q)[:, 1] for q in first.orientations])
        np.testing.assert_allclose(np.abs(np.sum(first.closings * hand_y, axis=1)), 1.0, atol=1e-6)
        # A frame whose depth never came: the detection is rejected with the reason, not dropped.
        second = answer(2_000_000_000, with_depth=False)
        assert len(second) == 0 and second.rejected_indices.tolist() == [0]
        assert second.rejected_reasons[0].startswith(
            "no depth frame for this stamp (nearest is -1000 ms away"
        )
        # And one whose camera info never came.
        third = answer(3_000_000_000, with_info=False)
        assert len(third) == 0 and third.rejected_reasons == [
            "no camera info for this stamp (nearest is -1000 ms away (tolerance 10 ms))"
        ]
        # And one whose depth image is not the colour camera's size (an unregistered RGB-D camera).
        fourth = answer(4_000_000_000, depth=np.ascontiguousarray(depth[::2, ::2]))
        h, w = depth.shape
        assert len(fourth) == 0 and fourth.rejected_reasons == [
            f"depth {w // 2}x{h // 2} and camera info {w}x{h} differ; expected depth registered to the "
            "colour camera"
        ]
        # The score threshold is the detector's one name and default, range-checked at run time.
        refused = harness.call("~/set_parameters", SetParameters(values={"confidence": 1.5}))
        assert not refused.success and "expected a score from 0 to 1, found 1.5" in refused.message
        assert harness.node.get_parameter("confidence") == DEFAULT_CONFIDENCE
        harness.call("~/set_parameters", SetParameters(values={"confidence": 0.95}))
        assert len(answer(5_000_000_000)) == 0  # the 0.9 box is now too weak: not planned for


@pytest.mark.parametrize("clock", ["realtime", "fast"])
def test_the_tabletop_grasp_launch_picks_a_cube_end_to_end(registry, clock):
    """sim -> detector (the shipped model) -> planner -> pick loop, as separate processes; the launch
    ends when the pick loop does. With the fast clock the frames carry simulated time, which the pick
    loop must tell apart from frames taken before the arm moved just as well."""
    from conftest import percept

    result = percept(
        "launch",
        "tabletop_grasp",
        "objects:=1",
        "classes:=[cube]",
        "seed:=0",
        f"clock:={clock}",
        "--status-period",
        "0",
        "--duration",
        "180",
        timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "attempt 1: " in output and "picked and placed" in output
    assert "pick loop done (the table is clear): 1 picked in 1 attempts (100% success)" in output
    assert "required node /pick_loop finished (exit code 0)" in output


def test_the_pick_loop_node_pushes_through_the_simulators_service_when_no_grasp_fits(context, spawn):
    """A Grasps message offering no grasp and one push, as the planner sends for a wedged object: the
    pick-loop process calls the sim process's /sim/execute_push, the cube moves, and the action is
    published on /attempts as a push."""
    from conftest import spawn_sim, spin_until

    from perception import Node
    from perception.msgs import GroundTruth, PickAttempt

    spawn_sim(spawn, scene_params="{objects: 1, classes: [cube]}")
    spawn("run", "perception.nodes.pick_loop:PickLoop", "-p", "exit_when_done:=false")
    truths: list[GroundTruth] = []
    attempts: list[PickAttempt] = []
    with Node("planner_stand_in", context=context) as node:
        node.create_subscription(GroundTruth, "/ground_truth", truths.append)
        node.create_subscription(PickAttempt, "/attempts", attempts.append)
        publisher = node.create_publisher(Grasps, "/grasps")
        spin_until(node, lambda: truths and len(truths[-1].ids) == 1, timeout_s=60, what="the cube")
        x, y, _ = truths[-1].positions[0]
        start, end = (x, y - 0.045, 0.015), (x, y + 0.04, 0.015)

        def offer() -> bool:
            publisher.publish(
                Grasps(
                    header=Header(stamp=truths[-1].header.stamp),
                    rejected_indices=np.array([0], np.int32),
                    rejected_reasons=["no feasible grasp: a finger would land on a neighbour"],
                    push_starts=np.array([start]),
                    push_ends=np.array([end]),
                    push_qualities=np.array([0.7], np.float32),
                    push_detection_indices=np.array([0], np.int32),
                    push_class_names=["cube"],
                )
            )
            return bool(attempts)

        spin_until(node, offer, timeout_s=90, what="the pick loop's first action")
        action = attempts[0]
        assert action.action == "push" and action.success and action.class_name == "cube", action.reason
        assert action.reason.startswith("pushed: an object moved")
        assert np.allclose(action.pose.position, start) and np.allclose(action.push_end, end)
        truths.clear()
        spin_until(node, lambda: truths, timeout_s=30, what="a frame after the push")
        assert truths[-1].positions[0][1] - y > 0.02  # the cube went along +y


def test_with_an_eye_to_hand_calibration_grasps_come_out_in_the_base_frame(tmp_path):
    """The planner applies the hand-eye file's camera pose, not camera_info's (here a wrong identity):
    the grasp lands on the block where the base frame has it."""
    from perception.camera.handeye import HandEye
    from perception.errors import ParameterError
    from perception.nodes.grasp_planner import GraspPlannerNode
    from perception.runtime.harness import NodeHarness

    pose = camera_looking_down()
    depth = render([(0.52, 0.03, 0.10, 0.04, 0.05, 0.3)], pose)
    calibration = tmp_path / "handeye.yaml"
    calibration.write_text(HandEye("eye-to-hand", pose, 12, 0.0005, 0.05, "park").to_yaml())
    info = CameraInfo(header=Header(), width=depth.shape[1], height=depth.shape[0], K=K)  # pose: identity
    box = np.array([box_pixels(0.52, 0.03, 0.08, pose)], np.float32)
    with NodeHarness(
        GraspPlannerNode, parameters={"tolerance_s": 0.01, "handeye": str(calibration)}
    ) as harness:
        header = Header(stamp=5, frame_id="camera")
        harness.feed("/depth", Image(header=header, data=depth, encoding="32FC1"))
        info.header = header
        harness.feed("/camera_info", info)
        harness.feed(
            "/detections",
            Detections(header=header, xyxy=box, scores=np.array([0.9]), class_ids=[0], class_names=["jenga"]),
        )
        (grasps,) = harness.take("/grasps", Grasps)
    np.testing.assert_allclose(grasps.positions[0][:2], (0.52, 0.03), atol=0.005)
    calibration.write_text(HandEye("eye-in-hand", pose, 12, 0.0005, 0.05, "park").to_yaml())
    with pytest.raises(ParameterError, match="is eye-in-hand: the camera moves with the hand"):
        NodeHarness(GraspPlannerNode, parameters={"handeye": str(calibration)}).__enter__()


def _one_object_frame(K: np.ndarray = K) -> tuple[np.ndarray, CameraInfo, np.ndarray]:
    """Depth of one object on the table under the camera, its camera info (stamp 5) and its box."""
    pose = camera_looking_down()
    depth = render([(0.52, 0.03, 0.10, 0.04, 0.05, 0.3)], pose)
    info = CameraInfo(
        header=Header(stamp=5, frame_id="camera"),
        width=depth.shape[1],
        height=depth.shape[0],
        K=K,
        pose=Pose(tuple(pose[:3, 3]), quaternion_from_matrix(pose[:3, :3])),  # type: ignore[arg-type]
    )
    return depth, info, np.array([box_pixels(0.52, 0.03, 0.08, pose)], np.float32)


def _feed_frame(harness, depth: np.ndarray, info: CameraInfo, box: np.ndarray, class_name: str) -> None:
    """The frame's depth, camera info and one detection of `class_name`, stamped as `info`."""
    harness.feed("/depth", Image(header=info.header, data=depth, encoding="32FC1"))
    harness.feed("/camera_info", info)
    harness.feed(
        "/detections",
        Detections(
            header=info.header, xyxy=box, scores=np.array([0.9]), class_ids=[0], class_names=[class_name]
        ),
    )


def test_a_camera_info_the_planner_refuses_is_a_reason_per_detection_not_a_dead_callback():
    """A K of another resolution than the depth's (the planner's GraspInputError): every detection of
    the frame is rejected with the planner's words, as for a frame without camera info."""
    from perception.nodes.grasp_planner import GraspPlannerNode
    from perception.runtime.harness import NodeHarness

    twice = np.diag([2.0, 2.0, 1.0]) @ K  # the colour stream's at twice the depth's resolution
    depth, info, box = _one_object_frame(twice)
    h, w = depth.shape
    pose = camera_looking_down()

    def planned() -> Grasps:
        """The grasps for the frame, its depth, camera info and one detection fed to a fresh node."""
        with NodeHarness(GraspPlannerNode, parameters={"tolerance_s": 0.01}) as harness:
            _feed_frame(harness, depth, info, box, "jenga")
            (grasps,) = harness.take("/grasps", Grasps)
        return grasps

    grasps = planned()
    assert len(grasps) == 0 and grasps.rejected_indices.tolist() == [0]
    assert grasps.rejected_reasons == [
        f"K: expected its principal point within the {w}x{h} depth image, found ({w}, {h}): intrinsics of "
        "another resolution? (scale fx, fy, cx, cy by the depth image's size over theirs)"
    ]
    # A pose whose quaternion has no length (a driver that fills none) is the frame's reason too
    info.K, info.pose = K, Pose(tuple(pose[:3, 3]), (0.0, 0.0, 0.0, 0.0))  # type: ignore[arg-type]
    grasps = planned()
    assert len(grasps) == 0 and grasps.rejected_reasons[0].startswith("camera info's pose: quaternion")


def test_the_planner_says_once_when_its_classes_name_what_no_detection_carries(caplog):
    """classes: [cup] behind a model that says 'mug' planned for nothing, without a word (the tracker's
    filter, shared); a live change that is no list of names is refused."""
    import logging

    from perception.nodes._class_filter import MIN_FRAMES
    from perception.nodes.grasp_planner import GraspPlannerNode
    from perception.runtime.harness import NodeHarness

    depth, info, box = _one_object_frame()
    with (
        caplog.at_level(logging.WARNING),
        NodeHarness(GraspPlannerNode, parameters={"tolerance_s": 0.01, "classes": ["cup"]}) as harness,
    ):
        for stamp in range(5, 6 + MIN_FRAMES):
            info.header = Header(stamp=stamp, frame_id="camera")
            _feed_frame(harness, depth, info, box, "mug")
        assert {len(g) for g in harness.take("/grasps", Grasps)} == {0}
        refused = harness.call("~/set_parameters", SetParameters(values={"classes": [["mug"]]}))
        assert not refused.success and "parameter 'classes': expected class names" in refused.message
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"classes: cup named by no detection in {MIN_FRAMES} frames, while the filter left out mug ({MIN_FRAMES}): "
        "does the detector call it otherwise? classes takes the detector's own names (its model's names "
        "metadata, or its labels or class_map)"
    ]
