"""The wire format: round trips of every message type, zero-copy decoding, and malformed frame sets."""

import dataclasses

import msgpack
import numpy as np
import pytest

from perception import msgs
from perception.errors import MalformedMessage, MessageError
from perception.runtime import wire

H = msgs.Header(stamp=123, frame_id="cam", seq=4)
TS = [msgs.TopicStats("/a", "percept/Image", "pub", 3, 1.5), msgs.TopicStats("/b", "percept/String", "sub")]


def pixels(shape, dtype):
    return (np.arange(int(np.prod(shape))) % 251).astype(dtype).reshape(shape)


def det(x, score, class_id, name, track):  # scores exact in float32 so Detection equality holds
    return msgs.Detection((x, 1.0, x + 2.0, 3.0), score, class_id, name, track)


IMAGES = [  # every encoding, in both the H x W and H x W x C shapes it accepts
    ("rgb8", np.uint8, (2, 3, 3)),
    ("bgr8", np.uint8, (3, 2, 3)),
    ("rgba8", np.uint8, (2, 2, 4)),
    ("mono8", np.uint8, (2, 3)),
    ("mono8", np.uint8, (2, 3, 1)),
    ("16UC1", np.uint16, (4, 2)),
    ("16UC1", np.uint16, (4, 2, 1)),
    ("32FC1", np.float32, (2, 2)),
    ("32FC1", np.float32, (2, 2, 1)),
]
CASES = {
    "header": H,
    "string": msgs.String("héllo"),  # non-ASCII text survives msgpack
    "bool": msgs.Bool(True),
    "int64": msgs.Int64(-(2**63)),  # the whole range of a ROS int64
    "float64": msgs.Float64(1e-300),
    **{f"image-{e}-{'x'.join(map(str, s))}": msgs.Image(H, pixels(s, d), e) for e, d, s in IMAGES},
    "pose": msgs.Pose((1.0, 2.0, 3.0), (0.0, 0.0, 0.6, 0.8)),  # tuples come back as tuples
    "camera-info": msgs.CameraInfo(H, 640, 480, np.diag([500.0, 501.0, 1.0]), pose=msgs.Pose((1, 2, 3))),
    "pose-stamped": msgs.PoseStamped(H, msgs.Pose((0.4, -0.1, 0.3), (1.0, 0.0, 0.0, 0.0))),
    "detections-empty": msgs.Detections(H),  # zero-length array frames, one of shape (0, 4)
    "detections": msgs.Detections.from_list(H, [det(1.0, 0.5, 2, "cup", None), det(5.0, 0.25, 7, "", 9)]),
    "topic-stats": TS[0],
    "node-stats": msgs.NodeStats(H, "detector", 42, TS),  # a list of nested messages
    "get-parameters": msgs.GetParameters(["fps", "gain"]),
    "set-parameters": msgs.SetParameters({"fps": 30, "roi": {"x": [1, 2], "on": True}, "gain": 0.5}),
    "parameter-values": msgs.ParameterValues({"fps": 30}, {"fps": "int"}, {"fps": "frames per second"}),
    "trigger": msgs.Trigger(),  # no fields at all
    "result": msgs.Result(False, "camera busy"),
    "ground-truth": msgs.GroundTruth(  # parallel arrays of four dtypes, one per object
        H,
        np.array([7, 9]),
        np.array([0, 8], np.int32),
        ["cube", "car"],
        pixels((2, 4), np.float32),
        pixels((2, 3), np.float64),
        np.array([[0, 0, 0, 1.0], [0, 0, 0.6, 0.8]]),
        np.array([1.0, 0.25], np.float32),
    ),
    "ground-truth-empty": msgs.GroundTruth(H),  # no object visible
    "reset": msgs.Reset(
        seed=3, scene="driving", params={"cars": 4, "classes": ["car"]}
    ),  # nested plain values
    "execute-grasp": msgs.ExecuteGrasp(msgs.Pose((0.5, 0.0, 0.02), (1.0, 0.0, 0.0, 0.0)), 0.06, False),
    "grasp-result": msgs.GraspResult(True, "held", 12, 0.2, True),
    "execute-push": msgs.ExecutePush((0.4, 0.0, 0.015), (0.49, 0.0, 0.015)),
    "push-result": msgs.PushResult(True, "pushed: an object moved 7.5 cm", 14, 0.075, 123),
    "detector-stats": msgs.DetectorStats(H, "models/percept.onnx", 29.5, 3, 0.4, 5.1, 0.2),
    "grasps": msgs.Grasps(  # two grasps, one rejected detection, one outside the workspace
        H,
        pixels((2, 3), np.float64),
        np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]),
        np.array([0.05, 0.06], np.float32),
        np.array([0.9, 0.7], np.float32),
        np.array([0, 2], np.int32),
        ["cube", "mug"],
        np.array([1], np.int32),
        ["wider than the opening"],
        np.array([3], np.int32),
        2.5,
        push_starts=np.array([[0.4, 0.0, 0.015]]),  # and a push for the rejected one
        push_ends=np.array([[0.49, 0.0, 0.015]]),
        push_qualities=np.array([0.6], np.float32),
        push_detection_indices=np.array([1], np.int32),
        push_class_names=["teddy"],
    ),
    "grasps-empty": msgs.Grasps(H),
    "pick-attempt": msgs.PickAttempt(H, 3, "duck", msgs.Pose((0.5, 0.1, 0.02)), 0.05, 0.8, True, "held", 2),
    "pick-attempt-push": msgs.PickAttempt(
        H, 4, "teddy", msgs.Pose((0.4, 0.0, 0.015)), 0.0, 0.6, True, "pushed", 2, "push", (0.49, 0.0, 0.015)
    ),
    "tracks": msgs.Tracks(  # ground fields NaN and inf where unknown
        H,
        np.array([4, 11]),
        np.array([8, 9], np.int32),
        ["car", "pedestrian"],
        pixels((2, 4), np.float32),
        np.array([0.9, 0.6], np.float32),
        pixels((2, 2), np.float32),
        np.array([1.5, 0.2], np.float32),
        np.array([[20.0, -2.0, 0.0], [np.nan, np.nan, np.nan]]),
        np.array([20.1, np.nan], np.float32),
        np.array([5.0, np.nan], np.float32),
        np.array([4.0, np.inf], np.float32),
    ),
    "tracks-empty": msgs.Tracks(H),
    "tracker-stats": msgs.TrackerStats(H, 12, 9, 0.3, 0.6, 10.0),
    "camera-stats": msgs.CameraStats(
        H, "/dev/video0", False, 0.0, 120, 3, 1, "source '/dev/video0' did not open"
    ),
}


def assert_same(a, b):
    """Field-by-field equality that also checks arrays' dtype and shape."""
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
        assert (a.dtype, a.shape) == (b.dtype, b.shape)
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


def as_bytes(frames):
    return [f.tobytes() if isinstance(f, np.ndarray) else bytes(f) for f in frames]


def test_every_registered_type_has_a_round_trip_case():
    assert {m.TYPE_NAME for m in CASES.values()} >= set(msgs.registered_types())


@pytest.mark.parametrize("to_wire", [list, as_bytes], ids=["array-frames", "bytes-frames"])
@pytest.mark.parametrize("msg", CASES.values(), ids=CASES.keys())
def test_round_trip(msg, to_wire):
    frames = to_wire(wire.encode(b"/cam/x", msg, src="pub1", n=7))
    got = wire.decode(frames, expected=type(msg))
    assert (got.topic, got.src, got.n) == ("/cam/x", "pub1", 7)
    assert got.nbytes == sum(len(b) for b in as_bytes(frames))
    assert_same(got.msg, msg)


def test_decoded_arrays_share_memory_with_frames():
    img = CASES["image-32FC1-2x2"]
    frames = wire.encode(b"/img", img)
    assert frames[2] is img.data  # a contiguous array is sent as-is, not copied
    data = wire.decode(frames).msg.data
    assert np.shares_memory(data, img.data)
    assert not data.flags.writeable  # a view of the received frame: must be copied to change it
    frames = as_bytes(frames)
    assert np.shares_memory(wire.decode(frames).msg.data, np.frombuffer(frames[2], np.float32))


VIEWS = {"strided": lambda a: a[:, ::2], "reversed": lambda a: a[::-1], "fortran": np.asfortranarray}


@pytest.mark.parametrize("view", VIEWS.values(), ids=VIEWS.keys())
def test_non_contiguous_arrays_are_encoded_by_value(view):
    data = view(pixels((4, 6, 3), np.uint8))
    assert not data.flags.c_contiguous
    np.testing.assert_array_equal(wire.decode(wire.encode(b"/i", msgs.Image(H, data))).msg.data, data)


def test_expected_type_mismatch_names_both_types():
    frames = wire.encode(b"/s", msgs.String("x"))
    with pytest.raises(MalformedMessage, match="expected type percept/Image, found percept/String"):
        wire.decode(frames, expected=msgs.Image)


def hdr(type_name="percept/String", version=1, fields=None, **extra):
    return msgpack.packb({"type": type_name, "version": version, "fields": fields or {}, **extra})


def ext(index, dtype, shape):
    return msgpack.ExtType(wire.ARRAY_EXT, msgpack.packb([index, dtype, shape]))


def img(data, *arrays):  # frames of an Image whose 'data' field is `data`
    return [b"/t", hdr("percept/Image", fields={"header": {}, "data": data}), *arrays]


STATS = {"header": {}, "node": "n", "pid": 1, "topics": [1]}
MALFORMED = {  # id: (frames, what the error must say)
    "one-frame": ([b"/t"], r"at least 2 frames \(topic, header\), found 1"),  # header frame lost
    "not-msgpack": ([b"/t", b"\xc1"], r"header is not valid msgpack: \S"),  # 0xc1 is never valid; says why
    "not-a-map": ([b"/t", msgpack.packb([1, 2])], "header must be a map"),  # an array header
    "no-fields": ([b"/t", msgpack.packb({"type": "a/B", "version": 1})], "'fields'"),  # key missing
    "fields-list": ([b"/t", hdr("a/B", fields=[1])], "a/B: 'fields' must be a map, found list"),
    "frame-missing": (img(ext(0, "|u1", [2, 2])), r"array frame 0 missing: 0 array frame\(s\) came"),
    "frame-size": (
        img(ext(0, "|u1", [2, 2, 3]), b"\0" * 5),  # truncated frame
        r"array frame 0: shape \[2, 2, 3\] of \|u1 needs 12 bytes, found 5",
    ),
    "object-dtype": (
        img(ext(0, "|O", [1]), b"\0" * 8),  # pointers must never be rebuilt from bytes
        r"array dtype '\|O': expected bool, integer, unsigned or float",
    ),
    "ext-not-msgpack": (
        img(msgpack.ExtType(wire.ARRAY_EXT, b"\xc1")),
        r"array reference \(msgpack extension 1\)",
    ),
    "ext-no-shape": (
        img(msgpack.ExtType(wire.ARRAY_EXT, msgpack.packb([0, "|u1"])), b"\0"),
        r"array reference .*expected \[frame index, dtype, shape\]",
    ),
    "ext-bad-dtype": (img(ext(0, "zz9", [1]), b"\0"), r"array reference .*data type 'zz9' not understood"),
    "missing-field": (
        [b"/t", hdr("percept/Image", fields={"data": ext(0, "|u1", [1, 1, 3])}), b"\0" * 3],
        r"percept/Image: missing field 'header' \(no default\)",
    ),
    "text-for-list": (
        [b"/t", hdr("percept/GetParameters", fields={"names": "iou"})],
        "percept/GetParameters.names: expected a list of text, found str 'iou'",
    ),
    "list-item": (
        [b"/t", hdr("percept/GetParameters", fields={"names": ["iou", 7]})],
        r"percept/GetParameters.names\[1\]: expected text, found int 7",
    ),
    "nested-field": (
        [
            b"/t",
            hdr("percept/Image", fields={"header": {"stamp": "now"}, "data": ext(0, "|u1", [1, 1, 3])}),
            b"\0" * 3,
        ],
        "percept/Image.header.stamp: expected an integer, found str 'now'",
    ),
    "bool-for-int": (
        [b"/t", hdr("percept/Reset", fields={"seed": True})],
        "percept/Reset.seed: expected an integer, found bool True",
    ),
    "array-as-text": (
        [b"/t", hdr("percept/Detections", fields={"header": {}, "track_ids": "5"})],
        r"percept/Detections.track_ids: expected an array \(msgpack extension 1\) or a list of whole numbers, "
        "found str '5'",
    ),
    "array-of-text": (
        [b"/t", hdr("percept/Detections", fields={"header": {}, "xyxy": [["1", 2, 3, 4]], "scores": [0.5]})],
        r"percept/Detections.xyxy: expected .* a list of numbers, found list",
    ),
    "fraction-for-whole": (
        [b"/t", hdr("percept/Detections", fields={"header": {}, "xyxy": [[1, 2, 3, 4]], "class_ids": [1.7]})],
        "percept/Detections.class_ids: expected .* a list of whole numbers, found list",  # not cut to 1
    ),
    "map-for-array": (
        [b"/t", hdr("percept/Detections", fields={"header": {}, "scores": {"a": 1}})],
        "percept/Detections.scores: expected .* a list of numbers, found dict",
    ),
    "map-key-not-text": (
        [b"/t", hdr("percept/SetParameters", fields={"values": {1: 2}})],
        "percept/SetParameters.values: expected a map with text keys",
    ),
    "ext-code": (img(msgpack.ExtType(5, b"")), "unknown msgpack extension type 5"),  # not an array
    "unknown-field": (
        [b"/t", hdr(fields={"data": "x", "extra": 1})],  # e.g. a newer sender
        r"percept/String: .*unknown fields \['extra'\]; expected \['data'\]",
    ),
    "version": (
        [b"/t", hdr(version=2, fields={"data": "x"})],  # schema changed
        "percept/String schema version 2 received; this process reads version 1",
    ),
    "topic-utf8": ([b"\xff/t", hdr(fields={"data": "x"})], "topic frame is not UTF-8"),
    "invalid-field": (img([1]), "percept/Image: .*Image.data: expected a numpy array, found list"),
    "msglist-item": ([b"/t", hdr("percept/NodeStats", fields=STATS)], "percept/NodeStats"),  # 1 is no map
    "type-not-str": ([b"/t", hdr(7)], "header 'type' must be a string.*found 7"),  # garbled type name
    "n-not-int": (
        [b"/t", hdr(fields={"data": "x"}, n="seven")],  # sequence number garbled
        "'n' an integer from 0 to 2\\^63-1, found '' and 'seven'",
    ),
}


@pytest.mark.parametrize(("frames", "match"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_frames_raise_malformed_message(frames, match):
    with pytest.raises(MalformedMessage, match=match):
        wire.decode(frames)


def test_unregistered_type_decodes_to_unknown_message():
    frames = [b"/t", hdr("other/Thing", 3, {"a": 1, "arr": ext(0, "<i4", [2])}), np.array([5, 6], np.int32)]
    got = wire.decode(frames).msg
    assert isinstance(got, wire.UnknownMessage)
    assert (got.type_name, got.version, got.fields["a"]) == ("other/Thing", 3, 1)
    np.testing.assert_array_equal(got.fields["arr"], [5, 6])


def test_peek_reads_header_only():
    frames = wire.encode(b"/img", CASES["image-mono8-2x3"], src="cam", n=9)[:2]  # array frame dropped
    assert wire.peek_sequence(frames) == ("cam", 9)
    assert wire.peek_type(frames) == "percept/Image"
    with pytest.raises(MalformedMessage, match="array frame 0 missing"):
        wire.decode(frames)  # full decoding would need the array frame


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        ({"data": "x"}, "expected a registered message, found dict"),  # a plain dict is not a message
        (msgs.Message(), "expected a registered message, found Message"),  # base class has no type name
        (msgs.String(object()), "cannot encode a object in a message"),  # no generic pickling
        (
            msgs.SetParameters({"a": np.array([None], object)}),
            "hold bool, integer, unsigned or float; found dtype object",
        ),
    ],
)
def test_encode_rejects_what_it_cannot_send(msg, match):
    with pytest.raises(MessageError, match=match):
        wire.encode(b"/t", msg)
    assert_same(wire.decode(wire.encode(b"/t", CASES["pose"])).msg, CASES["pose"])  # encoder left clean


def test_a_message_from_before_fields_were_added_still_decodes_with_their_defaults():
    # A recording made before pushes came (Grasps version 2, PickAttempt version 1) replays: the
    # fields added since have defaults. A version the class does not list is refused as before.
    old = [b"/grasps", hdr("percept/Grasps", version=2, fields={"header": {"stamp": 5}})]
    grasps = wire.decode(old).msg
    assert isinstance(grasps, msgs.Grasps) and grasps.header.stamp == 5
    assert grasps.push_starts.shape == (0, 3) and grasps.push_class_names == []
    attempt = wire.decode([b"/attempts", hdr("percept/PickAttempt", version=1, fields={"header": {}})]).msg
    assert attempt.action == "grasp"
    with pytest.raises(
        MalformedMessage, match="percept/Grasps schema version 4 received; this process reads version 3"
    ):
        wire.decode([b"/grasps", hdr("percept/Grasps", version=4, fields={"header": {}})])


def test_grasps_whose_arrays_differ_in_length_are_refused_by_name():
    with pytest.raises(
        MessageError, match=r"Grasps: 1 push starts, but these fields differ in length: \{'push_ends': 0"
    ):
        msgs.Grasps(
            H,
            push_starts=np.zeros((1, 3)),
            push_qualities=[0.5],
            push_detection_indices=[0],
            push_class_names=["x"],
        )
    with pytest.raises(MessageError, match=r"ExecutePush.end: expected 3 values \(x, y, z\), found 2"):
        msgs.ExecutePush((0.4, 0.0, 0.015), (0.49, 0.0))


def test_headers_with_keys_of_mixed_types_or_a_text_stamp_get_the_documented_error():
    # A peer's header map with an integer key beside text keys: MalformedMessage naming the keys, not a
    # TypeError from sorting them (issue 22, item 7).
    mixed = [b"/t", msgpack.packb({1: "x", "type": "percept/String"}, strict_types=False)]
    with pytest.raises(MalformedMessage, match=r"header lacks 'fields', 'version'; found keys 'type', 1$"):
        wire.decode(mixed)
    # A Header whose stamp is text or a boolean is refused; numpy's integers become plain ints.
    text_stamp = [b"/t", hdr("percept/Header", fields={"stamp": "12", "frame_id": "cam"})]
    with pytest.raises(MalformedMessage, match=r"Header.stamp: expected an integer, found str '12'"):
        wire.decode(text_stamp)
    with pytest.raises(MessageError, match=r"Header.seq: expected an integer, found bool True"):
        msgs.Header(seq=True)
    with pytest.raises(MessageError, match=r"Header.frame_id: expected text, found int 3"):
        msgs.Header(frame_id=3)
    header = msgs.Header(stamp=np.int64(5))
    assert header.stamp == 5 and type(header.stamp) is int


@pytest.mark.parametrize("n", [-1, -(2**63), 2**63, 2**64 - 1, True, 1.5], ids=repr)
def test_a_sequence_number_outside_int64_is_malformed(n):
    frames = wire.encode(b"/t", msgs.String(data="x"), "src", 1)
    header = msgpack.unpackb(frames[1])
    frames[1] = msgpack.packb({**header, "n": n})
    with pytest.raises(MalformedMessage, match="'n' an integer from 0 to 2\\^63-1"):
        wire.decode(frames)
    with pytest.raises(MalformedMessage, match="'n' an integer from 0 to 2\\^63-1"):
        wire.peek_sequence(frames)


def test_a_header_or_a_message_over_its_bound_is_malformed(monkeypatch):
    """Issue 22, item 5: a 100 MB header was accepted; a message's arrays are bounded by its type."""
    image = msgs.Image(header=msgs.Header(seq=1), data=np.zeros((4, 4, 3), np.uint8))
    frames = wire.encode(b"/x", image)
    huge_header = msgpack.packb({"type": "percept/Image", "version": 1, "fields": {"pad": "x" * (1 << 20)}})
    for decode in (lambda f: wire.decode(f), wire.peek_sequence):
        with pytest.raises(MalformedMessage, match=r"header of \d+ bytes; at most 1048576 accepted"):
            decode([b"/x", huge_header])
    assert wire.max_message_bytes(msgs.Image) == 64 << 20 and wire.max_message_bytes(msgs.String) == 16 << 20
    assert wire.max_message_bytes() == 64 << 20  # any type: the largest
    monkeypatch.setenv("PERCEPT_MAX_MESSAGE_MB", "0.001")  # 1,048 bytes: a 4 x 4 image fits, not 32 x 32
    assert wire.decode(frames, msgs.Image).msg.data.shape == (4, 4, 3)
    big = wire.encode(b"/x", msgs.Image(header=msgs.Header(), data=np.zeros((32, 32, 3), np.uint8)))
    with pytest.raises(MalformedMessage, match=r"percept/Image of \d+ bytes; at most 1048 accepted"):
        wire.decode(big, msgs.Image)
    monkeypatch.setenv("PERCEPT_MAX_MESSAGE_MB", "lots")
    with pytest.raises(
        MessageError, match="PERCEPT_MAX_MESSAGE_MB: expected a size in MiB above 0, found 'lots'"
    ):
        wire.max_message_bytes(msgs.Image)


def test_array_fields_sent_as_plain_lists_of_numbers_are_taken():
    """A foreign client may send an array as a msgpack array of numbers: its type converts it."""
    fields = {
        "header": {},
        "xyxy": [[1, 2, 3, 4.5]],
        "scores": [1],
        "class_ids": [2.0],
        "class_names": ["car"],
    }
    detections = wire.decode([b"/t", hdr("percept/Detections", fields=fields)]).msg
    assert detections.xyxy.dtype == np.float32 and detections.xyxy.tolist() == [[1, 2, 3, 4.5]]
    assert detections.class_ids.tolist() == [2] and detections.track_ids.tolist() == [-1]
