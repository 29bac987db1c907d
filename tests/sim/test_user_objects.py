"""A user's own objects in the tabletop scene and its datasets (issue 24, "objects in" and "data"): a mesh
or URDF with a class name and scale, checked with clear errors, decomposed where concave, labelled
after our classes; and a dataset split whose train and validation parts are disjoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pybullet_data
import pytest
import trimesh
from conftest import percept

from perception.detector.vocabulary import SHIPPED_CLASSES
from sim.camera import CameraSpec
from sim.dataset import ExportSpec, export
from sim.frames import capture
from sim.tabletop import TabletopScene, params_from
from sim.user_objects import UserObject, prepare
from sim.world import World

BUNNY = Path(pybullet_data.getDataPath()) / "bunny.obj"  # the Stanford bunny: concave, not in our scenes


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _box_stl(folder: Path, size_mm: float = 40.0) -> Path:
    path = folder / "block.stl"
    trimesh.creation.box(extents=[size_mm, size_mm / 2, size_mm / 4]).export(path)  # millimetres, as CAD
    return path


def test_a_mesh_in_millimetres_needs_its_scale_and_the_error_says_which(tmp_path):
    stl = _box_stl(tmp_path)
    with pytest.raises(ValueError, match=r"block \(.*block.stl\): at scale 1 it is 40 m across; "
                                         r"expected 1-30 cm \(scale 0.00125 makes it 5 cm\)"):  # fmt: skip
        prepare(UserObject.parse(f"{stl}:block"))
    mesh = prepare(UserObject.parse(f"{stl}:block:0.001"))
    assert not mesh.decomposed  # a box is its own convex hull
    assert mesh.half_height == pytest.approx(0.005) and mesh.radius == pytest.approx(np.hypot(0.02, 0.01))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nowhere.obj:thing", r"object thing \(.*nowhere.obj\): no such file"),
        ("{bunny}", "expected PATH:NAME or PATH:NAME:SCALE"),
        ("{bunny}:bunny:big", "expected a number for the scale, found 'big'"),
        ("{bunny}:bunny:-2", "expected a finite scale above 0, found -2"),
        ("{bunny}:my bunny", "expected a class name of letters, digits, - or _"),
        ("{readme}:notes", r"expected an .obj, .stl or .urdf file, found .md"),
    ],
)
def test_bad_object_specs_are_named(spec, message):
    readme = Path(__file__).parents[2] / "README.md"
    with pytest.raises(ValueError, match=message):
        UserObject.parse(spec.format(bunny=BUNNY, readme=readme))


def test_a_mesh_with_no_triangles_and_a_name_of_ours_are_refused(tmp_path):
    points = tmp_path / "points.obj"
    points.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(
        ValueError, match=r"points \(.*points.obj\): expected a mesh with triangles, found none"
    ):
        prepare(UserObject.parse(f"{points}:points"))
    with pytest.raises(ValueError, match="user class 'mug' is one of ours already"):
        params_from({"user_objects": [f"{BUNNY}:mug:0.06"]})
    with pytest.raises(ValueError, match="user class 'bunny' is given twice"):
        params_from({"user_objects": [f"{BUNNY}:bunny:0.06", f"{BUNNY}:bunny:0.05"]})
    with pytest.raises(ValueError, match="user class 'Mug' is one of ours already \\(as 'mug': case"):
        params_from({"user_objects": [f"{BUNNY}:Mug:0.06"]})  # as train --add-class refuses it


def test_a_concave_mesh_is_decomposed_once_and_labelled_after_our_classes(tmp_path):
    params = params_from(
        {"objects": 4, "classes": ["bunny", "cube"],
         "user_objects": [{"path": str(BUNNY), "name": "bunny", "scale": 0.06, "euler_deg": [90, 0, 0]}]}
    )  # fmt: skip
    assert params.vocabulary == (*SHIPPED_CLASSES, "bunny")
    world = World("tiny")
    try:
        scene = TabletopScene(world, params, 3, CameraSpec(width=160, height=120))
        assert scene.user_meshes["bunny"].decomposed  # V-HACD: the hull would close the fingers on air
        frame = capture(scene)
    finally:
        world.close()
    bunnies = [i for i, name in enumerate(frame.class_names) if name == "bunny"]
    assert bunnies and all(frame.class_ids[i] == len(SHIPPED_CLASSES) for i in bunnies)
    cached = list((tmp_path / "cache" / "percept" / "user_objects").glob("bunny-*/collision_vhacd.obj"))
    assert len(cached) == 1


def test_a_dataset_with_a_user_object_has_it_in_every_frame_and_a_disjoint_split(tmp_path):
    spec = ExportSpec(
        "tabletop", 20, tmp_path / "d", "coco", seed=1, width=160, height=120, renderer="tiny",
        user_objects=(UserObject.parse(f"{BUNNY}:bunny:0.06"),),
    )  # fmt: skip
    summary = export(spec, workers=1)
    train = json.loads((tmp_path / "d" / "train.json").read_text())
    val = json.loads((tmp_path / "d" / "val.json").read_text())
    every = json.loads((tmp_path / "d" / "annotations.json").read_text())
    assert every["categories"][-1] == {"id": len(SHIPPED_CLASSES), "name": "bunny"}
    train_ids, val_ids = {i["id"] for i in train["images"]}, {i["id"] for i in val["images"]}
    assert not train_ids & val_ids and train_ids | val_ids == {i["id"] for i in every["images"]}
    assert 0 < len(val_ids) == summary["val_frames"] < 10
    with_bunny = {a["image_id"] for a in every["annotations"] if a["category_id"] == len(SHIPPED_CLASSES)}
    assert len(with_bunny) >= 18  # in (almost) every frame: one may hide behind another object


def test_yolo_export_lists_train_and_val_images_apart(tmp_path):
    out = tmp_path / "y"
    result = percept(
        "dataset", "export", "--scene", "driving", "--frames", "100", "--out", str(out), "--format", "yolo",
        "--width", "160", "--height", "120", "--renderer", "tiny", "--workers", "1", "--val-share", "0.5",
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    train = (out / "train.txt").read_text().split()
    val = (out / "val.txt").read_text().split()
    assert len(train) + len(val) == 100 and not set(train) & set(val)
    episodes = {int(Path(f).stem) // 50 for f in val}  # whole 50-frame episodes, never a part of one
    assert {int(Path(f).stem) // 50 for f in train}.isdisjoint(episodes)
    assert "train: train.txt\nval: val.txt" in (out / "data.yaml").read_text()


def test_object_errors_from_the_command_line_are_one_line_before_anything_is_made(tmp_path):
    """The mesh is read when the scene is built: a size error came as a 30-line traceback, after the
    output folder was made, and the retry then found it not empty."""
    flat = tmp_path / "plane.obj"
    flat.write_text("v 0 0 0\nv .05 0 0\nv .05 .05 0\nv 0 .05 0\nf 1 2 3 4\n")
    for spec, message in (
        (f"{BUNNY}:bunny:40", "expected 1-30 cm (scale 0.0253 makes it 5 cm)"),
        (f"{flat}:plane", "it is 0 mm thick; expected a solid"),  # V-HACD never came back from one
    ):
        out = tmp_path / "x"
        result = percept(
            "dataset", "export", "--scene", "tabletop", "--frames", "1", "--out", str(out), "--object", spec,
            timeout=120,
        )  # fmt: skip
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr, result.stderr
        assert not out.exists()


def test_a_colon_in_the_path_needs_no_scale(tmp_path):
    folder = tmp_path / "a:b"
    folder.mkdir()
    stl = _box_stl(folder)
    assert UserObject.parse(f"{stl}:block").path == stl
    assert UserObject.parse(f"{stl}:block:0.001").scale == 0.001


def test_a_urdf_is_measured_without_pybullets_margin_and_a_missing_mesh_is_named(tmp_path):
    """PyBullet's bounding box adds a few millimetres that do not scale: a 4 cm part at scale 0.001 was
    measured 0.57 cm, and the scale suggested to fix it was wrong again."""
    from sim.user_objects import check, urdf_size

    (tmp_path / "meshes").mkdir()
    _box_stl(tmp_path / "meshes")
    urdf = tmp_path / "part.urdf"
    link = (
        '<robot name="part"><link name="base"><inertial><mass value="0.1"/><inertia ixx="1e-5" ixy="0" '
        'ixz="0" iyy="1e-5" iyz="0" izz="1e-5"/></inertial><visual><geometry><mesh filename="{0}" '
        'scale="0.001 0.001 0.001"/></geometry></visual><collision><geometry><mesh filename="{0}" '
        'scale="0.001 0.001 0.001"/></geometry></collision></link></robot>'
    )
    urdf.write_text(link.format("meshes/block.stl"))
    assert urdf_size(UserObject.parse(f"{urdf}:part")) == pytest.approx(0.04, abs=0.001)
    assert urdf_size(UserObject.parse(f"{urdf}:part:1.25")) == pytest.approx(0.05, abs=0.001)
    with pytest.raises(
        ValueError, match=r"at scale 0.001 it is 0.004 cm across; .* \(scale 1.25 makes it 5 cm\)"
    ):
        check([UserObject.parse(f"{urdf}:part:0.001")])
    broken = tmp_path / "broken.urdf"  # another file: a URDF is measured once a process
    broken.write_text(link.format("meshes/gone.stl"))
    missing = r"part \(.*broken.urdf\): mesh meshes/gone.stl \(.*meshes/gone.stl\): no such file"
    with pytest.raises(ValueError, match=missing):
        check([UserObject.parse(f"{broken}:part")])
