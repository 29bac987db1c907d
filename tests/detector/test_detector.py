"""The detector core on small ONNX graphs built here, each reproducing one family's output layout with
known boxes, and the errors a bad model gets."""

from __future__ import annotations

import math
import re
import time

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from perception.detector import Detector, DetectorError
from perception.detector.decoders import LAYOUTS, cells
from perception.detector.preprocess import letterbox
from perception.detector.small_objects import merge_by_size

SIZE = 320
IMAGE = np.zeros((240, 320, 3), np.uint8)  # letterboxed into 320 x 320: 40 px bands top and bottom
TRUE_BOX = (100.0, 50.0, 160.0, 90.0)  # in the 240 x 320 image; (100, 90, 160, 130) in the input
NAMES = {0: "person", 1: "cup", 2: "duck"}


def write_model(
    path,
    output: np.ndarray,
    *,
    names=None,
    input_shape=(1, 3, SIZE, SIZE),
    metadata=None,
    half=False,
    blank_finds_nothing=False,
) -> str:
    """An ONNX graph whose output is `output`, whatever the image (plus 0 x the image, so it is used);
    with `half`, its input is float16, as an Ultralytics half=True export's; with `blank_finds_nothing`,
    an image of zeros gives zeros (what an end2end export gives where it finds nothing)."""
    nodes = [
        helper.make_node("Constant", [], ["raw"], value=numpy_helper.from_array(output.astype(np.float32))),
        helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["raw", "nothing"], ["found"]),
    ]
    if blank_finds_nothing:
        nodes += [
            helper.make_node("Greater", ["mean", "zero"], ["lit"]),
            helper.make_node("Cast", ["lit"], ["any"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["found", "any"], ["output0"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["found"], ["output0"]))
    graph = helper.make_graph(
        nodes,
        "fixture",
        [
            helper.make_tensor_value_info(
                "images", TensorProto.FLOAT16 if half else TensorProto.FLOAT, list(input_shape)
            )
        ],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))],
        initializer=[numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if names is not None:
        model.metadata_props.add(key="names", value=str(names))
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return str(path)


def rows_cxcywh(
    top_offset: float, other_shift: float = 21
) -> list[tuple[float, float, float, float, float, int]]:
    """(cx, cy, w, h, score, class) in network-input pixels: the true box, a weaker duplicate that NMS
    removes, an overlapping box of another class that class-aware NMS keeps (IoU 0.48: above the NMS
    IoU, yet not one object, which takes more than 0.5), one below threshold."""
    x1, y1, x2, y2 = TRUE_BOX
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2 + top_offset, x2 - x1, y2 - y1
    return [
        (cx, cy, w, h, 0.9, 2),
        (cx + 2, cy + 1, w, h, 0.8, 2),
        (cx + other_shift, cy, w, h, 0.7, 1),
        (200, 200, 30, 30, 0.1, 0),
    ]


def yolov8_output(classes: int = 3) -> np.ndarray:
    out = np.zeros((1, 4 + classes, 50), np.float32)
    for i, (cx, cy, w, h, score, cls) in enumerate(rows_cxcywh(40)):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4 + cls, i] = score
    return out


def yolov5_output() -> np.ndarray:
    out = np.zeros((1, 3 * cells((SIZE, SIZE)), 5 + 3), np.float32)
    for i, (cx, cy, w, h, score, cls) in enumerate(rows_cxcywh(40)):
        out[0, i, :5] = (cx, cy, w, h, 1.0)  # objectness 1: the class score is the score
        out[0, i, 5 + cls] = score
    return out


def yolox_output() -> np.ndarray:
    """Raw grid outputs at stride 8: cx = (offset + cell) * 8, w = exp(log_w) * 8; no letterbox band
    (YOLOX pads at the bottom), so the box sits at its image coordinates."""
    out = np.zeros((1, cells((SIZE, SIZE)), 5 + 3), np.float32)
    out[0, :, 2:4] = -10.0  # every other cell: a vanishing box
    for cx, cy, w, h, score, cls in rows_cxcywh(0, other_shift=24):  # the other class 3 cells on
        gx, gy = int(cx // 8), int(cy // 8)
        row = gy * (SIZE // 8) + gx
        if out[0, row, 4]:
            continue  # the duplicate falls in the same cell: one prediction per cell
        out[0, row, :5] = (cx / 8 - gx, cy / 8 - gy, math.log(w / 8), math.log(h / 8), 1.0)
        out[0, row, 5 + cls] = score
    return out


def yolox_decoded_output() -> np.ndarray:
    """YOLOX exported with --decode_in_inference: every cell's box already in pixels, centred on its
    cell (as a real model's are, boxes or not), the known ones where yolox_output puts them."""
    raw = yolox_output()
    decoded = np.zeros_like(raw)
    start = 0
    for stride in (8, 16, 32):
        rows, columns = SIZE // stride, SIZE // stride
        gy, gx = np.divmod(np.arange(rows * columns), columns)
        block = raw[0, start : start + rows * columns]
        decoded[0, start : start + rows * columns, 0] = (block[:, 0] + gx) * stride
        decoded[0, start : start + rows * columns, 1] = (block[:, 1] + gy) * stride
        decoded[0, start : start + rows * columns, 2:4] = np.exp(block[:, 2:4]) * stride
        decoded[0, start : start + rows * columns, 4:] = block[:, 4:]
        start += rows * columns
    return decoded


def end2end_output() -> np.ndarray:
    out = np.zeros((1, 300, 6), np.float32)
    x1, y1, x2, y2 = TRUE_BOX
    out[0, 0] = (x1, y1 + 40, x2, y2 + 40, 0.9, 2)  # NMS already done inside the model
    out[0, 1] = (x1 + 21, y1 + 40, x2 + 21, y2 + 40, 0.7, 1)  # another object of another class (IoU 0.48)
    return out


@pytest.mark.parametrize(
    ("layout", "make"),
    [
        ("yolov8", yolov8_output),
        ("yolov5", yolov5_output),
        ("yolox", yolox_output),
        ("yolox_decoded", yolox_decoded_output),
        ("end2end", end2end_output),
    ],
)
def test_each_layout_is_recognised_and_decoded_to_image_pixels(tmp_path, layout, make):
    detector = Detector(write_model(tmp_path / "m.onnx", make(), names=NAMES))
    assert detector.layout == layout and detector.class_names == ["person", "cup", "duck"]
    result = detector(IMAGE)
    by_class = dict(zip(result.class_names, result.xyxy, strict=True))
    assert sorted(by_class) == ["cup", "duck"]  # the duplicate suppressed, the other class kept, 0.1 dropped
    np.testing.assert_allclose(by_class["duck"], TRUE_BOX, atol=0.5)
    assert result.scores[0] == pytest.approx(0.9) and result.class_names[0] == "duck"  # best first
    assert set(detector.timings_ms) == {"preprocess", "inference", "postprocess"}


def rtdetr_output(columns: str) -> np.ndarray:
    """Ultralytics' RT-DETR: 300 queries, each box (cx, cy, w, h) as fractions of the input, which the
    image fills stretched (240 x 320 into 320 x 320: no bands), then (score, class) from Ultralytics 8.4
    on, one score per class before it. Every query holds a box, a blank image's too."""
    x1, y1, x2, y2 = TRUE_BOX
    height, width = IMAGE.shape[:2]
    box = np.array([(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height])
    queries = [
        (box, 0.9, 2),
        (box + np.array([21 / width, 0, 0, 0]), 0.7, 1),
        (box + np.array([0.3, 0.3, 0, 0]), 0.1, 0),
    ]
    if columns == "score, class":
        out = np.tile([0.5, 0.5, 0.1, 0.1, 0.01, 0], (1, 300, 1)).astype(np.float32)
        for i, (cxcywh, score, cls) in enumerate(queries):
            out[0, i] = (*cxcywh, score, cls)
    else:
        out = np.tile([0.5, 0.5, 0.1, 0.1, 0.01, 0.01, 0.01], (1, 300, 1)).astype(np.float32)
        for i, (cxcywh, score, cls) in enumerate(queries):
            out[0, i, :4] = cxcywh
            out[0, i, 4 + cls] = score
    return out


@pytest.mark.parametrize("columns", ["score, class", "class scores"])
def test_an_ultralytics_rtdetr_is_told_from_end2end_and_fills_its_input_stretched(tmp_path, columns):
    """Its 1 x 300 x 6 is end2end's shape: read as corner pixels, every box landed within a pixel of the
    image's corner and scored as found."""
    detector = Detector(write_model(tmp_path / "m.onnx", rtdetr_output(columns), names=NAMES))
    assert detector.layout == "rtdetr"
    result = detector(IMAGE)
    assert result.class_names == ["duck", "cup"] and result.scores[0] == pytest.approx(0.9)
    np.testing.assert_allclose(result.xyxy[0], TRUE_BOX, atol=0.5)
    tensor, _ = detector.preprocess(np.full((240, 320, 3), 255, np.uint8))
    assert tensor.shape == (1, 3, SIZE, SIZE) and tensor.min() == 1.0  # stretched: no padding


def test_an_rtdetr_row_of_nan_is_left_out_and_a_one_class_rtdetr_is_recognised(tmp_path):
    """A NaN in the class column made a frame of (score, class) rows read as class scores: 292 boxes."""
    out = rtdetr_output("score, class")
    out[0, 0, 5] = np.nan  # the duck's class
    out[0, 5, :] = np.nan  # and a whole background row
    detector = Detector(write_model(tmp_path / "m.onnx", out, names=NAMES))
    result = detector(IMAGE)
    assert detector.layout == "rtdetr" and result.class_names == ["cup"]
    np.testing.assert_allclose(result.xyxy[0], np.add(TRUE_BOX, [21, 0, 21, 0]), atol=0.5)
    one_class = rtdetr_output("score, class")[:, :, :5].copy()  # 1 x 300 x (4 + 1): one score each
    detector = Detector(write_model(tmp_path / "one.onnx", one_class, names={0: "duck"}))
    assert detector.layout == "rtdetr" and detector(IMAGE).class_names == ["duck", "duck"]


def test_a_two_class_rtdetr_of_class_scores_is_not_read_as_score_and_class(tmp_path):
    out = rtdetr_output("score, class")[:, :, :6].copy()
    out[0, :, 4:] = 0.01
    out[0, 0, 4:] = (0.2, 0.8)  # query 0: class 1 at 0.8 (a 6th column that is no class index)
    detector = Detector(write_model(tmp_path / "m.onnx", out, names={0: "a", 1: "b"}))
    result = detector(IMAGE)
    assert detector.layout == "rtdetr" and result.class_names == ["b"]
    assert result.scores[0] == pytest.approx(0.8)


@pytest.mark.parametrize(("layout", "anchors"), [("yolox", 1), ("yolov5", 3)])
def test_a_one_class_model_at_a_small_input_is_not_taken_for_end2end(tmp_path, layout, anchors):
    # Rows of 5 + 1 = 6, as end2end's, and 1 x 525 (or 1575) rows at 160 x 160.
    output = np.zeros((1, anchors * cells((160, 160)), 6), np.float32)
    path = write_model(tmp_path / "m.onnx", output, names={0: "duck"}, input_shape=(1, 3, 160, 160))
    assert Detector(path).layout == layout


def test_a_forced_layout_and_a_class_map(tmp_path):
    path = write_model(tmp_path / "m.onnx", yolov8_output(), names=NAMES)
    detector = Detector(path, layout="yolov8", class_map={"duck": "rubber_duck", "cup": None})
    result = detector(IMAGE)
    assert result.class_names == ["rubber_duck"]  # renamed; cup filtered out


def test_names_from_a_labels_file(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    detector = Detector(write_model(tmp_path / "m.onnx", yolov8_output()), labels_file=labels)
    assert detector.class_names == ["a", "b", "c"] and "c" in detector(IMAGE).class_names


@pytest.mark.parametrize(
    ("image_hw", "input_hw"), [((480, 640), (320, 320)), ((480, 640), (384, 640)), ((300, 200), (320, 256))]
)
@pytest.mark.parametrize("centre", [True, False])
def test_letterbox_round_trip(image_hw, input_hw, centre):
    """A box drawn at known pixels is found in the network input and maps back to those pixels."""
    image = np.zeros((*image_hw, 3), np.uint8)
    box = (40, 60, 120, 140)  # x1, y1, x2, y2
    image[box[1] : box[3], box[0] : box[2]] = 255
    tensor, transform = letterbox(image, input_hw, centre=centre, bgr=False, unit_scale=True)
    assert tensor.shape == (1, 3, *input_hw) and tensor.dtype == np.float32
    rows, cols = np.nonzero(tensor[0, 0] > 0.99)
    found = np.array([[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]], np.float32)
    np.testing.assert_allclose(transform.to_image(found)[0], box, atol=1.0 / transform.scale_x + 0.5)
    assert tensor[0, 0, 0, 0] == pytest.approx(114 / 255) or not centre or transform.top == 0


@pytest.mark.parametrize(("image_hw", "input_hw"), [((480, 640), (480, 640)), ((300, 200), (320, 256))])
@pytest.mark.parametrize(("centre", "bgr", "unit_scale"), [(True, False, True), (False, True, False)])
def test_letterbox_tensor_is_opencvs_blob_bit_for_bit(image_hw, input_hw, centre, bgr, unit_scale):
    """Our one-pass tensor equals cv2.dnn.blobFromImage of the same canvas, the reference it replaced."""
    image = np.random.default_rng(0).integers(0, 256, (*image_hw, 3), np.uint8)
    tensor, transform = letterbox(image, input_hw, centre=centre, bgr=bgr, unit_scale=unit_scale)
    to_pixels = round if centre else int  # as letterbox sizes Ultralytics' and YOLOX's resizes
    new_w, new_h = to_pixels(image_hw[1] * transform.scale_x), to_pixels(image_hw[0] * transform.scale_y)
    resized = image if (new_w, new_h) == image_hw[::-1] else cv2.resize(image, (new_w, new_h))
    canvas = np.full((*input_hw, 3), 114, np.uint8)
    canvas[transform.top : transform.top + new_h, transform.left : transform.left + new_w] = resized
    blob = cv2.dnn.blobFromImage(canvas, scalefactor=1 / 255 if unit_scale else 1.0, swapRB=bgr)
    assert tensor.dtype == blob.dtype and tensor.shape == blob.shape
    assert np.array_equal(tensor, blob)


@pytest.mark.parametrize(
    ("imgsz", "asked", "expected"),
    [
        (None, None, (640, 640)),  # Ultralytics' default
        ("[480, 640]", None, (480, 640)),  # ours (JSON), and Ultralytics' str(list)
        ("320", None, (320, 320)),
        ("[480, 640]", (608, 800), (608, 800)),  # asked for: a larger input finds smaller objects
    ],
)
def test_a_dynamic_input_runs_at_the_size_its_metadata_names_or_the_one_asked(
    tmp_path, imgsz, asked, expected
):
    metadata = {"imgsz": imgsz} if imgsz else None
    path = write_model(
        tmp_path / "m.onnx", end2end_output(), input_shape=(1, 3, "height", "width"), metadata=metadata
    )
    detector = Detector(path, input_size=asked)
    assert detector.input_hw == expected
    assert len(detector(IMAGE)) > 0


def test_a_metadata_size_that_is_no_size_is_named(tmp_path):
    path = write_model(
        tmp_path / "m.onnx",
        end2end_output(),
        input_shape=(1, 3, "height", "width"),
        metadata={"imgsz": "big"},
    )
    with pytest.raises(DetectorError, match=r"m.onnx: its metadata imgsz 'big' is not a size"):
        Detector(path)


@pytest.mark.parametrize(
    ("make_file", "message"),
    [
        (lambda p: p, r"model .*missing.onnx: no such file"),
        (lambda p: (p.write_bytes(b"not onnx"), p)[1], r"onnxruntime cannot load it"),
        (
            lambda p: write_model(p, yolov8_output(), input_shape=(1, 1, SIZE, SIZE)),
            r"expected one image input of shape 1 x 3 x H x W \(float\) or 1 x H x W x 3 \(uint8\), "
            r"found images \[1, 1, 320, 320\] tensor\(float\)",
        ),
        (
            lambda p: write_model(p, np.zeros((1, 7, 7), np.float32)),
            r"no decoder fits its output shapes \[\[1, 7, 7\]\] for input \[320, 320\]; supported: yolov8",
        ),
    ],
)
def test_bad_models_get_errors_that_name_file_and_shapes(tmp_path, make_file, message):
    path = make_file(tmp_path / "missing.onnx")
    with pytest.raises(DetectorError, match=message):
        Detector(path)


def test_an_unavailable_provider_is_named(tmp_path):
    path = write_model(tmp_path / "m.onnx", yolov8_output())
    with pytest.raises(
        DetectorError,
        match=r"provider 'tensorrt' \(TensorrtExecutionProvider\) is not in this onnxruntime build; available: .*CPUExecutionProvider",
    ):
        Detector(path, provider="tensorrt")


def test_the_detector_node_stamps_detections_like_their_image(tmp_path, registry, context, spawn):
    from conftest import send_until, spin_until

    from perception import Node
    from perception.msgs import Detections, DetectorStats, Header, Image

    model = write_model(tmp_path / "m.onnx", yolov8_output(), names=NAMES)
    detector = spawn("run", "perception.nodes.detector:DetectorNode", "-p", f"model:={model}")
    detections: list[Detections] = []
    stats: list[DetectorStats] = []
    with Node("camera", context=context) as node:
        node.create_subscription(Detections, "/detections", detections.append)
        node.create_subscription(DetectorStats, "/detector/stats", stats.append)
        images = node.create_publisher(Image, "/image")
        spin_until(node, lambda: images.subscriber_count, timeout_s=20, what="the detector")
        send_until(
            node,
            lambda: images.publish(
                Image(header=Header(stamp=1234, frame_id="cam", seq=7), data=IMAGE.copy())
            ),
            lambda: detections,
            what="detections",
        )
        first = detections[0]
        assert (first.header.stamp, first.header.frame_id, first.header.seq) == (1234, "cam", 7)
        assert first.class_names == ["duck", "cup"]
        np.testing.assert_allclose(first.xyxy[0], TRUE_BOX, atol=0.5)
        # An image it cannot use is refused without stopping the node; the next one is detected.
        images.publish(Image(header=Header(seq=8), data=np.zeros((4, 4), np.float32), encoding="32FC1"))
        settled = time.monotonic() + 0.5  # taken before the next: the node keeps only the newest waiting
        while time.monotonic() < settled:
            node.spin_once(0.05)
        images.publish(Image(header=Header(seq=9), data=IMAGE[..., ::-1].copy(), encoding="bgr8"))
        spin_until(node, lambda: detections[-1].header.seq == 9, what="the bgr8 frame's detections")
        np.testing.assert_allclose(detections[-1].xyxy[0], TRUE_BOX, atol=0.5)
        # A ZED's bgra8, as the ROS 2 bridge and bag convert pass it on.
        rgba = np.dstack([IMAGE, np.full(IMAGE.shape[:2], 255, np.uint8)])
        images.publish(Image(header=Header(seq=10), data=rgba, encoding="rgba8"))
        spin_until(node, lambda: detections[-1].header.seq == 10, what="the rgba8 frame's detections")
        np.testing.assert_allclose(detections[-1].xyxy[0], TRUE_BOX, atol=0.5)
        periods = len(stats)
        spin_until(node, lambda: len(stats) > periods + 1, what="a stats period after the refusal")
        busy = next(s for s in stats if s.frames_per_s > 0)
        assert busy.inference_ms > 0 and busy.model == model
    detector.terminate()
    log = detector.communicate(timeout=30)[0]
    assert "Traceback" not in log, log
    assert (
        "image encoding '32FC1' on /image cannot be detected on; expected rgb8, bgr8, rgba8, mono8 "
        "(left out and counted)" in log
    ), log
    assert "left out 1 images of an encoding other than rgb8, bgr8, rgba8, mono8 (1 in all)" in log


@pytest.mark.parametrize(
    ("predicted", "name", "expected"),
    [
        # The exact box: perfect at every IoU threshold.
        ((10, 10, 50, 50), "cube", (1.0, 1.0)),
        # Shifted 5 px right and down: IoU = 35*35 / (2*1600 - 35*35) = 0.63, which passes the 0.50,
        # 0.55 and 0.60 thresholds of the ten from 0.50 to 0.95: mAP@0.5 1, mAP@0.5:0.95 0.3.
        ((15, 15, 55, 55), "cube", (1.0, 0.3)),
        # Right place, wrong class; and a class name we do not know: nothing to score.
        ((10, 10, 50, 50), "duck", (0.0, 0.0)),
        ((10, 10, 50, 50), "person", (0.0, 0.0)),
    ],
)
def test_coco_map_on_a_hand_checked_case(predicted, name, expected):
    from perception.bench.detect import coco_map
    from perception.msgs import Detections, Header

    truth = [[{"class_id": 0, "xyxy": [10.0, 10.0, 50.0, 50.0]}]]
    prediction = Detections(
        Header(), np.array([predicted], np.float32), np.array([0.9]), np.array([0]), [name]
    )
    assert coco_map(truth, [prediction]) == pytest.approx(expected, abs=1e-3)


def test_coco_map_ignores_detections_on_dont_care_regions():
    from perception.bench.detect import coco_map
    from perception.msgs import Detections, Header

    truth = [
        [
            {"class_id": 0, "xyxy": [10.0, 10.0, 50.0, 50.0]},
            {"class_id": 0, "xyxy": [100.0, 100.0, 103.0, 104.0], "ignore": True},  # a sliver
        ]
    ]
    boxes = np.array([[100, 100, 103, 104], [10, 10, 50, 50]], np.float32)  # the sliver scores higher
    prediction = Detections(Header(), boxes, np.array([0.9, 0.8]), np.array([0, 0]), ["cube", "cube"])
    assert coco_map(truth, [prediction]) == pytest.approx((1.0, 1.0))
    truth[0][1]["ignore"] = False  # the same sliver, labelled: missing it now costs
    assert coco_map(truth, [Detections(Header(), boxes[1:], np.array([0.8]), np.array([0]), ["cube"])])[0] < 1


def test_bench_detect_json_contract(tmp_path):
    import json

    from conftest import percept

    model = write_model(tmp_path / "m.onnx", yolov8_output(), names=NAMES)
    result = percept(
        "bench",
        "detect",
        "--model",
        model,
        "--model",
        model,
        "--scene",
        "tabletop",
        "--frames",
        "2",
        "--json",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["models"]) == 2 and report["ground_truth_boxes"] > 0
    for row in report["models"]:
        assert row["model"] == model and row["latency_p50_ms"] > 0 and row["fps"] > 0
        assert 0.0 <= row["map50"] <= 1.0 and 0.0 <= row["map50_95"] <= row["map50"]
    # Side by side: how many times as fast the first model is as each other, from this run's p50s.
    first, second = report["models"]
    (speedup,) = report["speedups"]
    assert speedup["model"] == model
    assert speedup["times_as_fast"] == pytest.approx(
        second["latency_p50_ms"] / first["latency_p50_ms"], abs=0.01
    )
    assert f"{model} against the others, p50 of the whole call in this run: " in result.stdout


def test_the_sim_detect_launch_file_runs_a_users_model(tmp_path, registry):
    from conftest import percept, status_rates

    model = write_model(tmp_path / "m.onnx", yolov8_output(), names=NAMES)
    result = percept(
        "launch",
        "sim_detect",
        f"model:={model}",
        "--duration",
        "8",
        "--status-period",
        "4",
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{model}: yolov8 layout, input (320, 320), 3 classes" in result.stdout
    # It keeps up with the camera: as many detections as frames in a status period, give or take the
    # frames in flight. (The simulator runs at nice 19, so on busy cores it renders under its 10 frames/s.)
    detections = status_rates(result.stdout, "/detector", "/detections")
    frames = status_rates(result.stdout, "/sim", "/camera/image")
    assert detections and len(detections) == len(frames), result.stdout
    assert max(d / f for d, f in zip(detections, frames, strict=True) if f > 0) >= 0.8, result.stdout


def candidates(rows):
    """(x1, y1, x2, y2, score, class) rows -> the decoders' (boxes, scores, class ids)."""
    array = np.asarray(rows, np.float64).reshape(-1, 6)
    return array[:, :4].astype(np.float32), array[:, 4].astype(np.float32), array[:, 5].astype(np.int64)


def test_each_pass_answers_for_the_sizes_it_sees_best():
    base = candidates([(0, 0, 100, 60, 0.9, 8), (300, 200, 304, 210, 0.3, 9)])  # a near car, a far person
    zoomed = candidates(
        [
            (1, 1, 99, 58, 0.8, 8),  # the near car again: the first pass's box stays
            (300, 201, 303, 209, 0.6, 9),  # the far person, tighter and surer
            (500, 220, 506, 232, 0.7, 10),  # a cone the first pass missed
        ]
    )
    boxes, scores, class_ids = merge_by_size(base, zoomed, max_side=24)
    assert class_ids.tolist() == [8, 10, 9]  # best first
    np.testing.assert_allclose(boxes[0], (0, 0, 100, 60))
    np.testing.assert_allclose(boxes[2], (300, 201, 303, 209))
    assert scores.tolist() == pytest.approx([0.9, 0.7, 0.6])


def test_a_small_box_inside_a_large_one_is_dropped_only_for_the_same_class():
    base = candidates([(100, 100, 130, 130, 0.9, 8)])  # short side 30: large
    zoomed = candidates([(102, 102, 122, 128, 0.8, 8), (102, 102, 122, 128, 0.5, 9)])  # short side 20
    _, _, class_ids = merge_by_size(base, zoomed, max_side=24)
    assert class_ids.tolist() == [8, 9]
    empty = candidates([])
    assert len(merge_by_size(empty, empty, max_side=24)[0]) == 0
    assert merge_by_size(empty, zoomed, max_side=24)[2].tolist() == [8, 9]


def test_a_small_object_pass_runs_the_model_again_on_the_frame_scaled_up(tmp_path):
    output = np.zeros((1, 100, 6), np.float32)
    output[0, 0] = (20, 60, 220, 180, 0.9, 8)  # in input pixels: large at any scale
    output[0, 1] = (100, 100, 108, 106, 0.8, 10)  # small
    path = write_model(
        tmp_path / "m.onnx", output, input_shape=(1, 3, "height", "width"), metadata={"imgsz": "[320, 320]"}
    )
    one = Detector(path)(IMAGE)
    zoomed = Detector(path, small_object_zoom=2, small_object_side=24)
    two = zoomed(IMAGE)
    np.testing.assert_allclose(two.xyxy[0], one.xyxy[0])  # the large box from the first pass
    # the small one from the second, run at 480 x 640, where input pixels are half as many image pixels
    np.testing.assert_allclose(two.xyxy[1], (50, 50, 54, 53), atol=0.01)
    assert zoomed.timings_ms["inference"] > 0


def test_a_small_object_pass_over_a_band_of_rows(tmp_path):
    output = np.zeros((1, 100, 6), np.float32)
    output[0, 0] = (100, 100, 108, 106, 0.8, 10)  # small; at (100, 60, 108, 66) in the first pass
    path = write_model(
        tmp_path / "m.onnx", output, input_shape=(1, 3, "height", "width"), metadata={"imgsz": "[320, 320]"}
    )
    detector = Detector(path, small_object_zoom=2, small_object_rows=(40, 200))
    result = detector(IMAGE)
    # Rows 40-200 of the 240 x 320 image, scaled by 2: 320 x 640; its boxes come back below row 40.
    assert list(detector._small_object_sessions) == [(320, 640)]
    np.testing.assert_allclose(result.xyxy, [(50, 90, 54, 93)], atol=0.01)


def test_outside_the_band_the_first_pass_answers_for_every_size():
    base = candidates([(10, 5, 14, 15, 0.5, 9), (10, 50, 14, 60, 0.5, 9)])  # above the band; inside it
    zoomed = candidates([(30, 40, 34, 45, 0.9, 10), (30, 50, 34, 55, 0.8, 10)])  # cut by its edge; inside
    boxes, _, _ = merge_by_size(base, zoomed, max_side=24, rows=(41, 99))  # a band of rows 40-100
    np.testing.assert_allclose(boxes, [(30, 50, 34, 55), (10, 5, 14, 15)])


def test_the_detector_node_takes_sizes_as_lists(tmp_path):
    from perception.msgs import Detections, Header, Image
    from perception.nodes.detector import DetectorNode
    from perception.runtime.harness import NodeHarness

    output = np.zeros((1, 100, 6), np.float32)
    output[0, 0] = (100, 100, 108, 106, 0.8, 2)  # small: from the second pass
    path = write_model(
        tmp_path / "m.onnx",
        output,
        names=NAMES,
        input_shape=(1, 3, "height", "width"),
        metadata={"imgsz": "[320, 320]"},
    )
    parameters = {"model": str(path), "input_size": [320], "small_object_zoom": 2}
    with NodeHarness(DetectorNode, parameters=parameters) as harness:
        harness.feed("/image", Image(header=Header(seq=1), data=IMAGE.copy()))
        (detections,) = harness.published("/detections", Detections)
    np.testing.assert_allclose(detections.xyxy, [(50, 50, 54, 53)], atol=0.01)


def test_the_detector_node_says_small_object_rows_without_a_zoom_are_unused(tmp_path, caplog):
    import logging

    from perception.nodes.detector import DetectorNode
    from perception.runtime.harness import NodeHarness

    path = write_model(tmp_path / "m.onnx", end2end_output(), input_shape=(1, 3, "height", "width"))
    with (
        caplog.at_level(logging.WARNING),
        NodeHarness(DetectorNode, parameters={"model": str(path), "small_object_rows": [192, 336]}),
    ):
        pass
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "small_object_rows [192, 336] are unused: they are the rows of the small-object pass, and "
        "small_object_zoom is 0 (no such pass)"
    ]


@pytest.mark.parametrize("rows", [(200, 100), (-10, 100)])
def test_a_small_object_band_must_be_rows_of_the_image(tmp_path, rows):
    path = write_model(tmp_path / "m.onnx", end2end_output(), input_shape=(1, 3, "height", "width"))
    with pytest.raises(DetectorError, match=r"small_object_rows: expected .* 0 <= top < bottom, found \("):
        Detector(path, small_object_zoom=2, small_object_rows=rows)
    for every_row in ([], ()):  # the node's parameter says []: all of them
        assert Detector(path, small_object_zoom=2, small_object_rows=every_row).small_object_rows is None


def test_a_small_object_pass_needs_a_model_of_dynamic_size(tmp_path):
    path = write_model(tmp_path / "m.onnx", end2end_output())
    with pytest.raises(DetectorError, match=r"a small-object pass \(zoom 2\) needs an input of dynamic size"):
        Detector(path, small_object_zoom=2)


def test_thresholds_out_of_range_are_refused_and_change_nothing(tmp_path):
    detector = Detector(write_model(tmp_path / "m.onnx", yolov8_output(), names=NAMES))
    for change, message in (
        ({"iou": -0.1}, "iou: expected an overlap from 0 to 1, found -0.1"),
        ({"confidence": 1.5}, "confidence: expected a score from 0 to 1, found 1.5"),
        ({"max_detections": 0}, "max_detections: expected a whole number, at least 1, found 0"),
        ({"max_detections": 2.5}, "max_detections: expected a whole number, at least 1, found 2.5"),
    ):
        with pytest.raises(DetectorError, match=re.escape(message)):
            detector.retune(**change)
    assert (detector.confidence, detector.iou, detector.max_detections) == (0.25, 0.45, 300)
    detector.retune(iou=0.6)
    assert detector.iou == 0.6
    with pytest.raises(DetectorError, match="iou: expected"):
        Detector(tmp_path / "m.onnx", iou=7)


def test_exports_users_bring_fp16_ids_with_gaps_other_tasks_and_fixed_batches(tmp_path):
    half = Detector(write_model(tmp_path / "half.onnx", yolov8_output(), names=NAMES, half=True))
    assert half(np.zeros((SIZE, SIZE, 3), np.uint8)).class_names == ["duck", "cup"]
    gaps = Detector(write_model(tmp_path / "gaps.onnx", yolov8_output(), names={0: "person", 2: "duck"}))
    assert gaps.class_names == ["person", "1", "duck"]  # id 2 keeps its own name
    with pytest.raises(DetectorError, match=r"an Ultralytics 'pose' model; expected a detection model"):
        Detector(write_model(tmp_path / "pose.onnx", yolov8_output(), names=NAMES, metadata={"task": "pose"}))
    with pytest.raises(DetectorError, match=r"fixed at a batch of 2; expected 1 or a dynamic batch"):
        Detector(write_model(tmp_path / "b2.onnx", yolov8_output(), input_shape=(2, 3, SIZE, SIZE)))
    with pytest.raises(DetectorError, match=r"metadata names .* are not a list or a map of class names"):
        Detector(write_model(tmp_path / "bad.onnx", yolov8_output(), names="{0: 'person'"))


def test_grey_and_rgba_images_are_converted_and_an_end2end_model_keeps_max_detections(tmp_path):
    detector = Detector(write_model(tmp_path / "m.onnx", yolov8_output(), names=NAMES))
    rgb = detector(np.zeros((SIZE, SIZE, 3), np.uint8))
    for image in (np.zeros((SIZE, SIZE), np.uint8), np.zeros((SIZE, SIZE, 4), np.uint8)):
        np.testing.assert_allclose(detector(image).xyxy, rgb.xyxy)
    rows = np.zeros((1, 300, 6), np.float32)
    rows[0, :, :4] = [10, 10, 50, 50]
    rows[0, :, 4] = np.linspace(0.9, 0.3, 300)
    end2end = Detector(write_model(tmp_path / "e2e.onnx", rows, names=NAMES), max_detections=5)
    assert end2end.layout == "end2end" and len(end2end(np.zeros((SIZE, SIZE, 3), np.uint8))) == 5


def test_an_empty_frame_or_a_list_is_one_clear_error(tmp_path):
    """A camera's empty frame raised ZeroDivisionError, a list AttributeError (the node counts either as
    a callback error and goes on; a script gets the reason)."""
    detector = Detector(write_model(tmp_path / "m.onnx", yolov8_output(), names=NAMES))
    for image, message in (
        (
            np.zeros((0, 0, 3), np.uint8),
            r"expected an image of at least 1 x 1 pixels, found shape \(0, 0, 3\)",
        ),
        (np.zeros((0, 5), np.uint8), "at least 1 x 1 pixels"),
        ([[0, 0], [0, 0]], "expected an RGB uint8 image as a numpy array, found list"),
        (np.zeros((SIZE, SIZE, 3), np.float32), "expected an H x W x 3 uint8 RGB image"),
    ):
        with pytest.raises(ValueError, match=message):
            detector(image)


def test_a_model_row_with_a_nan_box_is_left_out_and_counted_and_the_others_kept(tmp_path):
    """A NaN box (a foreign export's output) made the Detections message refuse the whole frame."""
    output = yolov8_output()
    clean = Detector(write_model(tmp_path / "clean.onnx", output, names=NAMES))(
        np.zeros((SIZE, SIZE, 3), np.uint8)
    )
    best = int(np.argmax(output[0, 4:, :].max(axis=0)))
    output[0, :4, best] = np.nan
    detector = Detector(write_model(tmp_path / "nan.onnx", output, names=NAMES))
    found = detector(np.zeros((SIZE, SIZE, 3), np.uint8))
    assert detector.invalid_detections == 1 and len(found) == len(clean) == 2  # the next duck box stays
    assert np.isfinite(found.xyxy).all() and found.class_names == clean.class_names


def test_bench_detect_scores_a_coco_model_through_the_class_map_and_names_a_model_that_failed(tmp_path):
    import json

    from conftest import percept

    from perception.bench.class_maps import COCO

    coco_names = ["person", "bicycle", "car", "cup", "teddy bear", "sports ball", "dog"]
    model = write_model(tmp_path / "coco.onnx", yolov8_output(len(coco_names)), names=coco_names)
    broken = tmp_path / "broken.onnx"  # a file onnxruntime cannot load: its row says so, the other runs
    broken.write_bytes(b"not a model")
    result = percept(
        "bench",
        "detect",
        "--model",
        model,
        "--model",
        str(broken),
        "--scene",
        "tabletop",
        "--frames",
        "2",
        "--class-map",
        "coco",
        "--json",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    scored, failed = report["models"]
    assert failed["failed"].startswith(f"model {broken}: onnxruntime cannot load it")
    assert "failed: model" in result.stdout
    evaluation = scored["evaluation"]
    # Through the coco map it can produce mug, teddy and soccerball on the tabletop (and car and
    # pedestrian, which the tabletop never shows); the rest of the table is not covered, not zero.
    present = {c["name"] for c in evaluation["classes"]} | set(evaluation["not_covered"])
    assert {c["name"] for c in evaluation["classes"]} <= {COCO[n] for n in coco_names if n in COCO}
    assert {"cube", "lego", "jenga"} & present <= set(evaluation["not_covered"])
    assert set(evaluation["errors_dap"]) == {
        "classification",
        "localisation",
        "both",
        "duplicate",
        "background",
        "missed",
    }
    assert "per class" in result.stdout and "not covered (left out of the means)" in result.stdout


def test_bench_detect_refuses_a_map_key_no_model_names_and_rows_without_a_zoom(tmp_path):
    """One map serves every model, each taking the names it has, so a mistyped key only showed as a
    class not covered, after the whole run; rows without a zoom were ignored. Both are refused first."""
    from conftest import percept

    coco_names = ["person", "bicycle", "car"]
    model = write_model(tmp_path / "coco.onnx", yolov8_output(), names=coco_names)
    mapping = tmp_path / "map.yaml"
    mapping.write_text("persn: pedestrian\ncar: car\n")
    result = percept(
        "bench",
        "detect",
        "--model",
        model,
        "--scene",
        "tabletop",
        "--frames",
        "2",
        "--class-map",
        str(mapping),
        timeout=120,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"class map {mapping}: 'persn' names no class of the models benchmarked; did you mean person?"
        )
    )
    result = percept("bench", "detect", "--model", model, "--frames", "2", "--small-object-rows", "100,200")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "--small-object-rows 100,200: expected with --small-object-zoom (the rows its second pass covers), "
            "found no zoom"
        )
    )


def test_bench_detect_without_a_model_times_the_shipped_one_as_the_other_benchmarks_do():
    """`percept bench track`, `grasp` and `graph` default to the shipped detector; `detect` refused to
    run without --model."""
    import json

    from conftest import percept

    from perception.installed import SHIPPED_MODEL

    result = percept("bench", "detect", "--frames", "2", "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout.strip().splitlines()[-1])["models"]
    assert row["model"] == SHIPPED_MODEL and row["layout"] == "end2end" and row["fps"] > 0


def test_bench_detect_times_each_model_on_each_provider_and_names_one_this_build_lacks(tmp_path):
    import json

    from conftest import percept

    model = write_model(tmp_path / "m.onnx", yolov8_output(), names=NAMES)
    result = percept(
        "bench", "detect", "--model", model, "--providers", "cpu,tensorrt", "--frames", "2", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    cpu, tensorrt = report["models"]
    assert cpu["model"] == f"{model} [cpu]" and cpu["provider"] == "CPUExecutionProvider"
    assert cpu["file_mb"] > 0 and cpu["memory_mb"] >= 0 and cpu["fps"] > 0
    for stage in ("preprocess", "inference", "postprocess"):  # p50 and p95 per stage, as yolo benchmark
        assert 0 <= cpu[f"{stage}_p50_ms"] <= cpu[f"{stage}_p95_ms"]
    assert tensorrt["failed"].startswith(
        "provider 'tensorrt' (TensorrtExecutionProvider) is not in this onnxruntime build"
    )
    assert "CPUExecutionProvider" in report["settings"]["providers_available"]


def test_cross_class_suppression_keeps_the_best_name_of_one_box_and_touching_objects_of_two_classes():
    from perception.detector.decoders import suppress_across_classes

    boxes = np.array(
        [[10, 10, 50, 50], [10, 10, 50, 50], [11, 10, 51, 50], [40, 10, 80, 50], [200, 200, 220, 220]],
        np.float32,
    )
    scores = np.array([0.28, 0.9, 0.3, 0.8, 0.5], np.float32)
    class_ids = np.array([1, 2, 3, 4, 1])  # a mug (2) also seen as a cylinder (1) and a duck (3)
    kept_boxes, kept_scores, kept_ids = suppress_across_classes((boxes, scores, class_ids), 0.7, 0.25)
    assert kept_ids.tolist() == [2, 4, 1] and kept_scores.tolist() == pytest.approx([0.9, 0.8, 0.5])
    assert kept_boxes[1].tolist() == [40, 10, 80, 50]  # IoU 0.14 with the mug: another object
    # At a low threshold (scoring mAP) the other names stay, demoted as Soft-NMS demotes: exp(-IoU^2/0.5).
    _, low_scores, low_ids = suppress_across_classes((boxes, scores, class_ids), 0.7, 0.001)
    assert low_ids.tolist() == [2, 4, 1, 3, 1]
    duck_iou = 39 * 40 / (41 * 40)
    assert low_scores.tolist() == pytest.approx(
        [0.9, 0.8, 0.5, 0.3 * math.exp(-(duck_iou**2) / 0.5), 0.28 * math.exp(-1 / 0.5)], rel=1e-5
    )
    assert [a.tolist() for a in suppress_across_classes((boxes, scores, class_ids), 1.0, 0.25)] == [
        boxes.tolist(),
        scores.tolist(),
        class_ids.tolist(),
    ]


def test_cross_class_suppression_leaves_one_name_however_sure_the_model_was_of_both():
    """A pedestrian at 0.49 under a car at 0.53 overlapping it by IoU 0.55 (driving-standard, the model of
    2026-12-06): the Gaussian alone left it at 0.27, two names for one person at the default confidence."""
    from perception.detector.decoders import DEMOTED_CEILING, suppress_across_classes

    boxes = np.array([[340, 227, 350, 263], [340, 227, 350, 263]], np.float32)
    boxes[0, 2] += 8.2  # the car's box, wider: IoU 10 / 18.2 = 0.55 with the pedestrian's
    scores = np.array([0.53, 0.49], np.float32)
    class_ids = np.array([8, 9])
    assert math.exp(-(0.55**2) / 0.5) * 0.49 > 0.25
    _, kept_scores, kept_ids = suppress_across_classes((boxes, scores, class_ids), 0.5, 0.25)
    assert kept_ids.tolist() == [8] and kept_scores.tolist() == pytest.approx([0.53])
    # Scoring mAP, the pedestrian stays in the ranking, just under the default confidence.
    _, low_scores, low_ids = suppress_across_classes((boxes, scores, class_ids), 0.5, 0.001)
    assert low_ids.tolist() == [8, 9] and low_scores[1] == np.float32(DEMOTED_CEILING) < 0.25


# -- settings a library user can get wrong: each refused at construction, naming the setting -------------


def test_class_names_of_another_count_than_the_models_classes_are_refused(tmp_path):
    """Two names on a model of more classes came out as ['6', '6', 'a', '3', '2']."""
    yolov8 = write_model(tmp_path / "v8.onnx", yolov8_output())  # 4 + 3 channels: 3 classes
    with pytest.raises(
        DetectorError,
        match=r"^class_names: expected 3 names, one per class of model .*v8.onnx in id order "
        r"\(its output is 1 x 7 x 50\), found 2$",
    ):
        Detector(yolov8, class_names=["a", "b"])
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\n")
    with pytest.raises(DetectorError, match=rf"^labels file {labels}: expected 3 names, .* found 4$"):
        Detector(yolov8, labels_file=labels)
    # end2end's rows hold a class id: the count comes from the metadata where it names the classes.
    named = write_model(tmp_path / "e2e.onnx", end2end_output(), names=NAMES)
    with pytest.raises(DetectorError, match=r"expected 3 names, .*\(its metadata names that many\), found 2"):
        Detector(named, class_names=["a", "b"])
    unnamed = write_model(tmp_path / "bare.onnx", end2end_output())  # nothing tells its count
    assert Detector(unnamed, class_names=["a", "b", "c"]).class_names == ["a", "b", "c"]
    with pytest.raises(DetectorError, match=r"^class_names: expected a list of names, .* found 'cube'$"):
        Detector(unnamed, class_names="cube")
    with pytest.raises(DetectorError, match=r"^class_names and labels_file .*: expected one of them"):
        Detector(yolov8, class_names=["a", "b", "c"], labels_file=labels)
    # A model without names metadata calls its classes by their ids, as its detections do.
    assert Detector(yolov8).class_names == ["0", "1", "2"]
    # Metadata naming another count than the output holds (left from another model) is refused too,
    # unless names are given.
    stale = write_model(tmp_path / "stale.onnx", yolov8_output(), names=[*NAMES, "car"])
    with pytest.raises(
        DetectorError,
        match=r"^model .*stale.onnx: expected its metadata to name 3 classes, one per class \(its output is "
        r"1 x 7 x 50\), found 4; give class_names or labels_file",
    ):
        Detector(stale)
    assert Detector(stale, class_names=["a", "b", "c"]).class_names == ["a", "b", "c"]


def test_a_class_map_key_that_names_no_class_of_the_model_is_refused(tmp_path):
    path = write_model(tmp_path / "m.onnx", yolov8_output(), names=NAMES)
    with pytest.raises(
        DetectorError,
        match=r"^class_map: 'duk' is not a class of model .*m.onnx; its classes: person, cup, duck; "
        r"did you mean duck\?$",
    ):
        Detector(path, class_map={"duk": "rubber_duck"})
    with pytest.raises(DetectorError, match=r"^class_map: 'duck' maps to 3; expected a class name, or None"):
        Detector(path, class_map={"duck": 3})
    with pytest.raises(DetectorError, match=r"^class_map: expected class names as keys, found 2$"):
        Detector(path, class_map={2: "rubber_duck"})


def test_the_benchmarks_one_class_map_for_every_model_gives_each_the_names_it_has(tmp_path):
    """`bench detect --model ours --model coco --class-map coco`: the COCO map's other names are no typo
    for a model that lacks them."""
    from perception.bench.class_maps import COCO
    from perception.bench.detect import ModelSpec

    path = write_model(tmp_path / "m.onnx", yolov8_output(), names=NAMES)
    detector = ModelSpec(path, "cpu", tuple(COCO.items())).detector(threads=1, confidence=0.25)
    assert detector.class_map == {"person": "pedestrian", "cup": "mug"}
    assert detector(IMAGE).class_names == ["duck", "mug"]


# A forced layout, and an output of another layout that it must not decode (a row per layout).
MISFITS = {
    "yolov8": end2end_output,  # 1 x 300 x 6: 300 channels, 6 anchors
    "yolov5": end2end_output,
    "yolox": end2end_output,
    "yolox_decoded": end2end_output,
    "end2end": yolov8_output,  # 1 x 7 x 50: rows of 50
    "rtdetr": end2end_output,  # boxes in pixels, not fractions of the input
}


def test_every_layout_has_a_misfit_here():
    assert set(MISFITS) == set(LAYOUTS)


@pytest.mark.parametrize("layout", sorted(MISFITS))
def test_a_forced_layout_the_output_does_not_fit_is_refused_at_load(tmp_path, layout):
    """YOLOv8's decoder on our end2end output scored boxes 640 and named classes '43' and '17'."""
    output = MISFITS[layout]()
    path = write_model(tmp_path / "m.onnx", output, names=NAMES)
    shape = re.escape(str([list(output.shape)]))
    with pytest.raises(
        DetectorError,
        match=rf"^model .*m.onnx: layout '{layout}' does not fit its output shapes {shape} for input "
        r"\[320, 320\]; supported: yolov8 1x\(4\+nc\)xN, .* \(layout=auto finds one\)$",
    ):
        Detector(path, layout=layout)


def test_a_forced_rtdetr_on_an_export_that_finds_nothing_on_a_blank_image_is_refused_at_its_first_frame(
    tmp_path,
):
    """Rows of 0 are fractions too: the boxes in pixels show only once something is found."""
    path = write_model(tmp_path / "m.onnx", end2end_output(), names=NAMES, blank_finds_nothing=True)
    detector = Detector(path, layout="rtdetr")
    with pytest.raises(
        DetectorError, match=r"layout 'rtdetr' does not fit its output shapes \[\[1, 300, 6\]\]"
    ):
        detector(np.full((240, 320, 3), 255, np.uint8))
    assert Detector(path).layout == "end2end"  # as recognised, it runs
    assert Detector(path)(np.full((240, 320, 3), 255, np.uint8)).class_names == ["duck", "cup"]


@pytest.mark.parametrize("size", [(0, 0), (-32, 64), (320.5, 320), (320,), "ab", (True, 320), 320])
def test_an_input_size_that_is_no_size_is_refused_naming_input_size(tmp_path, size):
    path = write_model(tmp_path / "m.onnx", end2end_output(), input_shape=(1, 3, "height", "width"))
    with pytest.raises(
        DetectorError,
        match=rf"^input_size: expected \(height, width\) in pixels, whole numbers of at least 1, found "
        rf"{re.escape(repr(size))}$",
    ):
        Detector(path, input_size=size)
    assert Detector(path, input_size=(np.int64(160), 192)).input_hw == (160, 192)


def test_an_input_size_a_fixed_model_does_not_take_is_refused_naming_input_size(tmp_path):
    path = write_model(tmp_path / "m.onnx", end2end_output())
    with pytest.raises(
        DetectorError, match=r"^input_size \[256, 320\]: model .*m.onnx takes a fixed input of \[320, 320\]"
    ):
        Detector(path, input_size=(256, 320))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"small_object_zoom": 0.5}, "small_object_zoom: expected 0 (no second pass) or above 1"),
        ({"small_object_zoom": 1}, "small_object_zoom: expected 0 (no second pass) or above 1"),
        ({"small_object_zoom": -2}, "small_object_zoom: expected 0 (no second pass) or above 1"),
        ({"small_object_zoom": math.nan}, "small_object_zoom: expected 0 (no second pass) or above 1"),
        ({"small_object_zoom": 2, "small_object_side": 0}, "small_object_side: expected a length in pixels"),
        ({"small_object_zoom": 2, "small_object_rows": (0.5, 9)}, "small_object_rows: expected image rows"),
        ({"threads": -1}, "threads: expected a whole number, 0 or more"),
        ({"threads": 1.5}, "threads: expected a whole number, 0 or more"),
        ({"confidence": "high"}, "confidence: expected a score from 0 to 1, found 'high'"),
        ({"iou": math.nan}, "iou: expected an overlap from 0 to 1, found nan"),
        ({"cross_class_iou": True}, "cross_class_iou: expected an overlap from 0 to 1"),
    ],
)
def test_a_setting_out_of_its_range_is_refused_at_construction_naming_the_range(tmp_path, setting, message):
    path = write_model(tmp_path / "m.onnx", end2end_output(), input_shape=(1, 3, "height", "width"))
    with pytest.raises(DetectorError, match="^" + re.escape(message)):
        Detector(path, **setting)


def test_a_small_object_zoom_below_1_is_named_before_the_models_fixed_size(tmp_path):
    with pytest.raises(DetectorError, match=r"^small_object_zoom: expected 0 \(no second pass\) or above 1"):
        Detector(write_model(tmp_path / "m.onnx", end2end_output()), small_object_zoom=0.5)


def test_retune_refuses_what_construction_refuses_and_changes_nothing(tmp_path):
    detector = Detector(write_model(tmp_path / "m.onnx", yolov8_output(), names=NAMES))
    with pytest.raises(DetectorError, match=r"^confidence: expected a score from 0 to 1, found 'high'$"):
        detector.retune(iou=0.6, confidence="high")
    assert (detector.confidence, detector.iou) == (0.25, 0.45)


def test_a_header_that_is_not_a_header_is_refused(tmp_path):
    from perception.msgs import Header

    detector = Detector(write_model(tmp_path / "m.onnx", yolov8_output(), names=NAMES))
    with pytest.raises(
        TypeError, match=r"^header: expected a perception.msgs.Header \(the frame's\) or None, found int$"
    ):
        detector(IMAGE, 123)
    assert detector(IMAGE, Header(stamp=5, frame_id="cam")).header == Header(stamp=5, frame_id="cam")
    assert detector(IMAGE).header == Header()
