"""The model we ship: its file and metadata, and that it finds the objects of scenes it never saw."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from perception.detector import Detector
from perception.detector.vocabulary import SHIPPED_CLASSES
from perception.errors import PerceptError
from perception.installed import DEFAULT_MODEL
from perception.track.tracker import iou_matrix
from sim.camera import CameraSpec
from sim.dataset import frame_boxes, rendered_frames

MODEL = DEFAULT_MODEL
FRESH_SEED = 4242  # never used for training (models/percept.md lists the training seeds)


def test_the_model_file_is_small_and_names_its_classes_and_input():
    assert MODEL.stat().st_size <= 10 * 2**20
    meta = {p.key: p.value for p in onnx.load(str(MODEL), load_external_data=False).metadata_props}
    assert json.loads(meta["names"]) == list(SHIPPED_CLASSES)
    assert json.loads(meta["imgsz"]) == [480, 640]
    detector = Detector(MODEL)
    assert detector.layout == "end2end" and detector.input_hw == (480, 640)
    assert detector.class_names == list(SHIPPED_CLASSES)


def test_the_launch_files_model_path_works_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # launch files say models/percept.onnx, relative to the checkout
    assert Detector("models/percept.onnx").path == MODEL.resolve()
    with pytest.raises(PerceptError, match=rf"models/other.onnx: no such file \(looked in {tmp_path} and "):
        Detector("models/other.onnx")


def test_an_input_size_too_small_for_the_model_is_blamed_on_input_size():
    """At 16 x 16 its top 100 of fewer cells fail inside onnxruntime, which named the model, not the size."""
    with pytest.raises(
        PerceptError, match=r"^input_size \[16, 16\]: model .*percept.onnx cannot run at this size .*TopK"
    ):
        Detector(MODEL, input_size=(16, 16))


INT8_MODEL = MODEL.with_name("percept-int8.onnx")


@pytest.mark.parametrize("model", [MODEL, INT8_MODEL], ids=["fp32", "int8"])
@pytest.mark.parametrize("scene", ["tabletop", "driving"])
def test_the_shipped_model_finds_the_objects_of_a_fresh_scene(scene, model):
    detector = Detector(model)
    found = total = 0
    for _, frame in rendered_frames(scene, FRESH_SEED, list(range(6)), CameraSpec(width=640, height=480)):
        result = detector(frame.rgb)
        for box in frame_boxes(frame, min_pixels=16):
            if box.get("ignore"):  # under 16 pixels: no label
                continue
            total += 1
            same_class = np.array(result.class_names) == SHIPPED_CLASSES[box["class_id"]]
            if same_class.any() and iou_matrix(np.array([box["xyxy"]]), result.xyxy[same_class]).max() >= 0.5:
                found += 1
    assert total >= 10
    assert found / total >= 0.8, f"found {found} of {total} {scene} objects at IoU >= 0.5"


def test_one_class_per_object_by_default_and_per_class_suppression_on_request():
    """The model's in-graph suppression is per class: one object comes out under two names with the
    same box. By default the best class alone is reported, and no object is lost for it."""
    frames = [f for _, f in rendered_frames("tabletop", FRESH_SEED, list(range(6)), CameraSpec(640, 480))]

    def duplicates_and_found(detector: Detector) -> tuple[int, int, int]:
        duplicates = found = total = 0
        for frame in frames:
            result = detector(frame.rgb)
            names = np.array(result.class_names)
            overlap = iou_matrix(result.xyxy, result.xyxy)
            different = names[:, None] != names[None, :]
            duplicates += int(np.triu(different & (overlap >= 0.5), 1).sum())
            for box in frame_boxes(frame, min_pixels=16):
                if box.get("ignore"):  # under 16 pixels: no label
                    continue
                total += 1
                same = names == SHIPPED_CLASSES[box["class_id"]]
                found += bool(
                    same.any() and iou_matrix(np.array([box["xyxy"]]), result.xyxy[same]).max() >= 0.5
                )
        return duplicates, found, total

    per_class = duplicates_and_found(Detector(MODEL, cross_class_iou=1.0))
    one_class = duplicates_and_found(Detector(MODEL))
    assert per_class[0] >= 1, per_class  # the problem, as the model alone has it (2 with today's weights)
    assert one_class[0] == 0, one_class
    assert one_class[1] >= 0.9 * one_class[2] and one_class[1] >= per_class[1] - 1, (per_class, one_class)
    with pytest.raises(PerceptError, match=r"cross_class_iou: expected an overlap from 0 to 1"):
        Detector(MODEL, cross_class_iou=1.5)


def test_export_int8_quantises_all_but_the_output_convolutions_and_keeps_the_names(tmp_path):
    from conftest import percept
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

    from perception.train.quantize import WEIGHT_RANGE

    out = tmp_path / "int8.onnx"
    result = percept("export", "--int8", "--out", str(out), "--calibration-frames", "4", timeout=180)
    assert result.returncode == 0, result.stderr
    assert "kept in float: /network/distances/Conv, /network/heatmap/Conv" in result.stdout
    assert "input: the uint8 frame, 1 x H x W x 3" in result.stdout
    model = onnx.load(str(out))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    image = model.graph.input[0].type.tensor_type
    assert image.elem_type == onnx.TensorProto.UINT8 and image.shape.dim[3].dim_value == 3
    producer = {output: node for node in model.graph.node for output in node.output}
    readers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    # The pyramid's sums run on int8 maps, the two output convolutions are one, and nothing
    # dequantises a map to read its shape.
    network_adds = [n for n in model.graph.node if n.op_type == "Add" and n.name.startswith("/network/")]
    assert network_adds and all(readers[n.output[0]] == ["QuantizeLinear"] for n in network_adds)
    assert [n.name for n in model.graph.node if n.op_type == "Split"] == [
        "/network/heatmap/Conv+/network/distances/Conv.split"
    ]
    assert not any(
        n.op_type == "Shape" and producer[n.input[0]].op_type == "DequantizeLinear" for n in model.graph.node
    )
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["names"]) == list(SHIPPED_CLASSES)
    assert (
        json.loads(meta["quantization"])["calibration"]
        == "4 frames of tabletop, driving rendered from seed 9100"
    )
    assert out.stat().st_size < MODEL.stat().st_size / 2
    # Weights on 7 bits, as onnxruntime's reduce_range spans them, in the export and the shipped file:
    # 8-bit weights saturate on CPUs without VNNI (driving mAP50 0.816 against fp32's 0.963 on AVX2).
    assert (
        tuple(int(q) for q in get_qmin_qmax_for_qType(onnx.TensorProto.INT8, reduce_range=True))
        == WEIGHT_RANGE
    )
    assert int8_weight_span(model) == WEIGHT_RANGE
    shipped_model = onnx.load(str(INT8_MODEL))
    low, high = int8_weight_span(shipped_model)
    assert WEIGHT_RANGE[0] <= low and high <= WEIGHT_RANGE[1], (low, high)
    shipped = {p.key: p.value for p in shipped_model.metadata_props}
    assert json.loads(shipped["quantization"])["from"] == "percept.onnx"
    assert percept("export", "--int8", "--out", str(tmp_path / "no" / "x.onnx")).returncode == 1


def int8_weight_span(model: onnx.ModelProto) -> tuple[int, int]:
    """The least and greatest of a quantised model's int8 weights."""
    from onnx import numpy_helper

    weights = [
        numpy_helper.to_array(w) for w in model.graph.initializer if w.data_type == onnx.TensorProto.INT8
    ]
    assert weights
    return min(int(w.min()) for w in weights), max(int(w.max()) for w in weights)


def test_the_int8_model_takes_the_frame_itself_at_any_size_and_in_a_second_pass():
    """It reads 1 x H x W x 3 uint8: its height and width are axes 1 and 2, for a size of the user's and
    for the small-object pass's zoomed band alike."""
    frame = next(iter(rendered_frames("driving", FRESH_SEED, [0], CameraSpec(640, 480))))[1].rgb
    frame.flags.writeable = False  # as a frame arrives from the bus
    plain = Detector(INT8_MODEL)(frame)
    assert len(plain.scores) > 0
    smaller = Detector(INT8_MODEL, input_size=(320, 416))
    assert smaller.session.get_inputs()[0].shape == [1, 320, 416, 3]
    assert len(smaller(frame).scores) > 0
    zoomed = Detector(INT8_MODEL, small_object_zoom=2.0, small_object_rows=(128, 384))
    assert len(zoomed(frame).scores) > 0
    (band,) = zoomed._small_object_sessions.values()
    assert band.get_inputs()[0].shape == [1, 512, 1280, 3]  # rows 128-384 and the width, twice over


def test_output_convolutions_are_the_last_convolutions_before_each_output():
    from onnx import TensorProto, helper

    from perception.train.quantize import output_convolutions

    def conv(name: str, source: str) -> object:
        return helper.make_node("Conv", [source, "w"], [name], name=name)

    nodes = [
        conv("stem", "x"),
        helper.make_node("Relu", ["stem"], ["r"], name="relu"),
        conv("scores", "r"),
        helper.make_node("Sigmoid", ["scores"], ["p"], name="sigmoid"),
        conv("boxes", "r"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("p", "boxes")],
    )
    assert output_convolutions(helper.make_model(graph)) == ["boxes", "scores"]


def test_bench_graph_runs_sim_and_detector_as_processes_and_reports_latency():
    from conftest import percept

    result = percept(
        "bench", "graph", "--scenes", "tabletop", "--rates", "5", "--seconds", "3", "--json", timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    (row,) = report["results"]
    assert row["scene"] == "tabletop" and row["rate"] == 5
    # At most the rate asked for; under it where busy cores starve the simulator (nice 19).
    assert 0 < row["camera_fps"] <= 7 and row["detections_fps"] > 0
    assert (
        0 < row["image_latency_p50_ms"] < row["detection_latency_p50_ms"] <= row["detection_latency_p95_ms"]
    )
    assert row["added_p50_ms"] == pytest.approx(
        row["detection_latency_p50_ms"] - row["image_latency_p50_ms"], abs=0.02
    )
    assert "added p50" in result.stdout and "keeps up" in result.stdout and "within" in result.stdout
    assert row["within_limit"] == (row["added_p50_ms"] <= row["limit_added_ms"])


def test_the_detection_demo_logs_what_the_detector_finds(registry):
    from conftest import percept

    result = percept("launch", "demo", "--duration", "12", "--status-period", "0", timeout=90)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if "/detections:" in line and "last frame:" in line]
    assert lines, result.stdout[-2000:]
    # The tabletop has five objects; the newest frame's report names some of them.
    assert any(name in lines[-1] for name in SHIPPED_CLASSES[:8]), lines[-1]
