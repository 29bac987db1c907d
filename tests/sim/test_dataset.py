"""Dataset export: layout, label formats, and the same bytes for a seed whatever the worker count."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import pytest
from conftest import percept

from perception.detector.vocabulary import SHIPPED_CLASSES
from sim.dataset import ExportSpec, export


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "data.yaml"
    }


def test_coco_export_is_the_same_with_one_or_two_workers(tmp_path):
    spec = dict(scene="tabletop", frames=30, format="coco", seed=4, width=160, height=120, renderer="tiny")
    one = export(ExportSpec(out=tmp_path / "one", **spec), workers=1)  # type: ignore[arg-type]
    two = export(ExportSpec(out=tmp_path / "two", **spec), workers=2)  # type: ignore[arg-type]
    assert one["frames"] == two["frames"] == 30 and two["workers"] == 2
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")
    coco = json.loads((tmp_path / "one" / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(SHIPPED_CLASSES)
    assert len(coco["images"]) == 30 and len(coco["annotations"]) == one["boxes"] > 30
    for annotation in coco["annotations"]:
        x, y, w, h = annotation["bbox"]
        assert 0 <= x < x + w <= 160 and 0 <= y < y + h <= 120
        assert annotation["area"] == pytest.approx(w * h) and annotation["iscrowd"] == 0
        assert 0 < annotation["visible_fraction"] <= 1
    image = cv2.imread(str(tmp_path / "one" / coco["images"][0]["file_name"]))
    assert image.shape == (120, 160, 3)


def test_yolo_export_of_a_driving_sequence(tmp_path):
    out = tmp_path / "yolo"
    result = percept(
        "dataset",
        "export",
        "--scene",
        "driving",
        "--frames",
        "12",
        "--out",
        str(out),
        "--format",
        "yolo",
        "--seed",
        "1",
        "--width",
        "160",
        "--height",
        "120",
        "--renderer",
        "tiny",
        "--workers",
        "1",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "12/12 frames" in result.stderr and result.stdout.startswith("wrote 12 frames (")
    labels = sorted((out / "labels").glob("*.txt"))
    assert len(labels) == 12 and len(list((out / "images").glob("*.png"))) == 12
    classes = set()
    for label in labels:
        for line in label.read_text().splitlines():
            class_id, *box = line.split()
            classes.add(SHIPPED_CLASSES[int(class_id)])
            assert all(0.0 <= float(v) <= 1.0 for v in box)
    assert classes <= {"car", "pedestrian", "cone"} and "car" in classes
    assert 'names:\n  0: "cube"' in (out / "data.yaml").read_text()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scene": "kitchen"}, "scene: expected one of tabletop, driving, found 'kitchen'"),
        ({"format": "voc"}, "format: expected one of coco, yolo, found 'voc'"),
        ({"frames": 0}, "frames: expected at least 1, found 0"),
    ],
)
def test_bad_export_settings_are_named(tmp_path, kwargs, message):
    settings = {"scene": "tabletop", "frames": 1, "out": tmp_path, "format": "coco", **kwargs}
    with pytest.raises(ValueError, match=message):
        ExportSpec(**settings)  # type: ignore[arg-type]


def test_export_names_a_bad_size_or_an_output_that_is_a_file(tmp_path):
    common = ("dataset", "export", "--scene", "tabletop", "--frames", "2")
    result = percept(*common, "--out", str(tmp_path / "d"), "--width", "0")  # a usage error, before any work
    assert (
        result.returncode == 2
        and "argument --width: expected a whole number above 0, found 0" in result.stderr
    )
    with pytest.raises(ValueError, match="size: expected a width and height of at least 1, found 0 x 480"):
        ExportSpec(
            scene="tabletop", frames=2, out=tmp_path / "d", format="coco", width=0
        )  # the library's check
    taken = tmp_path / "taken"
    taken.write_text("")
    result = percept(*common, "--out", str(taken))
    assert result.returncode == 1 and f"out: expected a folder, found the file {taken}" in result.stderr
    # An earlier export's folder: its annotations were replaced and its frames left beside the new ones.
    (tmp_path / "earlier" / "images").mkdir(parents=True)
    result = percept(*common, "--out", str(tmp_path / "earlier"))
    assert (
        result.returncode == 1 and "the folder is not empty; expected a new or empty folder" in result.stderr
    )
