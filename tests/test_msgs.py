"""Message types: field validation, Detections' row views, CameraInfo intrinsics and the type registry."""

from dataclasses import dataclass

import numpy as np
import pytest

from perception import msgs
from perception.errors import MessageError

H = msgs.Header(stamp=1, frame_id="cam")


Z = np.zeros


@pytest.mark.parametrize(
    ("data", "encoding", "match"),
    [
        (Z((2, 2, 3), np.uint8), "rgb", r"Image\.encoding: expected one of rgb8, .*found 'rgb'"),  # typo
        (Z((2, 2), np.float32), "16UC1", r"Image\.data: encoding 16UC1 needs dtype uint16, found float32"),
        (Z((2, 2, 3), np.float64), "rgb8", "needs dtype uint8, found float64"),  # float image as rgb8
        (Z((2, 2), np.uint8), "rgb8", r"encoding rgb8 needs shape H x W x 3, found \(2, 2\)"),  # no channels
        (Z((2, 2, 3), np.uint8), "rgba8", r"needs shape H x W x 4, found \(2, 2, 3\)"),  # 3 is not 4
        (Z((2, 2, 3), np.uint8), "mono8", r"needs shape H x W or H x W x 1, found \(2, 2, 3\)"),  # colour
        (Z(4, np.uint8), "mono8", r"needs shape H x W or H x W x 1, found \(4,\)"),  # 1-D
        ([[1, 2]], "mono8", r"Image\.data: expected a numpy array, found list"),  # not silently converted
    ],
)
def test_image_validation_names_field_expected_and_found(data, encoding, match):
    with pytest.raises(MessageError, match=match):
        msgs.Image(H, data, encoding)


def test_image_size_properties():
    img = msgs.Image(H, np.zeros((480, 640), np.float32), "32FC1")
    assert (img.height, img.width) == (480, 640)


DETS = [
    msgs.Detection((1.0, 2.0, 3.0, 4.0), 0.5, 3, "cup", None),  # untracked
    msgs.Detection((5.0, 6.0, 7.5, 8.5), 0.25, 0, "", 0),  # track 0 is a real id, not "unset"
    msgs.Detection((0.0, 0.0, 1.0, 1.0), 1.0, 9, "bowl", 12),
]


def test_detections_from_list_round_trips_rows():
    dets = msgs.Detections.from_list(H, DETS)
    assert len(dets) == 3
    assert [dets[i] for i in range(3)] == DETS
    assert list(dets) == DETS
    np.testing.assert_array_equal(dets.track_ids, [-1, 0, 12])  # None is stored as -1
    assert (dets.xyxy.dtype, dets.scores.dtype, dets.class_ids.dtype) == (np.float32, np.float32, np.int32)


def test_detections_empty():
    dets = msgs.Detections.from_list(H, [])
    assert len(dets) == 0 and list(dets) == []
    assert dets.xyxy.shape == (0, 4)


def test_detections_defaults_fill_track_ids_and_names():
    dets = msgs.Detections(H, xyxy=[[0, 0, 1, 1], [1, 1, 2, 2]], scores=[0.5, 0.5], class_ids=[1, 2])
    assert [d.track_id for d in dets] == [None, None]
    assert dets.class_names == ["", ""]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scores": [0.5]}, r"xyxy has 2 rows.*'scores': 1, 'class_ids': 0"),  # both short fields listed
        ({"scores": [0.5, 0.5], "class_ids": [1, 2], "class_names": ["a"]}, r"\{'class_names': 1\}"),
        ({"scores": [0.5, 0.5], "class_ids": [1, 2], "track_ids": [1, 2, 3]}, r"\{'track_ids': 3\}"),
    ],
)
def test_detections_length_mismatch_lists_fields(kwargs, match):
    with pytest.raises(MessageError, match=match):
        msgs.Detections(H, xyxy=np.zeros((2, 4)), **kwargs)


K = [[500.0, 0.0, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]]


def test_camera_info_intrinsics():
    info = msgs.CameraInfo(H, 640, 480, K)
    assert (info.fx, info.fy, info.cx, info.cy) == (500.0, 510.0, 320.0, 240.0)
    assert (info.K.dtype, info.K.shape) == (np.float64, (3, 3))  # nested lists become a matrix
    np.testing.assert_array_equal(info.D, np.zeros(5))
    assert info.pose == msgs.Pose()


@pytest.mark.parametrize(
    ("k", "size", "match"),
    [
        (np.eye(4), (640, 480), r"CameraInfo\.K: expected a 3 x 3 matrix, found shape \(4, 4\)"),
        (np.zeros(9), (640, 480), r"found shape \(9,\)"),  # flat 9 is not silently reshaped
        (K, (0, 480), "expected a positive size, found 0 x 480"),
    ],
)
def test_camera_info_validation(k, size, match):
    with pytest.raises(MessageError, match=match):
        msgs.CameraInfo(H, *size, k)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"position": (1.0, 2.0)}, r"Pose\.position: expected 3 values \(x, y, z\), found 2"),
        ({"orientation": (0, 0, 0)}, r"Pose\.orientation: expected 4 values \(x, y, z, w\), found 3"),
    ],
)
def test_pose_length_validation(kwargs, match):
    with pytest.raises(MessageError, match=match):
        msgs.Pose(**kwargs)


def test_pose_values_become_floats():
    pose = msgs.Pose(np.array([1, 2, 3]), [0, 0, 0, 1])
    assert pose.position == (1.0, 2.0, 3.0) and pose.orientation == (0.0, 0.0, 0.0, 1.0)
    assert all(type(v) is float for v in pose.position + pose.orientation)


def test_message_type_lookup():
    assert msgs.message_type("percept/Image") is msgs.Image
    with pytest.raises(MessageError, match=r"unknown message type 'percept/Imag'; known types: .*/Image"):
        msgs.message_type("percept/Imag")


def test_registering_a_second_class_under_a_taken_name_raises():
    with pytest.raises(MessageError, match=r"'percept/Image' is already registered by .*Image"):

        @msgs.message("percept/Image")
        @dataclass
        class Impostor(msgs.Message):
            data: int = 0

    assert msgs.message_type("percept/Image") is msgs.Image  # the original stays registered
    assert msgs.message("percept/Image")(msgs.Image) is msgs.Image  # re-registering the same class is fine


def test_ground_truth_arrays_must_agree_with_the_ids():
    header = msgs.Header()
    with pytest.raises(
        MessageError, match=r"GroundTruth: 2 ids, but these fields have other shapes: .*'xyxy': \(1, 4\)"
    ):
        msgs.GroundTruth(
            header,
            ids=np.array([1, 2]),
            class_ids=np.array([0, 0]),
            class_names=["a", "b"],
            xyxy=np.zeros((1, 4)),
            positions=np.zeros((2, 3)),
            orientations=np.zeros((2, 4)),
            visible_fraction=np.ones(2),
        )


def test_detections_with_a_non_finite_box_or_score_are_refused_naming_the_row():
    good = [[0, 0, 10, 10]]
    with pytest.raises(MessageError, match=r"Detections row 1: expected finite numbers, found xyxy \[nan"):
        msgs.Detections(H, xyxy=[*good, [np.nan, 0, 5, 5]], scores=[0.9, 0.8], class_ids=[0, 0])
    with pytest.raises(MessageError, match=r"Detections row 0: .* and score inf"):
        msgs.Detections(H, xyxy=good, scores=[np.inf], class_ids=[0])


def test_an_empty_image_and_a_track_with_a_non_finite_box_are_refused():
    with pytest.raises(
        MessageError, match=r"Image.data: expected at least 1 x 1 pixels, found \(0, 640, 3\)"
    ):
        msgs.Image(H, np.zeros((0, 640, 3), np.uint8))
    with pytest.raises(MessageError, match=r"Tracks row 0: expected a finite box, found xyxy \[nan"):
        msgs.Tracks(
            H,
            ids=[1],
            class_ids=[8],
            class_names=["car"],
            xyxy=[[np.nan, 0, 1, 1]],
            scores=[0.9],
            velocities=[[0, 0]],
            ages_s=[0.1],
            ground_positions=[[np.nan] * 3],
            distances=[np.nan],
            speeds=[np.nan],
            times_to_collision=[np.inf],
        )


def test_the_wire_format_documents_every_type_as_the_code_declares_it():
    """docs/wire-format.md is what a client in another language is written from: its table of every
    type (versions, fields, wire forms, defaults) must be the one the code gives today."""
    from pathlib import Path

    from perception.cli.interface import markdown_table

    doc = (Path(__file__).parents[1] / "docs" / "wire-format.md").read_text()
    start = doc.index("<!-- generated by `percept interface list --markdown`")
    table = doc[doc.index("\n", start) + 1 : doc.index("<!-- end of generated table -->")].strip()
    assert table == markdown_table(), (
        "docs/wire-format.md is stale: paste `percept interface list --markdown`"
    )
    for name in msgs.registered_types():
        assert f"| `{name}` v" in table


@pytest.mark.parametrize(
    ("hint", "value", "expected"),
    [
        (float, 2, 2.0),  # msgpack and YAML give an integer for 2.0
        (int, 4503599627370496.0, 2**52),  # and a JavaScript encoder may write a whole number as a float
        (int, np.int64(3), 3),
        (bool, np.bool_(True), True),
        (tuple[float, float, float], [0, 1, 2.5], (0.0, 1.0, 2.5)),
        (list[str], ["a", "b"], ["a", "b"]),
        (list[float], [1, 2.5], [1.0, 2.5]),
        (dict[str, str], {"a": "b"}, {"a": "b"}),
    ],
)
def test_field_value_takes_plain_values_as_the_field_holds_them(hint, value, expected):
    taken = msgs.field_value("t.f", hint, value)
    assert taken == expected and type(taken) is type(expected)
    if isinstance(expected, list | tuple):
        assert [type(v) for v in taken] == [type(v) for v in expected]


@pytest.mark.parametrize(
    ("hint", "value", "match"),
    [
        (str, 5, "t.f: expected text, found int 5"),
        (int, True, "t.f: expected an integer, found bool True"),  # a bool is no count
        (int, 2.5, "t.f: expected an integer, found float 2.5"),
        (float, "1", "t.f: expected a number, found str '1'"),
        (bool, 1, "t.f: expected true or false, found int 1"),
        (tuple[float, float, float], [1, 2], r"t.f: expected a list of 3 numbers, found list \[1, 2\]"),
        (list[str], "mug", "t.f: expected a list of text, found str 'mug'"),  # not walked letter by letter
        (list[str], ["mug", None], r"t.f\[1\]: expected text, found NoneType None"),
        (dict[str, str], {"a": 1}, "t.f: expected a map of text to text"),
        (dict[str, object], {1: "a"}, "t.f: expected a map with text keys"),
    ],
)
def test_field_value_refuses_the_wrong_kind_naming_the_field(hint, value, match):
    with pytest.raises(MessageError, match=match):
        msgs.field_value("t.f", hint, value)
