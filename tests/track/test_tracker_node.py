"""The tracker node between real processes: ids persist across frames, ground distance from camera info;
and in process, detections that overtook their camera info."""

from __future__ import annotations

import logging

import numpy as np

from perception import Node
from perception.geometry import PIXEL_CENTRE, quaternion_from_matrix
from perception.installed import DEFAULT_MODEL, LAUNCH_DIR
from perception.msgs import CameraInfo, Detections, Header, Pose, TrackerStats, Tracks


def test_the_tracker_node_keeps_ids_and_reports_distance(registry, context, spawn):
    from conftest import spin_until

    spawn("run", "perception.nodes.tracker:TrackerNode")
    pose = np.eye(4)  # 1.5 m above the road, looking along world +x
    pose[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    pose[:3, 3] = (0, 0, 1.5)
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    tracks: list[Tracks] = []
    stats: list[TrackerStats] = []
    with Node("camera", context=context) as node:
        node.create_subscription(Tracks, "/tracks", tracks.append)
        node.create_subscription(TrackerStats, "/tracker/stats", stats.append)
        detections = node.create_publisher(Detections, "/detections")
        infos = node.create_publisher(CameraInfo, "/camera_info")
        spin_until(node, lambda: detections.subscriber_count and infos.subscriber_count, what="the tracker")
        # Until the tracker's /tracks has joined us (a PUB drops what it sends before a subscriber is
        # there): empty frames, stamped before the real ones, answered by empty Tracks.
        for warm_up in range(1, 400):
            detections.publish(
                Detections(header=Header(stamp=warm_up, frame_id="camera", seq=1000 + warm_up))
            )
            node.spin_once(0.05)
            if tracks:
                break
        for i in range(6):
            header = Header(stamp=(1 + i) * 100_000_000, frame_id="camera", seq=i)
            infos.publish(
                CameraInfo(
                    header=header,
                    width=640,
                    height=480,
                    K=K,
                    pose=Pose((0, 0, 1.5), quaternion_from_matrix(pose[:3, :3])),
                )
            )
            node.spin_once(0.02)
            distance = 20.0 - 0.5 * i  # a car coming at 5 m/s
            bottom = 240 + 500 * 1.5 / distance + PIXEL_CENTRE  # in the boxes' pixel edges
            detections.publish(
                Detections(
                    header=header,
                    xyxy=np.array([[300, bottom - 40, 340, bottom]], np.float32),
                    scores=np.array([0.9]),
                    class_ids=[8],
                    class_names=["car"],
                )
            )
        spin_until(node, lambda: any(t.header.seq == 5 for t in tracks), what="tracks for six frames")
        confirmed = [t for t in tracks if len(t) and t.header.seq < 1000]
        assert {int(t.ids[0]) for t in confirmed} == {1} and confirmed[-1].class_names == ["car"]
        assert confirmed[-1].header.seq == 5
        assert abs(confirmed[-1].distances[0] - 17.5) < 0.175  # 1%: the filtered box lags a little
        assert (
            abs(confirmed[-1].speeds[0] - 5.0) < 0.2 and abs(confirmed[-1].times_to_collision[0] - 3.5) < 0.2
        )
        spin_until(node, lambda: any(s.frames_per_s > 0 for s in stats), what="tracker stats")
        assert max(s.update_p50_ms for s in stats) > 0
        # Time goes back (a looped replay, a simulator reset): the tracker starts over, with new ids.
        for i in range(4):
            header = Header(stamp=(1 + i) * 100_000_000, frame_id="camera", seq=10 + i)
            box = np.array([[100, 300, 160, 340]], np.float32)
            detections.publish(
                Detections(
                    header=header, xyxy=box, scores=np.array([0.9]), class_ids=[8], class_names=["car"]
                )
            )
            node.spin_once(0.02)
        spin_until(node, lambda: any(t.header.seq == 13 for t in tracks), what="tracks after time went back")
        again = [t for t in tracks if len(t) and 10 <= t.header.seq <= 13]
        assert again and {int(t.ids[0]) for t in again} == {2}
        spin_until(node, lambda: stats[-1].resets == 1, what="the reset in the stats")


def _road_camera_info(stamp: int) -> CameraInfo:
    """A camera 1.5 m above the road, looking along world +x."""
    pose = np.eye(4)
    pose[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    orientation = quaternion_from_matrix(pose[:3, :3])
    return CameraInfo(
        header=Header(stamp=stamp), width=640, height=480, K=K, pose=Pose((0, 0, 1.5), orientation)
    )


def _car_coming(i: int) -> Detections:
    """Frame i (stamped (1 + i) x 0.1 s) of a car coming at 5 m/s from 20 m."""
    bottom = 240 + 500 * 1.5 / (20.0 - 0.5 * i) + PIXEL_CENTRE  # in the boxes' pixel edges
    return Detections(
        header=Header(stamp=(1 + i) * 100_000_000, seq=i),
        xyxy=np.array([[300, bottom - 40, 340, bottom]], np.float32),
        scores=np.array([0.9]),
        class_ids=[8],
        class_names=["car"],
    )


def test_detections_that_overtook_their_camera_info_wait_for_it(caplog):
    """Camera info and detections come on sockets of their own, so a loaded tracker can read a frame's
    detections first: they wait for its camera info, and a frame whose info never comes is told of."""
    from perception.nodes.tracker import TrackerNode
    from perception.runtime.harness import NodeHarness

    info, car = _road_camera_info, _car_coming
    wait_s = 0.05
    with NodeHarness(TrackerNode, parameters={"pair_wait_s": wait_s}) as harness:
        now = [0.0]  # the pairing's clock, moved by hand: a stalled test process cannot run a wait out
        harness.node.sync.clock = lambda: now[0]
        harness.feed("/camera_info", info(1))  # an earlier frame's: camera info is being published
        for i in range(6):
            harness.feed("/detections", car(i))
            assert harness.take("/tracks") == []  # held for its camera info
            harness.feed("/camera_info", info(car(i).header.stamp))
            (tracks,) = harness.take("/tracks", Tracks)
            assert tracks.header.seq == i
        assert len(tracks) == 1 and abs(tracks.distances[0] - 17.5) < 0.175
        # A frame whose camera info never comes goes on after the wait, without a distance, and is told.
        harness.feed("/detections", car(6))
        now[0] += wait_s
        with caplog.at_level(logging.WARNING):
            harness.run_timers()  # finds it overdue: one more turn, for a camera info read after timers
            harness.run_timers()
        (tracks,) = harness.take("/tracks", Tracks)
        assert tracks.header.seq == 6 and np.isnan(tracks.distances[0])
        assert "left out 1 frames' distances: no camera info within tolerance_s of their stamp" in caplog.text


def test_a_camera_with_no_pose_gets_no_distances_and_the_tracker_says_why(caplog):
    """The camera node given no position and orientation (camera_detect's defaults) stands at the
    world's origin with its optical axis along world z: on the road, looking up. No box meets the road
    from there; the distances are NaN, and the log says so with the pose, where it had said nothing."""
    from perception.nodes.tracker import TrackerNode
    from perception.runtime.harness import NodeHarness

    with (
        caplog.at_level(logging.WARNING),
        NodeHarness(TrackerNode, parameters={"pair_wait_s": 0.0}) as harness,
    ):
        for i in range(3):
            info = _road_camera_info(_car_coming(i).header.stamp)
            info.pose = Pose()  # what a camera node publishes without position:= and orientation:=
            harness.feed("/camera_info", info)
            harness.feed("/detections", _car_coming(i))
        published = harness.take("/tracks", Tracks)
        assert len(published[-1]) == 1 and all(np.isnan(t.distances).all() for t in published)
        said = [r.getMessage() for r in caplog.records if "tracks get no distance" in r.getMessage()]
        assert said == [  # once, however many frames
            "tracks get no distance where their boxes meet no road: in camera_info's pose, at (0.0, 0.0, 0.0), "
            "the camera is 0.00 m above "
            "the road, its optical axis 90° above the horizon (ground_z 0 m); place the camera with its node's "
            "position:= and orientation:= (its optical frame in the world, z up)"
        ]
        # Placed 1.5 m up looking ahead, as a road camera is: distances, and nothing more said.
        caplog.clear()
        harness.feed("/camera_info", _road_camera_info(_car_coming(3).header.stamp))
        harness.feed("/detections", _car_coming(3))
        (tracks,) = harness.take("/tracks", Tracks)
        assert abs(tracks.distances[0] - 18.5) < 0.5
        assert "tracks get no distance" not in caplog.text


def test_tracker_classes_the_detections_never_name_are_said_once(caplog):
    """`classes: [car, pedestrian]` (our model's names) behind a COCO model, which says `person`: the
    people were filtered out without a word. Now the log names the class and the names that do come."""
    from perception.nodes._class_filter import MIN_FRAMES
    from perception.nodes.tracker import TrackerNode
    from perception.runtime.harness import NodeHarness

    def frame(i: int) -> Detections:
        return Detections(
            header=Header(stamp=(1 + i) * 100_000_000, seq=i),
            xyxy=np.array([[300, 260, 340, 300], [100, 200, 120, 260]], np.float32),
            scores=np.array([0.9, 0.8]),
            class_ids=[2, 0],
            class_names=["car", "person"],
        )

    parameters = {"pair_wait_s": 0.0, "classes": ["car", "pedestrian"]}
    with NodeHarness(TrackerNode, parameters=parameters) as harness:
        for i in range(3):
            harness.feed("/detections", frame(i))
        *_, tracks = harness.take("/tracks", Tracks)
        assert tracks.class_names == ["car"]  # person is left out, as asked
        with caplog.at_level(logging.WARNING):
            harness.run_timers()
            for i in range(3, MIN_FRAMES):
                harness.feed("/detections", frame(i))
            harness.run_timers()
            harness.run_timers()  # said once
        said = [r.getMessage() for r in caplog.records if "named by no detection" in r.getMessage()]
        assert said == [
            f"classes: pedestrian named by no detection in {MIN_FRAMES} frames, while the filter left out "
            f"person ({MIN_FRAMES}) and kept car: does the detector call it otherwise? classes takes the "
            "detector's own names (its model's names metadata, or its labels or class_map)"
        ]
    with NodeHarness(TrackerNode, parameters={"classes": ["car", "person"]}) as harness:
        harness.feed("/detections", frame(0))
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            harness.run_timers()
        assert "named by no detection" not in caplog.text


def test_with_no_pair_wait_detections_go_on_at_once():
    from perception.nodes.tracker import TrackerNode
    from perception.runtime.harness import NodeHarness

    with NodeHarness(TrackerNode) as waiting:
        timers = len(waiting.node._timers)
    with NodeHarness(TrackerNode, parameters={"pair_wait_s": 0.0}) as harness:
        assert len(harness.node._timers) == timers - 1  # nothing is held, so no timer runs a wait out
        harness.feed("/camera_info", _road_camera_info(1))
        harness.feed("/detections", _car_coming(0))  # its camera info has not come: not waited for
        (tracks,) = harness.take("/tracks", Tracks)
        assert tracks.header.seq == 0 and harness.node.sync.waited_out == 1


def test_detections_still_waiting_when_the_tracker_stops_are_tracked():
    from perception.nodes.tracker import TrackerNode
    from perception.runtime.harness import NodeHarness

    with NodeHarness(TrackerNode) as harness:
        harness.node.sync.clock = lambda: 0.0  # the wait never runs out
        harness.feed("/camera_info", _road_camera_info(1))
        harness.feed("/detections", _car_coming(0))
        assert harness.take("/tracks") == []
        harness.node.destroy()
        (tracks,) = harness.take("/tracks", Tracks)
        assert tracks.header.seq == 0


def test_an_error_handing_on_held_detections_at_shutdown_is_logged_not_raised(caplog):
    from perception.nodes.tracker import TrackerNode
    from perception.runtime.harness import NodeHarness

    with NodeHarness(TrackerNode) as harness:
        harness.node.sync.clock = lambda: 0.0
        harness.feed("/camera_info", _road_camera_info(1))
        harness.feed("/detections", _car_coming(0))

        def broken(msg: Detections) -> None:
            raise RuntimeError("a broken handler")

        harness.node.sync.handle = broken
        with caplog.at_level(logging.ERROR):
            harness.node.destroy()
        assert (
            "handing on the 1 detections held at shutdown" in caplog.text
            and "a broken handler" in caplog.text
        )


def test_the_tracker_benchmark_runs_the_detector_as_the_driving_graph_does():
    import yaml

    from perception.bench.track import SMALL_OBJECT_ROWS, SMALL_OBJECT_ZOOM
    from perception.detector import Detector

    launch = yaml.safe_load((LAUNCH_DIR / "driving_tracking.yaml").read_text())
    detector = next(n for n in launch["nodes"] if n["name"] == "detector")["parameters"]
    assert detector["small_object_zoom"] == SMALL_OBJECT_ZOOM
    assert detector["small_object_rows"] == list(SMALL_OBJECT_ROWS)
    shipped = Detector(DEFAULT_MODEL, small_object_zoom=SMALL_OBJECT_ZOOM)
    assert shipped.dynamic_size and shipped.input_hw == (480, 640)
    assert detector["small_object_side"] == shipped.small_object_side
