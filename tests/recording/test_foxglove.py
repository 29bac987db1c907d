"""Foxglove views of our messages: right schema, right numbers, and decodable from the schema alone."""

from __future__ import annotations

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from perception import msgs
from perception.recording.foxglove import Converter, schema_data

H = msgs.Header(stamp=1_700_000_000_123_456_789, frame_id="camera")


def tracks(ids: list[int], xyxy: list[list[float]]) -> msgs.Tracks:
    n = len(ids)
    return msgs.Tracks(
        H,
        np.array(ids),
        np.full(n, 8, np.int32),
        ["car"] * n,
        np.array(xyxy, np.float32),
        np.ones(n, np.float32),
        np.zeros((n, 2), np.float32),
        np.ones(n, np.float32),
        np.full((n, 3), np.nan),
        np.full(n, np.nan, np.float32),
        np.full(n, np.nan, np.float32),
        np.full(n, np.inf, np.float32),
    )


def test_every_view_decodes_from_the_schema_written_with_it():
    converter = Converter()
    samples = [
        ("/camera/camera_info", msgs.CameraInfo(H, 640, 480, np.diag([500.0, 501.0, 1.0]))),
        ("/tracks", tracks([3], [[1, 2, 3, 4]])),
        ("/grasps", msgs.Grasps(H, [[0.5, 0, 0.02]], [[0, 0, 0, 1.0]], [0.05], [0.9], [0], ["cube"])),
    ]
    for topic, msg in samples:
        for view_topic, view in converter.convert(topic, msg):
            assert view_topic.startswith("/foxglove/")
            pool = descriptor_pool.DescriptorPool()
            for file in descriptor_pb2.FileDescriptorSet.FromString(schema_data(view.DESCRIPTOR)).file:
                pool.Add(file)
            name = view.DESCRIPTOR.full_name
            decoded = message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
            assert (
                decoded.FromString(view.SerializeToString()).SerializeToString() == view.SerializeToString()
            )


def test_a_depth_image_keeps_its_encoding_step_and_bytes():
    from foxglove_schemas_protobuf.RawImage_pb2 import RawImage

    from perception.recording.images import store
    from perception.runtime import wire

    depth = np.arange(24, dtype=np.float32).reshape(4, 6)
    image = msgs.Image(H, depth, encoding="32FC1")
    header = bytes(memoryview(wire.encode(b"/camera/depth", image)[1]))
    stored = store(image, header, "png")  # PNG cannot hold float depth exactly: stored raw
    assert stored.schema == "foxglove.RawImage"
    raw = RawImage.FromString(stored.data)  # our header field is one Foxglove's schema does not name
    assert (raw.width, raw.height, raw.encoding, raw.step) == (6, 4, "32FC1", 24)
    assert raw.data == depth.tobytes() and raw.timestamp.ToNanoseconds() == H.stamp


def test_camera_info_gives_the_calibration_and_the_camera_pose_in_the_world():
    info = msgs.CameraInfo(
        H, 640, 480, np.array([[500.0, 0, 320], [0, 501, 240], [0, 0, 1]]), pose=msgs.Pose((1, 2, 3))
    )
    (_, calibration), (tf_topic, transform) = Converter().convert("/camera/camera_info", info)
    assert list(calibration.K) == [500, 0, 320, 0, 501, 240, 0, 0, 1]
    assert list(calibration.P) == [500, 0, 320, 0, 0, 501, 240, 0, 0, 0, 1, 0]
    assert tf_topic == "/foxglove/tf" and transform.child_frame_id == "camera"
    assert (transform.translation.x, transform.translation.y, transform.translation.z) == (1, 2, 3)


def test_tracks_get_their_id_and_a_trail_that_ends_with_the_track():
    converter = Converter()
    for step in range(3):
        [(_, view)] = converter.convert("/tracks", tracks([7], [[10 + step, 0, 20 + step, 30]]))
    assert view.texts[0].text == "#7 car"
    box, trail = view.points
    assert [(p.x, p.y) for p in box.points] == [(12, 0), (22, 0), (22, 30), (12, 30)]
    assert [(p.x, p.y) for p in trail.points] == [(15, 30), (16, 30), (17, 30)]
    [(_, view)] = converter.convert("/tracks", tracks([], []))
    assert len(view.points) == 0 and converter.trails == {}


def test_grasps_become_slabs_as_wide_as_the_opening_and_pushes_lines_in_the_world_frame():
    grasps = msgs.Grasps(
        H,
        [[0.5, 0.1, 0.02], [0.4, 0, 0.03]],
        [[0, 0, 0, 1.0]] * 2,
        [0.05, 0.07],
        [0.9, 0.5],
        [0, 1],
        ["a", "b"],
        push_starts=[[0.4, 0.2, 0.015]],
        push_ends=[[0.49, 0.2, 0.015]],
        push_qualities=[0.6],
        push_detection_indices=[2],
        push_class_names=["c"],
    )
    [(_, update)] = Converter().convert("/grasps", grasps)
    [entity] = update.entities
    assert entity.frame_id == "world"
    assert [round(c.size.y, 3) for c in entity.cubes] == [0.05, 0.07]
    assert round(entity.cubes[0].pose.position.x, 3) == 0.5
    [push] = entity.lines  # a push: its line, start to end
    assert [(round(p.x, 3), round(p.y, 3), round(p.z, 3)) for p in push.points] == [
        (0.4, 0.2, 0.015),
        (0.49, 0.2, 0.015),
    ]


def test_detections_are_outlined_and_labelled_in_the_viewers_colours():
    from perception.display.overlay import colour as bgr

    detections = msgs.Detections(H, xyxy=[[1, 2, 3, 4]], scores=[0.5], class_ids=[7], class_names=[""])
    [(topic, view)] = Converter().convert("/detections", detections)
    assert topic == "/foxglove/detections" and view.texts[0].text == "7 0.50"  # no name: the id
    b, g, r = bgr(7)
    line = view.points[0].outline_color
    assert (round(line.r * 255), round(line.g * 255), round(line.b * 255)) == (r, g, b)


def test_messages_without_a_view_give_none():
    assert Converter().convert("/chatter", msgs.String("hi")) == []
