"""The grasp planner node (real processes, real sockets) and the pick-and-place graph in the simulator."""

from __future__ import annotations

import numpy as np
import pytest
from test_grasp_planner import K, box_pixels, camera_looking_down, render

from perception import Node
from perception.geometry import quaternion_from_matrix
from perception.msgs import CameraInfo, Detections, Grasps, Header, Image, Pose


def test_the_planner_node_pairs_depth_and_camera_info_with_detections_by_stamp(registry, context, spawn):
    from conftest import send_until, spin_until

    spawn("run", "perception.nodes.grasp_planner:GraspPlannerNode", "-p", "tolerance_s:=0.01")
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
    grasps: list[Grasps] = []
    with Node("camera", context=context) as node:
        node.create_subscription(Grasps, "/grasps", grasps.append)
        depth_pub = node.create_publisher(Image, "/depth")
        info_pub = node.create_publisher(CameraInfo, "/camera_info")
        detections_pub = node.create_publisher(Detections, "/detections")
        spin_until(
            node, lambda: detections_pub.subscriber_count and depth_pub.subscriber_count, what="the planner"
        )

        def frame(stamp: int, with_depth: bool = True, with_info: bool = True, depth=depth) -> None:
            header = Header(stamp=stamp, frame_id="camera")
            if with_depth:
                depth_pub.publish(Image(header=header, data=depth, encoding="32FC1"))
            if with_info:
                info.header = header
                info_pub.publish(info)
            node.spin_once(0.05)
            detections_pub.publish(
                Detections(
                    header=header, xyxy=box, scores=np.array([0.9]), class_ids=[0], class_names=["jenga"]
                )
            )

        def answer(stamp: int) -> Grasps:
            spin_until(node, lambda: any(g.header.stamp == stamp for g in grasps), what=f"grasps of {stamp}")
            return next(g for g in grasps if g.header.stamp == stamp)

        send_until(node, lambda: frame(1_000_000_000), lambda: grasps, what="grasps")
        first = answer(1_000_000_000)
        assert first.header.stamp == 1_000_000_000 and 1 <= len(first) <= 3  # best candidates first
        assert set(first.class_names) == {"jenga"} and set(first.detection_indices.tolist()) == {0}
        np.testing.assert_allclose(first.positions[0][:2], (0.52, 0.03), atol=0.005)
        assert list(first.qualities) == sorted(first.qualities, reverse=True) and first.planning_ms > 0
        # A frame whose depth never came: the detection is rejected with the reason, not dropped.
        frame(2_000_000_000, with_depth=False)
        second = answer(2_000_000_000)
        assert len(second) == 0 and second.rejected_indices.tolist() == [0]
        assert second.rejected_reasons[0].startswith(
            "no depth frame for this stamp (nearest is -1000 ms away"
        )
        # And one whose camera info never came.
        frame(3_000_000_000, with_info=False)
        third = answer(3_000_000_000)
        assert len(third) == 0 and third.rejected_reasons == [
            "no camera info for this stamp (nearest is -1000 ms away (tolerance 10 ms))"
        ]
        # And one whose depth image is not the colour camera's size (an unregistered RGB-D camera).
        frame(4_000_000_000, depth=np.ascontiguousarray(depth[::2, ::2]))
        fourth = answer(4_000_000_000)
        h, w = depth.shape
        assert len(fourth) == 0 and fourth.rejected_reasons == [
            f"depth {w // 2}x{h // 2} and camera info {w}x{h} differ; expected depth registered to the "
            "colour camera"
        ]


@pytest.mark.parametrize("clock", ["realtime", "fast"])
def test_the_tabletop_grasp_launch_picks_a_cube_end_to_end(registry, clock):
    """sim -> detector (the shipped model) -> planner -> pick loop, as separate processes; the launch
    ends when the pick loop does. With the fast clock the frames carry simulated time, which the pick
    loop must tell apart from frames taken before the arm moved just as well."""
    from conftest import percept

    result = percept(
        "launch",
        "launch/tabletop_grasp.yaml",
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
