"""The tracker core on hand-made sequences: identities through crossings and occlusion, life cycle."""

from __future__ import annotations

import numpy as np
import pytest

from perception.msgs import Header
from perception.track import ByteTracker, TrackerParams, TrackState
from perception.track.mot import track_file
from perception.track.tracker import assign, iou_matrix, side_by_side, widen_occluded

CAR, PEDESTRIAN = 8, 9


def box(cx: float, cy: float, w: float = 40, h: float = 30) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def run(tracker: ByteTracker, frames: list[list[tuple[list[float], float, int]]], dt: float = 0.1):
    """Feed frames of (box, score, class) and return, per frame, {track id: box centre x}."""
    out = []
    for i, dets in enumerate(frames):
        boxes = np.array([d[0] for d in dets]).reshape(-1, 4)
        tracks = tracker.update(boxes, np.array([d[1] for d in dets]), np.array([d[2] for d in dets]), i * dt)
        out.append({t.id: (t.xyxy[0] + t.xyxy[2]) / 2 for t in tracks})
    return out


def test_two_objects_crossing_keep_their_identities():
    # Two cars of the same class drive towards each other along the same row and cross at frame 10.
    frames = [[(box(100 + 10 * i, 200), 0.9, CAR), (box(300 - 10 * i, 205), 0.9, CAR)] for i in range(21)]
    seen = run(ByteTracker(), frames)
    assert set(seen[0]) == {1, 2}
    left_mover = next(i for i, x in seen[0].items() if x < 200)
    assert seen[-1][left_mover] == pytest.approx(300, abs=3)  # the one that started left ended right
    assert all(set(frame) == {1, 2} for frame in seen)


def test_more_velocity_noise_keeps_objects_passing_one_behind_the_other_apart():
    # Road users passing the ego vehicle: in the image they speed up (here 20% a frame) and grow, the
    # second where the first was a frame before. With ByteTrack's velocity noise (the default) the
    # filter follows the speed-up too slowly and the first one's track lands on the second; twice that
    # keeps both identities.
    frames, x, speed, size = [], 500.0, 2.0, 14.0
    for _ in range(22):
        frames.append([(box(x, 250, size, size), 0.9, CAR), (box(x + speed, 250, size, size), 0.9, CAR)])
        x, speed, size = x - speed, speed * 1.2, size * 1.1
    seen = run(ByteTracker(TrackerParams(velocity_noise=1 / 80)), frames)
    leader = min(seen[1], key=seen[1].get)
    assert all(set(frame) == {1, 2} for frame in seen)
    assert all(min(frame, key=frame.get) == leader for frame in seen[1:])
    assert len(set().union(*run(ByteTracker(), frames))) > 2


def test_an_object_occluded_for_a_few_frames_comes_back_with_its_id():
    frames = [[(box(100 + 8 * i, 200), 0.9, CAR)] for i in range(20)]
    for i in range(8, 12):
        frames[i] = []  # hidden for 4 frames (0.4 s)
    seen = run(ByteTracker(), frames)
    assert seen[7] == {1: pytest.approx(156, abs=2)}
    assert all(frame == {} for frame in seen[8:12])
    assert list(seen[12]) == [1] and seen[12][1] == pytest.approx(196, abs=3)


def test_low_score_detections_extend_tracks_but_do_not_start_them():
    frames = [
        [(box(100 + 5 * i, 200), 0.9 if i < 5 else 0.35, CAR), (box(400, 300), 0.35, CAR)] for i in range(10)
    ]
    seen = run(ByteTracker(), frames)
    assert all(list(frame) == [1] for frame in seen)  # the weak, static detection never becomes a track


def test_a_new_object_gets_a_new_id_after_confirmation():
    frames = [[(box(100, 200), 0.9, CAR)] for _ in range(3)]
    frames += [[(box(100, 200), 0.9, CAR), (box(400, 250), 0.9, PEDESTRIAN)] for _ in range(3)]
    seen = run(ByteTracker(), frames)
    assert list(seen[3]) == [1]  # tentative on its first frame
    assert set(seen[4]) == {1, 2}


def test_classes_never_swap_identities():
    frames = [
        [(box(100, 200), 0.9, CAR)],
        [(box(101, 200), 0.9, PEDESTRIAN)],
        [(box(102, 200), 0.9, PEDESTRIAN)],
    ]
    tracker = ByteTracker()
    seen = run(tracker, frames)
    assert list(seen[0]) == [1] and list(seen[2]) == [2]
    assert (
        ByteTracker(TrackerParams(class_aware=False))
        .update(np.array([box(1, 1)]), np.array([0.9]), np.array([CAR]), 0.0)[0]
        .class_id
        == CAR
    )


def far_car_hidden_by_a_passing_one() -> list[list[tuple[list[float], float, int]]]:
    """A far car 16 x 14 px drifting left, covered from its left by a car passing in front (its right
    edge stays), hidden for half a second, then uncovered from the left: it comes back where its left
    edge was, while the narrowing visible part had looked like motion to the right."""
    frames = []
    for i in range(10):
        x = 345 - 0.5 * i
        frames.append([([x, 230, x + 16, 244], 0.8, CAR)])
    for k in range(1, 5):
        x = 345 - 0.5 * (9 + k)
        frames.append([([x + 3 * k, 230, x + 16, 244], 0.8, CAR)])
    frames += [[] for _ in range(5)]
    for k in range(1, 6):
        x = 345 - 0.5 * (18 + k)
        frames.append([([x, 230, x + 3 * k + 1, 244], 0.8, CAR)])
    return frames


@pytest.mark.parametrize(
    "remedies",
    [
        {},
        {"occluded_width_ratio": 0.0},  # re-entry beside the last box alone
        {"reentry_gap_heights": 0.0},  # widening the hidden object's box alone
    ],
)
def test_a_far_car_hidden_by_a_passing_one_keeps_its_id(remedies):
    seen = run(ByteTracker(TrackerParams(**remedies)), far_car_hidden_by_a_passing_one())
    assert [list(frame) for frame in seen[-4:]] == [[1]] * 4
    # Without either remedy the track drifts right while the car is hidden and a new id takes over.
    plain = TrackerParams(occluded_width_ratio=0.0, reentry_gap_heights=0.0)
    assert set(run(ByteTracker(plain), far_car_hidden_by_a_passing_one())[-1]) == {2}


def test_side_by_side_and_widening_on_hand_checked_boxes():
    a = np.array([[0, 0, 10, 10]])
    beside = np.array([[15, 0, 20, 10], [0, 6, 10, 16], [25, 0, 30, 10], [5, 0, 8, 10]])
    # level, 5 px apart with height 10: 1 - 5/10; overlapping by 4 of 16 rows: not level; 15 px apart:
    # beyond one height; overlapping, level: the vertical overlap itself.
    np.testing.assert_allclose(side_by_side(a, beside, 1.0), [[0.5, 0.0, 0.0, 1.0]])
    predicted = np.array([[353.0, 237, 16, 14]] * 3)  # xyxy 345, 230, 361, 244
    detected = np.array([[354.0, 230, 361, 244], [345, 230, 359, 244], [354, 235, 361, 240]])
    measured = widen_occluded(detected, predicted, 0.8)
    # Narrow and as tall, its right edge where the track's was: widened to 16 px from that edge.
    np.testing.assert_allclose(measured[0], [353, 237, 16, 14])
    # Wide enough, or not as tall (no side occlusion): measured as detected.
    np.testing.assert_allclose(measured[1:], [[352, 237, 14, 14], [357.5, 237.5, 7, 5]])


def test_empty_frames_detection_order_and_a_gap_in_stamps():
    tracker = ByteTracker()
    assert tracker.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.0) == []
    a, b = box(100, 100), box(300, 100)
    tracker.update(np.array([a, b]), np.array([0.9, 0.8]), np.array([CAR, CAR]), 0.1)
    first = {
        t.id: t.xyxy[0]
        for t in tracker.update(np.array([b, a]), np.array([0.8, 0.9]), np.array([CAR, CAR]), 0.2)
    }
    # Half a second without frames, then the same boxes: one longer prediction, same ids.
    after_gap = {
        t.id: t.xyxy[0]
        for t in tracker.update(np.array([a, b]), np.array([0.9, 0.8]), np.array([CAR, CAR]), 0.7)
    }
    assert first == pytest.approx(after_gap, abs=1.0) and set(first) == {1, 2}


def test_velocity_is_in_pixels_per_second_and_lost_tracks_expire():
    tracker = ByteTracker(TrackerParams(max_lost_s=0.5))
    for i in range(15):
        tracks = tracker.update(np.array([box(100 + 5 * i, 200)]), np.array([0.9]), np.array([CAR]), i * 0.1)
    assert tracks[0].velocity[0] == pytest.approx(50, rel=0.1) and abs(tracks[0].velocity[1]) < 2
    expiring = tracks[0]
    for i in range(15, 22):
        tracker.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0), i * 0.1)
    assert tracker.tracks == []
    # A removed track still reads its own last state, not the row of whatever track follows it.
    other = tracker.update(np.array([box(500, 300)]), np.array([0.9]), np.array([PEDESTRIAN]), 2.2)
    assert other == [] and len(tracker.tracks) == 1
    assert expiring.state is TrackState.REMOVED and expiring.class_id == CAR and expiring.hits == 15
    np.testing.assert_allclose(expiring.box, box(170, 200))


def test_a_track_lost_longer_than_max_lost_s_cannot_match_after_a_gap_in_stamps():
    tracker = ByteTracker(TrackerParams(max_lost_s=2.0))
    for i in range(20):
        tracker.update(np.array([box(100 + 5 * i, 200)]), np.array([0.9]), np.array([CAR]), i * 0.1)
    # 10 s later (a dropped stream), a car far away: the old track's gate has grown over the whole
    # image, but the track is older than max_lost_s and must not take it.
    later = tracker.update(np.array([box(900, 250)]), np.array([0.9]), np.array([CAR]), 11.9)
    assert [t.id for t in tracker.tracks] == [2] and later == []


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"tracker parameter velocity_noise: expected > 0, found 0"):
        TrackerParams(velocity_noise=0)
    with pytest.raises(ValueError, match=r"occluded_width_ratio: expected in \[0, 1\], found 1.5"):
        TrackerParams(occluded_width_ratio=1.5)
    tracker = ByteTracker()
    with pytest.raises(ValueError, match=r"as many scores and class ids as boxes \(2\), found 1 and 2"):
        tracker.update(np.array([box(1, 1), box(5, 5)]), np.array([0.9]), np.array([1, 2]), 0.0)
    tracker.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 1.0)
    with pytest.raises(ValueError, match="back in time"):
        tracker.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5)


def test_a_library_users_slips_are_named_not_tracked_wrongly():
    """What a user feeding the core by hand gets wrong: a message's nanosecond stamp (every frame then
    looked years apart and no track lived past the first), ByteTrack's N x 5 rows, class names for ids,
    low above high score; None for class ids is one class."""
    with pytest.raises(ValueError, match=r"low_score: expected at most high_score \(0.4\), found 0.9"):
        TrackerParams(low_score=0.9, high_score=0.4)
    tracker = ByteTracker()
    one = np.array([box(10, 10)])
    with pytest.raises(ValueError, match=r"stamp_s: expected seconds, found 1.7e\+18.*pass its stamp_s"):
        tracker.update(one, [0.9], [0], 1_700_000_000_000_000_000)
    with pytest.raises(ValueError, match=r"stamp_s: expected seconds, found 1.7e\+12"):  # milliseconds
        tracker.update(one, [0.9], [0], 1_700_000_000_000)
    with pytest.raises(TypeError, match="stamp_s: expected a stamp in seconds, found NoneType"):
        tracker.update(one, [0.9], [0], None)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"expected N x 4 boxes \(x1 y1 x2 y2\), found shape \(1, 5\) \(scores"
    ):
        tracker.update(np.c_[one, [0.9]], [0.9], [0], 0.0)
    with pytest.raises(ValueError, match=r"expected integer class ids .*found 'car'"):
        tracker.update(one, [0.9], ["car"], 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"expected integer class ids .*found 1\.5"):
        tracker.update(one, [0.9], [1.5], 0.0)
    with pytest.raises(ValueError, match=r"expected integer class ids .*found nan"):  # the bad one named
        tracker.update(np.array([box(10, 10), box(90, 10)]), [0.9, 0.9], [0.0, np.nan], 0.0)
    with pytest.raises(ValueError, match="track_file: expected a frame rate above 0, found 0"):
        list(track_file({1: np.array([[*box(10, 10), 0.9, 0]])}, ByteTracker(), 0))
    header = Header(stamp=1_700_000_000_000_000_000)
    for i in range(3):  # epoch seconds from a header (a 0-d array too), one class, one box given flat
        tracks = tracker.update(box(10 + i, 10), [0.9], None, np.array(header.stamp_s + 0.1 * i))
    assert [(t.id, t.class_id, t.hits) for t in tracks] == [(1, 0, 3)]


def test_iou_and_assignment_on_hand_checked_boxes():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[5, 0, 15, 10], [100, 100, 110, 110]])
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0], [0, 0]])
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)
    rows, columns, free_rows, free_columns = assign(iou_matrix(a, b), 0.3)
    assert (rows.tolist(), columns.tolist(), free_rows.tolist(), free_columns.tolist()) == (
        [0],
        [0],
        [1],
        [1],
    )


def test_ground_points_distance_speed_and_time_to_collision():
    from perception.geometry import PIXEL_CENTRE
    from perception.track.ground import GroundHistory, ground_points

    # A camera 1.5 m above the road at the origin, looking along world +x (OpenCV axes: x right = -y
    # world, y down = -z world, z forward = +x world).
    pose = np.eye(4)
    pose[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    pose[:3, 3] = (0, 0, 1.5)
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    # An object on the road 20 m ahead, 2 m to the left: its bottom edge at v = 240 + 500 * 1.5 / 20 in
    # K's pixel centres, half a pixel more in the boxes' pixel edges.
    u = 320 + 500 * 2 / 20 + PIXEL_CENTRE
    v = 240 + 500 * 1.5 / 20 + PIXEL_CENTRE
    (point,) = ground_points(np.array([[u - 10, v - 30, u + 10, v]]), K, pose)
    np.testing.assert_allclose(point, [20, -2, 0], atol=1e-9)
    assert np.isnan(ground_points(np.array([[300, 100, 340, 200]]), K, pose)).all()  # above the horizon
    history = GroundHistory()
    for i in range(6):  # the object comes at 5 m/s
        motion = history.update(i * 0.1, np.array([20 - 0.5 * i, 0, 0]), np.zeros(3))
    assert motion.distance == pytest.approx(17.5) and motion.speed == pytest.approx(5.0)
    assert motion.time_to_collision == pytest.approx(3.5)
    receding = GroundHistory()
    for i in range(3):
        leaving = receding.update(i * 0.1, np.array([20 + i, 0, 0]), np.zeros(3))
    assert leaving.time_to_collision == float("inf")
    with pytest.raises(
        ValueError, match=r"GroundHistory.update: stamps must not go back in time \(0.2 -> 0.1\)"
    ):
        receding.update(0.1, np.array([20, 0, 0]), np.zeros(3))
    with pytest.raises(ValueError, match=r"GroundHistory\.update: stamp_s: expected seconds, found 1\.7e"):
        GroundHistory().update(1.7e18, np.array([20, 0, 0]), np.zeros(3))
    with pytest.raises(ValueError, match=r"ground_points: expected K of shape \(3, 3\), found \(9,\)"):
        ground_points(np.array([[u - 10, v - 30, u + 10, v]]), K.ravel(), pose)
    (as_lists,) = ground_points([[u - 10, v - 30, u + 10, v]], K.tolist(), pose.tolist())  # type: ignore[arg-type]
    np.testing.assert_allclose(as_lists, [20, -2, 0], atol=1e-9)


def test_a_camera_pose_that_sees_no_road_is_told_in_words():
    from perception.geometry import pose_matrix
    from perception.track.ground import road_unseen

    # The camera node's pose when given none: on the road (z 0), OpenCV's z (the optical axis) up.
    assert road_unseen(pose_matrix((0, 0, 0), (0, 0, 0, 1))) == (
        "the camera is 0.00 m above the road, its optical axis 90° above the horizon"
    )
    # A road camera 1.4 m up looking ahead, as the simulator's (optical x right, y down, z along world x):
    # it sees the road; a box meets none only when its bottom is above the horizon.
    ahead = pose_matrix((5.0, 1.0, 1.4), (-0.5, 0.5, -0.5, 0.5))
    assert road_unseen(ahead) == "" and road_unseen(ahead, ground_z=-0.6) == ""
    assert road_unseen(ahead, ground_z=1.4).startswith("the camera is 0.00 m above the road")
    assert road_unseen(pose_matrix((0, 0, 1.4), (0, 0, 0, 1))) == (  # given a height, not an orientation
        "the camera is 1.40 m above the road, its optical axis 90° above the horizon"
    )


def test_a_class_filter_says_when_a_class_it_keeps_is_named_by_no_detection():
    from perception.errors import ParameterError
    from perception.nodes._class_filter import MIN_FRAMES, ClassFilter

    coco = ClassFilter(["car", "pedestrian"])  # our model's names, on a COCO model's detections
    assert coco.keep(["car", "person", "car"]).tolist() == [True, False, True]
    assert coco.keep([]).tolist() == []
    assert coco.keep(["person", "fire hydrant"]).tolist() == [False, False]
    assert coco.never_named() == []  # three frames: the detector may just not have met one yet
    for _ in range(MIN_FRAMES - 3):
        coco.keep(["car", "person"])
    assert coco.never_named() == ["pedestrian"]
    message = (
        f"classes: pedestrian named by no detection in {MIN_FRAMES} frames, while the filter left out person "
        f"({MIN_FRAMES - 1}), fire hydrant (1) and kept car: does the detector call it otherwise? classes takes "
        "the detector's own names (its model's names metadata, or its labels or class_map)"
    )
    assert coco.describe() == message
    assert coco.news() == message and coco.news() == ""  # said once, again only if it changes
    fine = ClassFilter(["car", "person"])
    for _ in range(MIN_FRAMES):
        fine.keep(["car", "person", "fire hydrant"])
    assert fine.never_named() == [] and fine.describe() == "" and fine.news() == ""
    # Nothing left out: a class not seen may just not have come by.
    quiet = ClassFilter(["car", "pedestrian"])
    for _ in range(MIN_FRAMES):
        quiet.keep(["car"])
    assert quiet.never_named() == []
    assert ClassFilter([]).keep(["car", "person"]).tolist() == [True, True]  # empty: every class
    assert ClassFilter([0, 2]).keep(["0", "1", "2"]).tolist() == [True, False, True]  # a model without names
    with pytest.raises(ParameterError, match=r"^parameter 'classes': expected class names, found \['car'\]$"):
        ClassFilter([["car"]])  # type: ignore[list-item]


def test_motchallenge_files_round_trip_through_percept_track_run(tmp_path):
    from conftest import percept

    from perception.track.mot import read_detections

    rows = []
    for frame in range(1, 11):  # two people walking apart; frame 6 has no detections at all
        if frame != 6:
            rows.append(f"{frame},-1,{100 + 5 * frame},200,40,80,0.9,-1,-1,-1")
            rows.append(f"{frame},-1,{400 - 5 * frame},210,40,80,0.8,-1,-1,-1")
    det = tmp_path / "det.txt"
    det.write_text("\n".join(rows) + "\n")
    parsed = read_detections(det)
    assert sorted(parsed) == [1, 2, 3, 4, 5, 7, 8, 9, 10]
    np.testing.assert_allclose(parsed[1][0], [105, 200, 145, 280, 0.9, 0])
    out = tmp_path / "tracks.txt"
    result = percept("track", "run", "--det", str(det), "--out", str(out), "--fps", "10")
    assert result.returncode == 0, result.stderr
    assert (
        "tracked 9 frames at 10 frames/s (--fps): 18 detections (0 under --low-score 0.1, not used), "
        "18 track rows, 2 identities" in result.stdout
    )
    assert result.stderr == ""
    table = np.loadtxt(out, delimiter=",", ndmin=2)
    assert sorted(set(table[:, 1].astype(int))) == [1, 2] and 6 not in table[:, 0]
    first = table[table[:, 0] == 1]
    np.testing.assert_allclose(first[first[:, 1] == 1, 2:6], [[105, 200, 40, 80]], atol=0.01)
    bad = tmp_path / "bad.txt"
    bad.write_text("1,2,3\n")
    failed = percept("track", "run", "--det", str(bad), "--out", str(out))
    assert failed.returncode == 1 and "line 1: expected at least 7 columns" in failed.stderr
    good = "1,-1,10,20,30,40,0.9,-1,-1,-1\n"
    for row, message in (
        ("2,-1,10,20,nan,40,0.9,-1,-1,-1", "line 2: expected finite numbers, found 2,-1,10,20,nan,40,0.9"),
        ("2,-1,10,20,30,inf,0.9,-1,-1,-1", "line 2: expected finite numbers"),
        (
            "2,-1,10,20,-30,40,0.9,-1,-1,-1",
            "line 2: expected a box of positive width and height, found -30 x 40",
        ),
        ("2,-1,10,20,30,0,0.9,-1,-1,-1", "line 2: expected a box of positive width and height, found 30 x 0"),
        ("0,-1,10,20,30,40,0.9,-1,-1,-1", "line 2: expected a frame number of 1 or more, found 0"),
        ("2,-1,10,twenty,30,40,0.9", "line 2: expected numbers separated by commas, found '2,-1,10,twenty"),
        ("2,-1,10,,30,40,0.9", "line 2: expected numbers separated by commas, found '2,-1,10,,30"),
    ):
        bad.write_text(good + row + "\n")
        refused = percept("track", "run", "--det", str(bad), "--out", str(out))
        assert refused.returncode == 1, refused.stdout
        assert refused.stderr.count("\n") == 1, refused.stderr  # one line
        assert refused.stderr.startswith(f"percept: error: detections {bad}, {message}"), refused.stderr
    # As editors and other tools save them: a byte-order mark, CRLF, spaces after commas, tabs or
    # spaces alone (py-motmetrics reads those too): the same detections.
    for variant in (
        "\ufeff" + det.read_text(),
        det.read_text().replace("\n", "\r\n"),
        det.read_text().replace(",", ", "),
        det.read_text().replace(",", "\t"),
        det.read_text().replace(",", " "),
    ):
        bad.write_text(variant, encoding="utf-8")
        again = read_detections(bad)
        assert sorted(again) == sorted(parsed), variant[:40]
        assert all(np.array_equal(again[frame], parsed[frame]) for frame in parsed), variant[:40]
    unwritable = percept("track", "run", "--det", str(det), "--out", str(tmp_path / "no" / "such" / "t.txt"))
    assert unwritable.returncode == 1 and unwritable.stderr.count("\n") == 1
    assert (
        "--out " in unwritable.stderr and "cannot write it (No such file or directory)" in unwritable.stderr
    )
    for option, value, message in (
        ("--fps", "0", "--fps: expected a frame rate above 0, found 0.0"),
        ("--low-score", "2", "tracker parameter low_score: expected in [0, 1], found 2.0"),
    ):
        refused = percept("track", "run", "--det", str(det), "--out", str(out), option, value)
        assert refused.returncode == 1 and message in refused.stderr
    # In a MOTChallenge folder the frame rate comes from its seqinfo.ini unless --fps is given.
    (tmp_path / "seq" / "det").mkdir(parents=True)
    (tmp_path / "seq" / "det" / "det.txt").write_text(det.read_text())
    (tmp_path / "seq" / "seqinfo.ini").write_text("[Sequence]\nname=seq\nframeRate=14\nseqLength=10\n")
    from_folder = percept("track", "run", "--det", str(tmp_path / "seq/det/det.txt"), "--out", str(out))
    assert from_folder.returncode == 0, from_folder.stderr
    assert f"at 14 frames/s ({(tmp_path / 'seq' / 'seqinfo.ini').resolve()})" in from_folder.stdout
    alone = percept("track", "run", "--det", str(det), "--out", str(out))
    assert "at 30 frames/s (the default)" in alone.stdout
    # Classifier margins (DPM's public detections) are tracked, and the user is told the thresholds
    # are read on their scale; what falls under --low-score is counted.
    margins = tmp_path / "dpm.txt"
    margins.write_text(det.read_text().replace(",0.9,", ",2.3,").replace(",0.8,", ",-0.4,"))
    dpm = percept("track", "run", "--det", str(margins), "--out", str(out))
    assert dpm.returncode == 0, dpm.stderr
    assert dpm.stderr == (
        f"percept: warning: detections {margins}: scores run from -0.4 to 2.3, not 0 to 1: the thresholds "
        "(--high-score 0.6, --new-track-score 0.7, --low-score 0.1, each 0 to 1) apply to these numbers as they "
        "are: rescale the scores to 0-1 to place them otherwise\n"
    )
    assert "18 detections (9 under --low-score 0.1, not used), 9 track rows, 1 identities" in dpm.stdout


def test_mot_metrics_agree_with_a_hand_checked_sequence():
    """Two objects over 4 frames. The tracker swaps ids on object B at frame 3 and misses A at frame 4:
    GT detections 8, matches 7, misses 1, false positives 0, one id switch:
    MOTA = 1 - (1 + 0 + 1) / 8 = 0.75. IDF1: the best id mapping is A->1 (3 frames) and B->2 or B->3
    (2 frames each): IDTP 5, IDFN 8 - 5 = 3, IDFP 7 - 5 = 2 -> 2*5 / (2*5 + 3 + 2) = 0.667."""
    from perception.track.evaluate import mot_metrics

    a, b = [0, 0, 10, 10], [50, 50, 60, 60]
    frames = [
        (np.array([1, 2]), np.array([a, b]), np.array([1, 2]), np.array([a, b])),
        (np.array([1, 2]), np.array([a, b]), np.array([1, 2]), np.array([a, b])),
        (np.array([1, 2]), np.array([a, b]), np.array([1, 3]), np.array([a, b])),
        (np.array([1, 2]), np.array([a, b]), np.array([3]), np.array([b])),
    ]
    scores = mot_metrics(frames)
    assert scores["mota"] == pytest.approx(0.75)
    assert scores["id_switches"] == 1 and scores["misses"] == 1 and scores["false_positives"] == 0
    assert scores["idf1"] == pytest.approx(2 * 5 / (2 * 5 + 3 + 2))
    assert scores["recall"] == pytest.approx(7 / 8) and scores["precision"] == pytest.approx(1.0)
    assert 0 < scores["hota"] < 1


def test_a_track_on_an_ignore_region_is_neither_a_false_positive_nor_takes_a_real_match():
    from perception.track.evaluate import without_ignored

    real, dont_care, beside = [0, 0, 10, 10], [40, 40, 44, 48], [1, 0, 11, 10]
    # Track 7 sits on the real object, track 8 on the don't-care one, track 9 nowhere near either.
    frame = (
        np.array([1]),
        np.array([real]),
        np.array([7, 8, 9]),
        np.array([real, dont_care, [90, 90, 99, 99]]),
    )
    gt_ids, _, track_ids, _ = without_ignored(frame, np.array([dont_care]))
    assert gt_ids.tolist() == [1] and track_ids.tolist() == [7, 9]
    # A track that overlaps both goes to the real object, so it is kept.
    _, _, kept, _ = without_ignored(
        (np.array([1]), np.array([real]), np.array([5]), np.array([beside])), [real]
    )
    assert kept.tolist() == [5]


def test_kitti_leaves_out_small_tracks_that_match_nothing_but_keeps_small_ones_that_match():
    from perception.track.evaluate import without_ignored

    tall, small_real = [0, 0, 20, 40], [50, 50, 60, 60]
    # Track 1 on the tall object; 2 on a small, scored object; 3 small and on nothing; 4 tall, on nothing.
    frame = (
        np.array([1, 2]),
        np.array([tall, small_real]),
        np.array([1, 2, 3, 4]),
        np.array([tall, small_real, [100, 100, 110, 110], [200, 0, 230, 40]]),
    )
    _, _, kept, _ = without_ignored(frame, np.zeros((0, 4)), min_height=25)
    assert kept.tolist() == [1, 2, 4]
    assert without_ignored(frame, np.zeros((0, 4)))[2].tolist() == [1, 2, 3, 4]  # without min_height


def write_mot_sequence(folder, frames: int = 20) -> None:
    """Two objects moving right; a static don't-care object (flag 0) that the detector also finds."""
    (folder / "det").mkdir(parents=True)
    (folder / "gt").mkdir()
    det, gt = [], []
    for f in range(1, frames + 1):
        for object_id, (x, y) in ((1, (10 + 3 * f, 50)), (2, (200 - 2 * f, 120))):
            det.append(f"{f},-1,{x},{y},40,80,0.9,0,-1,-1")
            gt.append(f"{f},{object_id},{x},{y},40,80,1,1,1.0")
        det.append(f"{f},-1,400,300,6,10,0.8,0,-1,-1")
        gt.append(f"{f},3,400,300,6,10,0,1,0.2")
    (folder / "det/det.txt").write_text("\n".join(det) + "\n")
    (folder / "gt/gt.txt").write_text("\n".join(gt) + "\n")
    (folder / "seqinfo.ini").write_text(f"[Sequence]\nname=two\nframeRate=10\nseqLength={frames}\n")


def test_bench_mot_runs_ours_and_the_peers_on_the_same_motchallenge_files(tmp_path):
    import json

    from conftest import percept

    write_mot_sequence(tmp_path / "two")
    result = percept("bench", "mot", str(tmp_path / "two"), "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    rows = {r["tracker"]: r for r in report["results"]}
    assert set(rows) == {"ours", "sort", "bytetrack", "ocsort", "oracle"}
    for name, row in rows.items():
        # The don't-care object is tracked by all of them but costs nothing; each tracker misses only
        # the frames before it confirms a track.
        assert row["false_positives"] == 0 and row["id_switches"] == 0, name
        assert row["mota"] == pytest.approx(1 - row["misses"] / 40), name
    # Ours reports tracks from the first frame on (as ByteTrack does then); SORT waits for 3 hits.
    assert {name: row["misses"] for name, row in rows.items()} == {
        "ours": 0,
        "sort": 4,
        "bytetrack": 2,
        "ocsort": 2,
        "oracle": 0,
    }
    # MOT17's reading: only pedestrians (class 1) count, distractors (class 8) are ignore regions.
    gt = (tmp_path / "two/gt/gt.txt").read_text().replace(",0,1,0.2", ",1,8,0.2")
    (tmp_path / "two/gt/gt.txt").write_text(gt)
    mot17 = percept(
        "bench", "mot", str(tmp_path / "two"), "--protocol", "mot17", "--trackers", "ours", "--json"
    )
    [row] = json.loads(mot17.stdout.strip().splitlines()[-1])["results"]
    assert (row["false_positives"], row["misses"], row["mota"]) == (0, 0, 1.0)
    missing = percept("bench", "mot", str(tmp_path / "none"))
    assert missing.returncode == 1 and "no det/det.txt" in missing.stderr


def test_mot17_reading_removes_the_boxes_trackeval_removes(tmp_path):
    """A static person (class 7, a distractor) beside a car (class 3, neither scored nor ignored), and
    a pedestrian marked 0: TrackEval matches tracker boxes against every ground-truth row and removes
    only those paired with a distractor. Scored through our reader, the same results give the same
    figures as TrackEval's own MOT17 reader."""
    import trackeval

    from perception.bench.mot import read_sequence
    from perception.track.evaluate import mot_metrics, without_ignored

    name = "MOT17-90-SIM"
    sequence = tmp_path / "gt" / name
    (sequence / "gt").mkdir(parents=True)
    (sequence / "det").mkdir()
    (sequence / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nframeRate=30\nseqLength=3\n")
    ground_truth = [  # frame, id, left, top, width, height, flag, class, visibility
        (1, 1, 10, 10, 50, 100, 1, 1, 1.0),
        (1, 2, 200, 10, 50, 100, 1, 7, 1.0),
        (1, 3, 210, 10, 50, 100, 1, 3, 1.0),
        (1, 4, 400, 10, 50, 100, 0, 1, 1.0),
        (2, 1, 12, 10, 50, 100, 1, 1, 1.0),
        (2, 2, 200, 10, 50, 100, 1, 7, 1.0),
        (2, 3, 210, 10, 50, 100, 1, 3, 1.0),
        (3, 1, 14, 10, 50, 100, 1, 1, 1.0),
    ]
    (sequence / "gt/gt.txt").write_text("".join(",".join(map(str, r)) + "\n" for r in ground_truth))
    (sequence / "det/det.txt").write_text("1,-1,10,10,50,100,0.9\n")
    results = [  # frame, id, left, top, width, height: on the pedestrian, the car, the flag-0 one, the static one
        (1, 1, 10, 10, 50, 100),
        (1, 2, 212, 10, 50, 100),
        (1, 3, 400, 10, 50, 100),
        (1, 5, 204, 10, 50, 100),
        (2, 1, 12, 10, 50, 100),
        (2, 2, 208, 10, 50, 100),  # nearer the car than the static person: a false positive
        (3, 1, 14, 10, 50, 100),
    ]
    tracker_folder = tmp_path / "trackers" / "ours" / "data"
    tracker_folder.mkdir(parents=True)
    (tracker_folder / f"{name}.txt").write_text(
        "".join(",".join(map(str, r)) + ",1,-1,-1,-1\n" for r in results)
    )
    (tmp_path / "seqmap.txt").write_text(f"name\n{name}\n")

    quiet = {"PRINT_CONFIG": False}
    evaluator = trackeval.Evaluator(
        {**trackeval.Evaluator.get_default_eval_config(), **quiet, "PRINT_RESULTS": False}
        | {"TIME_PROGRESS": False, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False}
    )
    dataset = trackeval.datasets.MotChallenge2DBox(
        {**trackeval.datasets.MotChallenge2DBox.get_default_dataset_config(), **quiet}
        | {"GT_FOLDER": str(tmp_path / "gt"), "TRACKERS_FOLDER": str(tmp_path / "trackers")}
        | {"SEQMAP_FILE": str(tmp_path / "seqmap.txt"), "SKIP_SPLIT_FOL": True, "TRACKERS_TO_EVAL": ["ours"]}
    )
    scores, _ = evaluator.evaluate([dataset], [trackeval.metrics.CLEAR(quiet)])
    clear = scores["MotChallenge2DBox"]["ours"][name]["pedestrian"]["CLEAR"]

    truth = read_sequence(sequence, "mot17").truth
    table = np.array(results, float)
    frames = []
    for frame in (1, 2, 3):
        rows = table[table[:, 0] == frame]
        boxes = np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]]
        scored = (truth[frame].ids, truth[frame].boxes, rows[:, 1].astype(int), boxes)
        frames.append(without_ignored(scored, truth[frame].ignored, unscored_xyxy=truth[frame].unscored))
    ours = mot_metrics(frames)
    assert (clear["CLR_FP"], clear["CLR_FN"], clear["IDSW"]) == (
        3,
        0,
        0,
    )  # the car's, twice; the flag-0 one's
    assert (ours["false_positives"], ours["misses"], ours["id_switches"]) == (3, 0, 0)
    assert ours["mota"] == pytest.approx(clear["MOTA"])


def test_bench_mot_oracle_scores_what_the_trusted_detections_allow(tmp_path):
    import json

    from conftest import percept

    write_mot_sequence(tmp_path / "two")
    lines = (tmp_path / "two/det/det.txt").read_text().splitlines()
    # Object 2 detected at 0.3 (under the 0.4 ours trusts) in frame 1, and 30 px off in frame 2.
    lines[1] = lines[1].replace(",0.9,", ",0.3,")
    lines[4] = lines[4].replace(",196,120,", ",226,120,")
    (tmp_path / "two/det/det.txt").write_text("\n".join(lines) + "\n")
    result = percept("bench", "mot", str(tmp_path / "two"), "--trackers", "oracle", "--json")
    [row] = json.loads(result.stdout.strip().splitlines()[-1])["results"]
    # Two misses (the untrusted and the misplaced one), one false positive (the misplaced box), no
    # identity ever lost: 1 - 3/40.
    assert (row["misses"], row["false_positives"], row["id_switches"]) == (2, 1, 0)
    assert row["mota"] == pytest.approx(1 - 3 / 40)
    unknown = percept("bench", "mot", str(tmp_path / "two"), "--trackers", "ours,magic")
    assert (
        unknown.returncode == 1 and "expected some of ours, sort, bytetrack, ocsort, oracle" in unknown.stderr
    )


def test_bench_track_json_contract(tmp_path):
    import json

    from conftest import percept

    result = percept(
        "bench",
        "track",
        "--truth",
        "--sequences",
        "1",
        "--rate",
        "5",  # the default 10 frames/s doubles the frames of the 10 s sequence
        "--write-mot",
        str(tmp_path),
        "--json",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["benchmark"] == "track" and report["sequences"] == 1 and report["frames"] == 50
    for key in ("mota", "idf1", "hota", "precision", "recall"):
        assert -1.0 <= report[key] <= 1.0, key
    assert report["id_switches"] >= 0 and 0 < report["update_p50_ms"] <= report["update_p95_ms"]
    low, high = report["update_p50_ms_50_objects_rounds"]
    assert 0 < low <= report["update_p50_ms_50_objects"] <= high and "MOTA" in result.stdout
    assert report["kitti_mota"] >= report["mota"] - 0.05  # fewer, larger objects to score
    sequence = tmp_path / "sim-driving-1000-00"
    gt = np.loadtxt(sequence / "gt/gt.txt", delimiter=",", ndmin=2)
    assert set(gt[:, 0].astype(int)) <= set(range(1, 51)) and set(gt[:, 6]) <= {0, 1}
    assert (sequence / "det/det.txt").stat().st_size > 0 and "frameRate=5" in (
        sequence / "seqinfo.ini"
    ).read_text()


def test_ground_distance_matches_the_simulators_truth_within_a_pixel():
    """Flat-road distances from the boxes' bottom edges, against where the rendered depth puts the pixel
    of the object's lowest row nearest the box's middle (where it meets the road), for the driving
    scene's objects that stand on the road (pedestrians and cones; its cars hover 5 cm above it, see
    sim.driving.ROAD_SURFACE_Z), on both renderers: within what one pixel of the bottom edge moves the
    distance there (0.65 px at worst, measured; 3.5% at 20 m), with no bias (medians of -0.10 and
    +0.17 px; half a pixel more before). The boxes' pixel edges were read as K's pixel centres, half a
    pixel off, which EGL's principal point, wrong by as much, had hidden."""
    from perception.detector.vocabulary import SHIPPED_CLASSES
    from perception.geometry import back_project
    from perception.track.ground import ground_points
    from sim.camera import CameraSpec
    from sim.dataset import rendered_frames
    from sim.driving import ROAD_SURFACE_Z

    for renderer in ("tiny", "egl"):
        in_pixels = []
        for _, frame in rendered_frames(
            "driving", 77, list(range(0, 200, 5)), CameraSpec(width=640, height=480), renderer=renderer
        ):
            camera = frame.pose[:3, 3]
            for i, body in enumerate(frame.bodies):
                standing = SHIPPED_CLASSES[frame.class_ids[i]] in ("pedestrian", "cone")
                if not standing or frame.visible_fraction[i] < 0.9:
                    continue  # partly hidden: its box's bottom edge may be another object's
                (point,) = ground_points(frame.xyxy[i : i + 1], frame.K, frame.pose, ROAD_SURFACE_Z)
                v = int(frame.xyxy[i, 3]) - 1  # the box's lowest row
                columns = np.flatnonzero(frame.mask[v] == body)
                middle = (frame.xyxy[i, 0] + frame.xyxy[i, 2]) / 2
                u = columns[np.argmin(np.abs(columns + 0.5 - middle))]  # pixel u spans u to u + 1
                (lowest,) = back_project(
                    np.array([u]), np.array([v]), np.array([frame.depth[v, u]]), frame.K, frame.pose
                )
                truth = float(np.hypot(*(lowest[:2] - camera[:2])))
                pixel = truth / (
                    frame.K[1, 1] * (camera[2] - ROAD_SURFACE_Z)
                )  # a row's share of the distance
                in_pixels.append((np.hypot(*(point[:2] - camera[:2])) - truth) / truth / pixel)
        assert len(in_pixels) >= 20, (renderer, in_pixels)
        assert np.abs(in_pixels).max() < 1.0, (renderer, in_pixels)
        assert abs(np.median(in_pixels)) < 0.25, (renderer, in_pixels)  # no bias: it was half a pixel
    # The driving graph's tracker takes the road where the scene has it.
    from perception.installed import LAUNCH_DIR
    from perception.runtime import launch_file

    nodes = launch_file.load(LAUNCH_DIR / "driving_tracking.yaml").nodes
    assert next(n for n in nodes if n.name == "tracker").parameters["ground_z"] == ROAD_SURFACE_Z


def test_bench_track_refuses_a_rate_out_of_range():
    from conftest import percept

    result = percept("bench", "track", "--rate", "0")
    assert result.returncode == 1
    assert "--rate: expected 1-60 frames/s, found 0.0" in result.stderr


def test_percept_track_run_help_states_the_defaults_it_uses():
    import re
    from fractions import Fraction

    from perception.cli import build_parser
    from perception.track.mot import PEDESTRIAN_PARAMS

    verbs = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    run = verbs["track"]._subparsers._group_actions[0].choices["run"]
    said = {
        action.dest: re.search(r"\(default ([^,;:)]+)", action.help or "")
        for action in run._actions
        if action.dest
        in {
            "high_score",
            "low_score",
            "new_track_score",
            "max_lost_s",
            "velocity_noise",
            "occluded_width_ratio",
            "reentry_gap_heights",
            "gate_sigmas",
            "buffer",
        }
    }
    assert len(said) == 9 and all(said.values()), said
    for name, match in said.items():
        assert float(Fraction(match.group(1))) == pytest.approx(getattr(PEDESTRIAN_PARAMS, name)), name


def test_uncertainty_grows_per_second_alike_at_any_frame_rate():
    """A second unseen adds the same velocity uncertainty at 10, 14 or 30 frames/s (SORT's per-frame
    noise adds 27 times as much at 30 as at 10), and nearly the same position uncertainty."""
    from perception.track import kalman

    mean, covariance = kalman.initiate(np.array([320.0, 240.0, 40.0, 80.0]))
    after = {}
    for rate in (10, 14, 30):
        means, covariances = mean[None], covariance[None]
        for _ in range(rate):
            means, covariances = kalman.predict_many(means, covariances, 1.0 / rate)
        after[rate] = covariances[0]
    np.testing.assert_allclose(after[30][2], after[10][2], rtol=1e-9)
    np.testing.assert_allclose(after[14][2], after[10][2], rtol=1e-9)
    np.testing.assert_allclose(after[30][0], after[10][0], rtol=0.1)


def test_filtered_boxes_report_the_filters_estimate_closer_to_the_truth_than_jittered_detections():
    rng = np.random.default_rng(3)
    truth = np.array([box(100 + 4 * i, 200, 30, 80) for i in range(60)])
    detected = truth + rng.normal(0, 3, truth.shape)
    errors = {}
    for filtered in (False, True):
        tracker = ByteTracker(TrackerParams(filtered_boxes=filtered))
        reported = []
        for i, b in enumerate(detected):
            (track,) = tracker.update(b[None], np.array([0.9]), np.array([PEDESTRIAN]), i / 30)
            reported.append(track.box)
        errors[filtered] = np.abs(np.array(reported)[10:] - truth[10:]).mean()
    np.testing.assert_allclose(errors[False], np.abs(detected[10:] - truth[10:]).mean())  # the detections
    assert errors[True] < 0.9 * errors[False]


def test_a_detection_with_nan_or_no_size_is_left_out_and_counted_not_kept_in_the_state():
    """One NaN box (a foreign model's output) entered the Kalman state, and every later update raised
    "matrix contains invalid numeric entries": the tracker node stopped tracking for good."""
    tracker = ByteTracker()
    bad_rows = ([np.nan, 0, 10, 10], [0, 0, np.inf, 10], [20, 20, 10, 10], [5, 5, 5, 30])
    ids = []
    for i, bad in enumerate(bad_rows):
        boxes = np.array([[i, 0, 10 + i, 10], bad], np.float64)
        tracks = tracker.update(boxes, np.array([0.9, 0.9]), np.array([1, 1]), i * 0.1)
        ids.append([t.id for t in tracks])
    assert ids == [[1], [1], [1], [1]] and tracker.invalid_detections == 4
    scores = np.array([0.9, np.nan])
    tracker.update(np.array([[4, 0, 14, 10], [30, 0, 40, 10]]), scores, np.array([1, 1]), 0.4)
    assert tracker.invalid_detections == 5
    with pytest.raises(ValueError, match="expected a finite stamp in seconds, found nan"):
        tracker.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), float("nan"))


def test_a_node_tells_what_its_core_left_out_once_and_only_what_is_new(caplog):
    import logging

    from perception.nodes._reporting import NewCounts

    counts = NewCounts(logging.getLogger("/tracker"), "detections with a NaN")
    with caplog.at_level(logging.WARNING):
        for total in (0, 3, 3, 5):  # one stats period each
            counts.say(total)
    assert [r.getMessage() for r in caplog.records] == [
        "left out 3 detections with a NaN (3 in all)",
        "left out 2 detections with a NaN (5 in all)",
    ]


def test_bench_mot_reads_ground_truth_as_it_reads_detections(tmp_path):
    """gt.txt went through numpy's loadtxt: commas only, and a bad row's error named no file."""
    from perception.bench.mot import read_sequence

    (tmp_path / "det").mkdir()
    (tmp_path / "gt").mkdir()
    (tmp_path / "det" / "det.txt").write_text("1,-1,10,20,30,40,0.9\n")
    gt = tmp_path / "gt" / "gt.txt"
    gt.write_text("\ufeff1\t1\t10\t20\t30\t40\t1\t1\t1.0\n2 1 12 20 30 40 0 1 1.0\n")
    sequence = read_sequence(tmp_path)
    assert sequence.length == 2 and list(sequence.truth[1].ids) == [1] and len(sequence.truth[2].ids) == 0
    gt.write_text("1,1,10,20,30,40,1,1,1.0\n2,1,12,x,30,40,1,1,1.0\n")
    with pytest.raises(ValueError, match=f"^ground truth {gt}, line 2: expected numbers separated by commas"):
        read_sequence(tmp_path)
    gt.write_text("1,1,10,20,30,40\n")
    with pytest.raises(ValueError, match=f"^ground truth {gt}, line 1: expected at least 7 columns"):
        read_sequence(tmp_path)
