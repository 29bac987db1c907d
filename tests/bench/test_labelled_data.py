"""`percept bench detect --data`: detectors scored on a labelled COCO set (an export's split, or a COCO
JSON file of any origin with its own class names) instead of rendered frames; bad sets named in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import percept

from perception.bench.machine import cpu
from perception.installed import DEFAULT_MODEL
from sim.dataset import ExportSpec, export


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("labelled") / "tabletop"
    spec = ExportSpec(scene="tabletop", frames=10, out=out, format="coco", seed=4300, renderer="tiny")
    export(spec, workers=1)
    return out


def _report(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_an_export_is_scored_at_its_val_split_or_whole(labelled):
    val = len(json.loads((labelled / "val.json").read_text())["images"])
    report = _report(percept("bench", "detect", "--model", str(DEFAULT_MODEL), "--data", str(labelled),
                             "--workers", "1", "--json", timeout=120))  # fmt: skip
    assert report["settings"]["data"] == str(labelled) and report["settings"]["frames"] == val
    assert report["settings"]["cpu"] == cpu().summary()  # which machine the timings are of
    whole = percept("bench", "detect", "--model", str(DEFAULT_MODEL), "--data", f"{labelled}:all",
                    "--workers", "1", "--json", timeout=120)  # fmt: skip
    report = _report(whole)
    assert report["settings"]["frames"] == 10
    boxes = len(json.loads((labelled / "annotations.json").read_text())["annotations"])
    assert report["ground_truth_boxes"] == boxes
    (row,) = report["models"]
    assert row["map50"] > 0.8, "the shipped model finds the tabletop objects of its own scene"
    assert f"in 10 frames of {labelled} (all split)" in whole.stdout


def test_a_coco_file_with_its_own_class_names_is_scored_through_the_class_map(labelled, tmp_path):
    coco = json.loads((labelled / "annotations.json").read_text())
    for category in coco["categories"]:
        category["name"] = {"mug": "cup", "teddy": "teddy bear"}.get(category["name"], category["name"])
    coco["categories"].append({"id": 99, "name": "forklift"})  # a class this set has no box of
    mine = labelled / "renamed.json"  # beside the images: their file names are relative to it
    mine.write_text(json.dumps(coco))
    class_map = tmp_path / "names.yaml"
    class_map.write_text("mug: cup\nteddy: teddy bear\ncar: forklift\n")  # a declared class is a class
    report = _report(percept("bench", "detect", "--model", str(DEFAULT_MODEL), "--data", str(mine),
                             "--class-map", str(class_map), "--workers", "1", "--json", timeout=120))  # fmt: skip
    (row,) = report["models"]
    classes = {c["name"]: c for c in row["evaluation"]["classes"]}
    assert "mug" not in classes and "teddy" not in classes and "forklift" not in classes
    for name in ("cup", "teddy bear"):
        if name in classes:
            assert classes[name]["ap50"] > 0.5, f"the model's {name} counts through the map"
    assert {"cup", "teddy bear"} & set(classes), "the set has a mug or a teddy to score"
    unmapped = _report(percept("bench", "detect", "--model", str(DEFAULT_MODEL), "--data", str(mine),
                               "--workers", "1", "--json", timeout=120))  # fmt: skip
    assert set(unmapped["models"][0]["evaluation"]["not_covered"]) == {"cup", "teddy bear"} & set(classes)


def test_a_bad_set_is_one_line_naming_it(labelled, tmp_path):
    (tmp_path / "broken.json").write_text('{"images": [{"id": 1, "file_name": "nowhere.png"}]}')
    (tmp_path / "gone.json").write_text(
        json.dumps({"images": [{"id": 1, "file_name": "nowhere.png"}], "annotations": [], "categories": []})
    )
    cases = [
        (str(tmp_path / "missing"), "expected a COCO export folder or JSON file, found nothing there"),
        (
            f"{tmp_path}:train",
            "expected train.json (a COCO export's train split), found broken.json, gone.json",
        ),
        (str(tmp_path / "broken.json"), "expected COCO detection JSON (images, annotations with bbox"),
        (str(tmp_path / "gone.json"), "cannot read image"),
    ]
    older = tmp_path / "older"  # an export from before the splits: annotations.json alone
    older.mkdir()
    (older / "annotations.json").write_text((labelled / "annotations.json").read_text())
    cases.append((str(older), "found annotations.json (an export without splits: PATH:all reads it whole)"))
    for given, message in cases:
        result = percept("bench", "detect", "--model", str(DEFAULT_MODEL), "--data", given)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert message in result.stderr, result.stderr
    both = percept("bench", "detect", "--model", "m.onnx", "--data", str(labelled), "--scene", "tabletop")
    assert both.returncode != 0 and "--scene and --data: expected one of them, found 2" in both.stderr
