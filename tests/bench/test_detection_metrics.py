"""Detection metrics on hand-made sets whose answers are known: per-class AP, precision and recall, the
TIDE-style error breakdown (each error in its bucket, with the AP it costs), class-map coverage."""

from __future__ import annotations

import numpy as np
import pytest

from perception.bench import detection_metrics as dm
from perception.bench.class_maps import COCO, covered, load_class_map
from perception.errors import PerceptError

CLASSES = ["cube", "mug", "cylinder"]


def box(name, x, y=10.0, size=40.0, ignore=False):
    return {"name": name, "xyxy": [x, y, x + size, y + size], "ignore": ignore}


def preds(*rows):
    """(xyxy, scores, names) of (name, x, score[, y, size]) rows."""
    xyxy = np.array(
        [
            [
                r[1],
                r[3] if len(r) > 3 else 10.0,
                r[1] + (r[4] if len(r) > 4 else 40.0),
                (r[3] if len(r) > 3 else 10.0) + (r[4] if len(r) > 4 else 40.0),
            ]
            for r in rows
        ],
        np.float32,
    ).reshape(-1, 4)
    return xyxy, np.array([r[2] for r in rows], np.float32), [r[0] for r in rows]


def evaluate(truth, predictions, classes=CLASSES, cover=None, confidence=0.25):
    return dm.evaluate(truth, predictions, classes, set(cover or classes), confidence)


def test_perfect_predictions_score_one_and_lose_nothing():
    truth = [[box("cube", 10), box("mug", 100)], [box("mug", 50)]]
    result = evaluate(truth, [preds(("cube", 10, 0.9), ("mug", 100, 0.8)), preds(("mug", 50, 0.7))])
    assert (result.map50, result.map50_95) == (1.0, 1.0)
    assert [(c.name, c.instances, c.precision, c.recall) for c in result.classes] == [
        ("cube", 1, 1.0, 1.0),
        ("mug", 2, 1.0, 1.0),
    ]
    assert set(result.errors_dap.values()) == {0.0} and set(result.error_counts.values()) == {0}


def test_a_box_off_its_object_is_a_localisation_error_and_costs_its_ap():
    truth = [[box("cube", 10)]]
    result = evaluate(truth, [preds(("cube", 35, 0.9))])  # IoU 15/65 of the width: 0.23
    assert result.error_counts["localisation"] == 1 and result.error_counts["missed"] == 0
    assert result.map50 == 0.0 and result.errors_dap["localisation"] == 100.0
    assert result.errors_dap["background"] == 0.0


def test_a_duplicate_costs_what_it_takes_from_the_curve():
    truth = [[box("cube", 10), box("cube", 200)]]
    result = evaluate(truth, [preds(("cube", 10, 0.9), ("cube", 12, 0.8), ("cube", 200, 0.7))])
    assert result.error_counts["duplicate"] == 1
    # precision 1 up to recall 0.5, then 2/3: (51 x 1 + 50 x 2/3) / 101
    assert result.errors_dap["duplicate"] == pytest.approx(100 * (1 - (51 + 50 * 2 / 3) / 101), abs=0.01)


def test_one_object_under_two_names_is_a_cross_class_duplicate():
    truth = [[box("mug", 10)], [box("cylinder", 100)]]
    result = evaluate(
        truth,
        [preds(("mug", 10, 0.9), ("cylinder", 10, 0.99)), preds(("cylinder", 100, 0.5))],
    )
    assert result.error_counts["classification"] == 1 and result.cross_class_duplicates == 1
    # cylinder AP 0.5 (its best score is the false one), mug 1.0; fixed, both 1.0
    assert result.map50 == 0.75 and result.errors_dap["classification"] == 25.0


def test_a_wrong_class_on_an_object_nothing_found_is_corrected_by_the_fix():
    truth = [[box("mug", 10)]]
    result = evaluate(truth, [preds(("cube", 10, 0.9))], cover=["cube", "mug"])
    assert result.error_counts["classification"] == 1 and result.cross_class_duplicates == 0
    assert result.error_counts["missed"] == 0  # the error aims at it: not also a miss
    assert result.errors_dap["classification"] == 100.0


def test_background_both_and_missed():
    truth = [[box("mug", 10), box("cube", 300)]]
    result = evaluate(
        truth,
        [
            preds(("mug", 10, 0.9), ("cube", 150, 0.8), ("cube", 30, 0.7))
        ],  # far away; near the mug, wrong class
    )
    assert result.error_counts["background"] == 1 and result.error_counts["both"] == 1
    assert result.error_counts["missed"] == 1  # the cube at 300: nothing near it
    assert result.errors_dap["missed"] == 50.0  # cube AP 0 -> 1 without the missed box; mug stays 1


def test_classes_a_model_cannot_produce_are_not_covered_not_zero():
    truth = [[box("cube", 10), box("duck", 100)]]
    result = dm.evaluate(truth, [preds(("cube", 10, 0.9))], ["cube", "duck"], {"cube"}, 0.25)
    assert result.not_covered == ["duck"] and [c.name for c in result.classes] == ["cube"]
    assert result.map50 == 1.0


def test_dont_care_regions_count_neither_way():
    truth = [[box("cube", 10), box("cube", 200, size=4, ignore=True)]]
    result = evaluate(truth, [preds(("cube", 10, 0.9), ("cube", 200, 0.95, 10.0, 4.0))])
    assert result.map50 == 1.0 and result.error_counts["background"] == 0
    assert result.classes[0].instances == 1 and result.classes[0].precision == 1.0


def test_precision_and_recall_are_read_at_the_confidence_a_node_runs():
    truth = [[box("cube", 10), box("cube", 100)]]
    result = evaluate(
        truth, [preds(("cube", 10, 0.9), ("cube", 100, 0.1), ("cube", 300, 0.5))], confidence=0.3
    )
    (cube,) = result.classes
    assert (cube.precision, cube.recall) == (0.5, 0.5)  # one of two kept is right; one of two found


def test_our_ap_at_0_5_equals_pycocotools_on_a_random_set():
    rng = np.random.default_rng(7)
    truth, predictions = [], []
    for _ in range(12):
        frame = [
            box(str(rng.choice(CLASSES)), float(x), float(y), float(s))
            for x, y, s in rng.uniform([0, 0, 20], [400, 300, 80], (5, 3))
        ]
        rows = []
        for t in frame:
            x, y = t["xyxy"][0] + rng.normal(0, 6), t["xyxy"][1] + rng.normal(0, 6)
            name = t["name"] if rng.random() > 0.15 else str(rng.choice(CLASSES))
            rows.append((name, x, float(rng.random()), y, t["xyxy"][2] - t["xyxy"][0]))
        rows += [(str(rng.choice(CLASSES)), float(rng.uniform(0, 400)), float(rng.random()), 100.0, 30.0)]
        truth.append(frame)
        predictions.append(preds(*rows))
    result = evaluate(truth, predictions)
    ours = dm._mean_ap(*_matched(truth, predictions))
    assert ours == pytest.approx(result.map50, abs=1e-3)


def _matched(truth, predictions):
    detections = []
    instances = dict.fromkeys(CLASSES, 0)
    for image, (frame, (xyxy, scores, names)) in enumerate(zip(truth, predictions, strict=True)):
        detections += dm.match_frame(image, frame, xyxy, scores, names)[0]
        for b in frame:
            instances[b["name"]] += 1
    present = [c for c in CLASSES if instances[c]]
    return detections, instances, {}, present


def test_the_coco_class_map_and_coverage():
    assert (
        load_class_map("coco") == COCO
        and COCO["person"] == "pedestrian"
        and COCO["sports ball"] == "soccerball"
    )
    coco_names = ["person", "bicycle", "car", "cup", "teddy bear", "sports ball", "dog"]
    assert covered(coco_names, COCO) == {"pedestrian", "car", "mug", "teddy", "soccerball"}
    assert covered(["cube", "mug"], None) == {"cube", "mug"}


def test_a_class_map_file_is_checked(tmp_path):
    good = tmp_path / "map.yaml"
    good.write_text("bottle: cylinder\nchair: null\n")
    assert load_class_map(str(good)) == {"bottle": "cylinder"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("bottle: bottle\n")
    with pytest.raises(
        PerceptError,
        match=r"class map .*bad.yaml: 'bottle' is not a class our scenes label; expected one of cube, ",
    ):
        load_class_map(str(bad))
    with pytest.raises(
        PerceptError,
        match=r"class map nowhere.yaml: no such file, and no built-in map of that name \(built in: coco\)",
    ):
        load_class_map("nowhere.yaml")


def test_ap_by_visible_fraction_and_distance_scores_each_band_on_its_own_boxes():
    hidden = dict(box("car", 10), visible_fraction=0.3, distance=40.0)
    visible = dict(box("car", 200), visible_fraction=0.95, distance=8.0)
    truth = [[hidden, visible]]
    result = evaluate(
        truth, [preds(("car", 10, 0.9))], ["car"]
    )  # finds the hidden far one, misses the near one
    assert result.by_visible_fraction == {
        "hidden (< 0.5)": 1.0,
        "partly (0.5-0.9)": None,
        "visible (>= 0.9)": 0.0,
    }
    assert result.by_distance == {"< 2 m": None, "2-15 m": 0.0, "15-30 m": None, ">= 30 m": 1.0}
    # a detection on nothing counts against every band: nothing says which band it would be in
    result = evaluate(truth, [preds(("car", 10, 0.5), ("car", 400, 0.9))], ["car"])
    assert result.by_visible_fraction["hidden (< 0.5)"] == pytest.approx(
        (51 * 0.5 + 50 * 0.5) / 101, abs=1e-3
    )


def test_bands_are_none_where_the_truth_does_not_say():
    result = evaluate([[box("cube", 10)]], [preds(("cube", 10, 0.9))])
    assert set(result.by_distance.values()) == {None} and set(result.by_visible_fraction.values()) == {None}
