"""`percept train --add-class` (issue 24, "training on a CPU"): the shipped model's head grows a row per
new class, the old classes keep detecting as they did, the new names reach the ONNX metadata the
detector reads, and a tiny end-to-end run (a mesh of the user's, a few dozen frames, a few steps) goes
through (needs torch, the `train` extra; CI does not install it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is the train extra")
onnx = pytest.importorskip("onnx", reason="onnx is the train extra")
trimesh = pytest.importorskip("trimesh", reason="trimesh is the sim extra")

from conftest import percept  # noqa: E402

from perception.detector.core import Detector  # noqa: E402
from perception.detector.vocabulary import SHIPPED_CLASSES  # noqa: E402
from perception.installed import find_model  # noqa: E402

SHIPPED = find_model("models/percept.onnx")


def _names(path: Path) -> list[str]:
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return list(json.loads(props["names"]))


@pytest.fixture(scope="module")
def block_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("block")
    mesh = folder / "block.stl"
    trimesh.creation.box(extents=[50, 30, 20]).export(mesh)  # millimetres
    out = folder / "data"
    result = percept(
        "dataset", "export", "--scene", "tabletop", "--frames", "24", "--out", str(out), "--width", "320",
        "--height", "240", "--renderer", "tiny", "--workers", "1", "--object", f"{mesh}:block:0.001",
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def test_a_grown_head_keeps_the_old_classes_detections_exactly(tmp_path, block_dataset):
    grown = tmp_path / "grown.onnx"
    result = percept(
        "train",
        "--init",
        str(SHIPPED),
        "--add-class",
        "block",
        "--steps",
        "0",
        "--out",
        str(grown),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert _names(grown) == [*SHIPPED_CLASSES, "block"]
    import cv2

    frame = cv2.cvtColor(cv2.imread(str(next((block_dataset / "images").glob("*.png")))), cv2.COLOR_BGR2RGB)
    before, after = Detector(SHIPPED)(frame), Detector(grown)(frame)
    assert len(before.scores) > 0
    np.testing.assert_allclose(after.xyxy, before.xyxy, atol=0.05)
    assert after.class_names == before.class_names  # the new row starts at the prior: nothing found yet


def test_a_few_steps_on_a_users_mesh_write_a_model_that_names_it(tmp_path, block_dataset):
    out = tmp_path / "mine.onnx"
    result = percept(
        "train", "--init", str(SHIPPED), "--add-class", "block", "--data", str(block_dataset), "--steps", "4",
        "--batch", "2", "--out", str(out), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "adding block" in result.stdout
    assert _names(out) == [*SHIPPED_CLASSES, "block"]
    again = percept(  # its .pt goes on from there, the grown head and all
        "train", "--init", str(out.with_suffix(".pt")), "--add-class", "block", "--steps", "0",
        "--out", str(tmp_path / "again.onnx"), timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_class_of_ours_or_one_left_out_is_named(tmp_path, block_dataset):
    ours = percept(
        "train",
        "--init",
        str(SHIPPED),
        "--add-class",
        "mug",
        "--steps",
        "0",
        "--out",
        str(tmp_path / "x.onnx"),
    )
    assert ours.returncode == 1
    assert "--add-class mug: the model has that class already" in ours.stderr
    left_out = percept(
        "train", "--init", str(SHIPPED), "--data", str(block_dataset), "--steps", "2", "--out", str(tmp_path / "y.onnx"),
        timeout=300,
    )  # fmt: skip
    assert left_out.returncode == 1
    assert "classes ['block'] are not among" in left_out.stderr and "--add-class block" in left_out.stderr


def test_train_never_writes_over_a_model_unless_told_to(tmp_path):
    """`--out models/percept.onnx` replaced the shipped model without a word, as it would a run of hours."""
    earlier = tmp_path / "m.onnx"
    earlier.write_bytes(b"a model a run of hours made")
    export_again = ("train", "--init", str(SHIPPED), "--steps", "0", "--out", str(earlier))
    refused = percept(*export_again)
    assert refused.returncode == 1 and earlier.read_bytes() == b"a model a run of hours made"
    assert (
        refused.stderr
        == f"percept: error: --out {earlier}: the file exists; give --overwrite to replace it and its card\n"
    )
    replaced = percept(*export_again, "--overwrite", timeout=300)
    assert replaced.returncode == 0, replaced.stderr
    assert _names(earlier) == list(SHIPPED_CLASSES)


def test_teach_goes_from_a_mesh_to_a_scored_model_and_its_card(tmp_path):
    mesh = tmp_path / "block.stl"
    trimesh.creation.box(extents=[50, 30, 20]).export(mesh)
    out = tmp_path / "block.onnx"
    result = percept(
        "teach", "--object", f"{mesh}:block:0.001", "--out", str(out), "--frames", "16", "--steps", "2",
        "--batch", "2", "--renderer", "tiny", "--workers", "1", "--replay-frames", "50", timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert _names(out) == [*SHIPPED_CLASSES, "block"]
    assert "block: AP@0.5 " in result.stdout and "our classes: AP@0.5 " in result.stdout
    card = out.with_suffix(".md").read_text()
    assert "11: block" in card and "| block |" in card and "never trained on" in card
    split = json.loads((tmp_path / "block-data" / "val.json").read_text())
    assert split["images"] and all(image["split"] == "val" for image in split["images"])


def test_a_run_killed_after_a_checkpoint_goes_on_from_it_with_resume(tmp_path, block_dataset):
    import subprocess
    import sys
    import time

    out = tmp_path / "r.onnx"
    args = [
        "--init",
        str(SHIPPED),
        "--add-class",
        "block",
        "--data",
        str(block_dataset),
        "--batch",
        "2",
        "--out",
        str(out),
    ]
    first = subprocess.Popen(
        [sys.executable, "-m", "perception.cli", "train", *args, "--steps", "60", "--checkpoint-every", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not out.with_suffix(".resume.pt").exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    first.kill()  # interrupted after its first checkpoint, long before its 60 steps
    first.wait()
    resumed = percept("train", *args, "--steps", "60", "--checkpoint-every", "20", "--resume", timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming at step " in resumed.stdout and "/60 after " in resumed.stdout
    assert "EMA weights after 60 steps" in resumed.stdout and "ETA " in resumed.stdout
    missing = percept("train", *args, "--steps", "2", "--resume", "--out", str(tmp_path / "none.onnx"))
    assert missing.returncode == 1 and "--resume: no checkpoint" in missing.stderr


def test_a_yolo_users_labelled_frames_train_and_score_through_their_data_yaml(tmp_path):
    """Frames labelled for Ultralytics (data.yaml, labels/ beside images/) train as an export does, and
    their val split scores the model card."""
    mesh = tmp_path / "block.stl"
    trimesh.creation.box(extents=[50, 30, 20]).export(mesh)
    data = tmp_path / "yolo"
    exported = percept(
        "dataset", "export", "--scene", "tabletop", "--frames", "20", "--out", str(data), "--format", "yolo",
        "--width", "320", "--height", "240", "--renderer", "tiny", "--workers", "1",
        "--object", f"{mesh}:block:0.001", timeout=300,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    out = tmp_path / "mine.onnx"
    result = percept(
        "train", "--init", str(SHIPPED), "--add-class", "block", "--data", f"{data / 'data.yaml'}:2",
        "--steps", "2", "--batch", "2", "--out", str(out), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    train_frames = len((data / "train.txt").read_text().split())
    assert f"loaded yolo: {train_frames} frames" in result.stdout
    assert "block: AP@0.5 " in result.stdout and out.with_suffix(".md").is_file()


def test_teach_checks_its_output_and_options_before_rendering(tmp_path):
    mesh = tmp_path / "block.stl"
    trimesh.creation.box(extents=[50, 30, 20]).export(mesh)
    earlier = tmp_path / "earlier.onnx"
    earlier.write_bytes(b"a model a 20-minute run made")
    teach = ("teach", "--object", f"{mesh}:block:0.001", "--frames", "10", "--steps", "1", "--batch", "2",
             "--renderer", "tiny", "--workers", "1")  # fmt: skip
    for extra, message in (
        (("--out", str(earlier)), f"--out {earlier}: the file exists; give --overwrite to replace it"),
        (("--out", str(tmp_path / "none" / "m.onnx")), "expected a folder it can be written to, found"),
        (("--out", str(tmp_path / "m.onnx"), "--replay-frames", "-5"), "--replay-frames: expected 0 (none)"),
    ):
        refused = percept(*teach, *extra, timeout=120)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
        assert message in refused.stderr and not list(tmp_path.glob("*-data*")), refused.stderr
    assert earlier.read_bytes() == b"a model a 20-minute run made"
    cased = percept("train", "--init", str(SHIPPED), "--add-class", "Mug", "--steps", "0",
                    "--out", str(tmp_path / "x.onnx"))  # fmt: skip
    assert cased.returncode == 1 and "--add-class Mug: the model has 'mug', the same name but for case" in (
        cased.stderr
    )
    few = percept(*teach, "--out", str(tmp_path / "m.onnx"), "--replay-frames", "8", timeout=600)
    assert few.returncode == 0, few.stdout + few.stderr
    assert "--replay-frames 8: too few for tabletop 2, driving 6" in few.stderr


def test_a_bad_label_in_the_val_split_stops_training_before_its_first_step(tmp_path):
    """The val split was read only to score the card, after the whole run."""
    data = tmp_path / "yolo"
    exported = percept(
        "dataset", "export", "--scene", "tabletop", "--frames", "10", "--out", str(data), "--format", "yolo",
        "--width", "320", "--height", "240", "--renderer", "tiny", "--workers", "1", timeout=300,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    first_val = Path((data / "val.txt").read_text().split()[0]).stem
    label = data / "labels" / f"{first_val}.txt"
    label.write_text("0 160 120 20 20\n")  # pixels, not 0-1
    out = tmp_path / "m.onnx"
    result = percept("train", "--init", str(SHIPPED), "--data", str(data), "--steps", "2", "--batch", "2",
                     "--out", str(out), timeout=300)  # fmt: skip
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"labels {label}, line 1: expected coordinates normalised to 0-1" in result.stderr
    assert "training on" not in result.stdout and not out.exists()
