"""The numpy half of training (targets, crops, augmentation, dataset loading): no torch needed."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.detector.vocabulary import SHIPPED_CLASSES
from perception.errors import PerceptError
from perception.train.data import CropSpec, augment, load_labelled, random_crop
from perception.train.targets import STRIDE, encode


def test_a_box_gets_a_peak_at_its_centre_and_regression_weight_of_log_area():
    box = np.array([[40, 20, 80, 60]], np.float32)  # 40 x 40, centre (60, 40)
    targets = encode(box, np.array([3]), (96, 128), len(SHIPPED_CLASSES))
    assert targets.heatmap.shape == (len(SHIPPED_CLASSES), 96 // STRIDE, 128 // STRIDE)
    peak = np.unravel_index(targets.heatmap[3].argmax(), targets.heatmap[3].shape)
    assert peak == (40 // STRIDE, 60 // STRIDE)
    assert targets.heatmap[3].max() == 1.0
    assert targets.heatmap[np.arange(len(SHIPPED_CLASSES)) != 3].max() == 0.0
    assert targets.weight.sum() == pytest.approx(np.log(40 * 40), rel=1e-5)
    assert targets.box[:, 10, 15].tolist() == [40, 20, 80, 60]
    # The regression cells stay inside the box's middle.
    ys, xs = np.nonzero(targets.weight)
    assert xs.min() * STRIDE >= 40 and (xs.max() + 1) * STRIDE <= 80
    assert ys.min() * STRIDE >= 20 and (ys.max() + 1) * STRIDE <= 60


def test_a_box_smaller_than_a_cell_still_has_a_peak_and_a_regression_cell():
    targets = encode(
        np.array([[101, 50, 104, 57]], np.float32), np.array([9]), (96, 128), len(SHIPPED_CLASSES)
    )
    assert targets.heatmap[9, 53 // STRIDE, 102 // STRIDE] == 1.0
    assert targets.weight[53 // STRIDE, 102 // STRIDE] > 0


def test_a_small_box_centred_near_a_cells_edge_teaches_the_neighbour_to_box_it_too():
    # 3 px wide, centre x = 103.8: in cell 25 (100-104), 0.2 px from cell 26.
    box = np.array([[102.3, 50, 105.3, 57]], np.float32)
    targets = encode(box, np.array([9]), (96, 128), len(SHIPPED_CLASSES))
    row, centre, neighbour, far_side = 53 // STRIDE, 25, 26, 24
    heat = targets.heatmap[9, row]
    assert heat[centre] == 1.0, "the centre cell is still the one positive"
    assert heat[neighbour] > 0.2 > 0.01 > heat[far_side], "the Gaussian sits on the box's own centre"
    assert targets.box[:, row, neighbour].tolist() == pytest.approx(box[0].tolist())
    assert 0 < targets.weight[row, neighbour] < targets.weight[row, centre]
    assert targets.weight[row, far_side] < 0.01 * targets.weight[row, centre]
    alone = np.log(3 * 7)  # the centre cell's weight is what a box with no neighbours would give it
    assert targets.weight[row, centre] == pytest.approx(alone, rel=1e-5)


def test_a_neighbour_never_takes_a_cell_that_regresses_another_box():
    big = [88, 36, 120, 68]  # 32 x 32: regresses the cells around its centre (104, 52)
    small = [102.3, 50, 105.3, 57]  # its neighbour cells lie inside the big box's regression cells
    targets = encode(np.array([big, small], np.float32), np.array([8, 9]), (96, 128), len(SHIPPED_CLASSES))
    row = 53 // STRIDE
    assert targets.box[:, row, 25].tolist() == pytest.approx(small)
    assert targets.box[:, row, 26].tolist() == big


def test_where_boxes_overlap_the_smaller_one_regresses():
    boxes = np.array([[0, 0, 128, 96], [56, 40, 72, 56]], np.float32)  # a small box at the big one's centre
    targets = encode(boxes, np.array([8, 9]), (96, 128), len(SHIPPED_CLASSES))
    assert targets.box[:, 48 // STRIDE, 64 // STRIDE].tolist() == [56, 40, 72, 56]
    assert targets.heatmap[8].max() == 1.0 and targets.heatmap[9].max() == 1.0


def _image_with_box(box: list[int]) -> np.ndarray:
    image = np.zeros((480, 640, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image


@pytest.mark.parametrize("seed", range(6))
def test_a_crop_keeps_its_boxes_on_their_pixels(seed):
    box = [300, 200, 360, 240]
    image = _image_with_box(box)
    spec = CropSpec(near_object=1.0)
    crop, boxes, classes = random_crop(
        image, np.array([box], np.float32), np.array([2]), spec, np.random.default_rng(seed)
    )
    assert crop.shape == (spec.height, spec.width, 3)
    assert classes.tolist() == [2]
    x1, y1, x2, y2 = np.round(boxes[0]).astype(int)
    inside = crop[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1]
    assert inside.min() >= 200, "the box's own pixels are white"
    white = np.argwhere(crop[:, :, 0] > 127)
    assert np.allclose(white.min(axis=0), [y1, x1], atol=1.5) and np.allclose(
        white.max(axis=0) + 1, [y2, x2], atol=1.5
    )


def test_crops_near_an_object_draw_its_class_first_so_a_rare_class_is_centred_as_often():
    # Ten cars and one pedestrian, far enough apart on a wide frame that a crop shows one of them.
    cars = [[200 + 380 * i, 200, 240 + 380 * i, 230] for i in range(10)]
    pedestrian = [5500, 180, 5512, 220]
    boxes = np.array([*cars, pedestrian], np.float32)
    classes = np.array([8] * 10 + [9])
    image = np.zeros((480, 6000, 3), np.uint8)
    spec = CropSpec(near_object=1.0, zoom_out=0.0)
    rng = np.random.default_rng(0)
    shown = [random_crop(image, boxes, classes, spec, rng)[2].tolist() for _ in range(400)]
    with_pedestrian = sum(9 in c for c in shown) / len(shown)
    assert 0.4 < with_pedestrian < 0.6, f"drawn by object it would be 1 in 11, not {with_pedestrian:.2f}"
    assert all(c == [9] or 9 not in c for c in shown), "a crop centred on the pedestrian shows no car"


def test_a_crop_that_cuts_a_box_keeps_its_visible_part_and_drops_slivers():
    image = np.zeros((480, 640, 3), np.uint8)
    boxes = np.array([[0, 0, 100, 100], [630, 470, 640, 480]], np.float32)
    spec = CropSpec(min_scale=1.0, max_scale=1.0, near_object=0.0, min_pixels=16)
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, shown, _ = random_crop(image, boxes, np.array([0, 1]), spec, rng)
        assert np.all(shown >= 0) and np.all(shown[:, 2] <= spec.width) and np.all(shown[:, 3] <= spec.height)
        assert np.all((shown[:, 2] - shown[:, 0]) * (shown[:, 3] - shown[:, 1]) >= 16)


def test_flip_mirrors_the_boxes():
    image = _image_with_box([10, 20, 50, 60])
    boxes = np.array([[10, 20, 50, 60]], np.float32)
    for seed in range(10):
        out, moved = augment(image, boxes, np.random.default_rng(seed))
        x1, y1, x2, y2 = moved[0].astype(int)
        assert out[y1:y2, x1:x2].mean() > 150 / 255, "the box follows the object through the flip"
        assert moved[0].tolist() in ([10, 20, 50, 60], [590, 20, 630, 60])


def test_load_labelled_reads_a_percept_export(tmp_path):
    from sim.dataset import ExportSpec, export

    export(ExportSpec("tabletop", 2, tmp_path, "coco", seed=5, width=160, height=120), workers=1)
    data = load_labelled(tmp_path, split="all")
    coco = json.loads((tmp_path / "annotations.json").read_text())
    assert len(data.images) == 2 and data.images[0].shape == (120, 160, 3)
    assert sum(len(b) for b in data.boxes) == len(coco["annotations"]) > 0
    first = coco["annotations"][0]
    x, y, w, h = first["bbox"]
    assert data.boxes[0][0].tolist() == pytest.approx([x, y, x + w, y + h])
    assert SHIPPED_CLASSES[int(data.classes[0][0])] == coco["categories"][first["category_id"]]["name"]
    expected = cv2.cvtColor(cv2.imread(str(tmp_path / coco["images"][0]["file_name"])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(data.images[0], expected)


def test_an_ultralytics_dataset_trains_as_its_coco_export_would(tmp_path):
    """A YOLO user's labelled frames (data.yaml) load as the COCO export of the same scenes: the same
    frames, boxes to the rounding of normalised coordinates, the same class ids."""
    from sim.dataset import ExportSpec, export

    export(ExportSpec("tabletop", 4, tmp_path / "coco", "coco", seed=5, width=160, height=120), workers=1)
    export(ExportSpec("tabletop", 4, tmp_path / "yolo", "yolo", seed=5, width=160, height=120), workers=1)
    coco, yolo = load_labelled(tmp_path / "coco", split="all"), load_labelled(tmp_path / "yolo" / "data.yaml")
    assert yolo.name == "yolo" and len(yolo.images) == len(coco.images) == 4  # no val split in 4 frames
    for mine, theirs, mine_ids, their_ids in zip(
        yolo.boxes, coco.boxes, yolo.classes, coco.classes, strict=True
    ):
        order, their_order = np.lexsort(mine.T[::-1]), np.lexsort(theirs.T[::-1])
        np.testing.assert_allclose(mine[order], theirs[their_order], atol=0.01)
        assert mine_ids[order].tolist() == their_ids[their_order].tolist()


def test_load_labelled_names_what_is_wrong(tmp_path):
    with pytest.raises(PerceptError, match=r"expected a `percept dataset export` folder, a COCO JSON file"):
        load_labelled(tmp_path)
    (tmp_path / "annotations.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "images/1.png", "width": 8, "height": 8}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [1, 1, 4, 4]}],
                "categories": [{"id": 0, "name": "giraffe"}],
            }
        )
    )
    with pytest.raises(
        PerceptError, match=r"classes \['giraffe'\] are not among .* \(add yours with --add-class giraffe\)"
    ):
        load_labelled(tmp_path)


def test_a_dataset_argument_takes_an_optional_share():
    import argparse

    from perception.cli.train import _dataset

    assert _dataset("data/driving:2.5") == (Path("data/driving"), 2.5)
    assert _dataset("data/driving") == (Path("data/driving"), 1.0)
    assert _dataset("C:/data/x") == (Path("C:/data/x"), 1.0)  # a colon that belongs to the path
    with pytest.raises(argparse.ArgumentTypeError, match="above 0"):
        _dataset("data/driving:0")
