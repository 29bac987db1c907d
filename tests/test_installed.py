"""What the installation holds: launch files and models found by name from any directory, and a
command that needs a missing extra says which one in one line."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest
from conftest import ROOT, percept

from perception.errors import MissingExtra, PerceptError
from perception.installed import (
    DEFAULT_MODEL,
    DISTRIBUTIONS,
    EXTRAS,
    LAUNCH_DIR,
    NO_DEPS,
    find_launch_file,
    find_model,
    launch_files,
    require,
)


def test_launch_files_ship_and_are_found_by_name_or_by_their_old_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing of the checkout here
    assert {"tabletop_grasp", "camera_detect", "demo", "driving_tracking"} <= set(launch_files())
    for spec in ("tabletop_grasp", "tabletop_grasp.yaml", "launch/tabletop_grasp.yaml"):
        assert find_launch_file(spec) == LAUNCH_DIR / "tabletop_grasp.yaml"
    mine = tmp_path / "tabletop_grasp.yaml"  # a user's own file of the same name comes first
    mine.write_text("nodes: []\n")
    assert find_launch_file("tabletop_grasp.yaml") == mine.relative_to(tmp_path) or find_launch_file(
        "tabletop_grasp.yaml"
    ).samefile(mine)
    with pytest.raises(
        PerceptError,
        match=r"launch file tabletop: no such file, and no launch file of that name ships; did you mean "
        r"tabletop_grasp\? \(shipped: camera_detect, ",
    ):
        find_launch_file("tabletop")


def test_the_shipped_model_is_found_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_model("models/percept.onnx") == DEFAULT_MODEL == find_model("percept.onnx")
    assert DEFAULT_MODEL.is_file()
    (tmp_path / "percept.onnx").write_bytes(b"mine")  # a user's own file of the same name comes first
    assert find_model("percept.onnx").resolve() == (tmp_path / "percept.onnx").resolve()
    assert find_model("elsewhere/x.onnx").as_posix() == "elsewhere/x.onnx"  # named as given in the error


def test_launch_list_names_each_shipped_file_with_what_it_runs():
    result = percept("launch", "--list")
    assert result.returncode == 0
    lines = dict(line.split(maxsplit=1) for line in result.stdout.splitlines())
    assert lines["tabletop_grasp"].startswith("The main demo")
    # A whole sentence each, without the colon that led into the file's examples
    assert lines["demo"] == "The main demo's camera and detector alone"
    assert (
        lines["camera_detect"]
        == "A real camera (or a video file, or a stream) with the detector and the tracker"
    )
    missing = percept("launch")
    assert missing.returncode == 1
    assert (
        missing.stderr.strip()
        == "percept: error: launch: name a launch file or one that ships (percept launch --list)"
    )


def test_version_and_python_dash_m():
    from perception import __version__

    for command in (
        [sys.executable, "-m", "perception", "--version"],
        [sys.executable, "-m", "perception.cli", "--version"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.stdout.strip() == f"percept {__version__}"


def test_the_extras_named_in_code_are_the_ones_pyproject_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    base = project["dependencies"]
    name = re.compile(r"[A-Za-z0-9_.-]+")
    for module, (extra, _) in EXTRAS.items():
        distribution = DISTRIBUTIONS.get(module, module)
        assert distribution in {name.match(r)[0] for r in extras[extra]}, (module, extra)
        assert module not in {name.match(r)[0] for r in base}
    for module in NO_DEPS:  # installed without their dependencies: in no extra, so pip never pulls them
        assert not any(module in requirement for reqs in extras.values() for requirement in reqs)
    assert any(r.startswith("opencv-python-headless") for r in base) and not any(
        "opencv-python" in r and "headless" not in r for reqs in extras.values() for r in reqs
    )


BLOCKED = """
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Blocked())
from perception.cli import main
sys.exit(main({argv!r}))
"""


@pytest.mark.parametrize(
    ("blocked", "argv", "message"),
    [
        (
            ["pybullet"],
            ["bench", "grasp", "--episodes", "1"],
            "percept: error: the simulator needs pybullet (the simulator), in the `sim` extra: pip install 'percept[sim]'",
        ),
        (
            ["trackeval"],
            ["bench", "track"],
            "percept: error: percept bench track needs TrackEval, which scores tracking: pip install 'percept[bench]' "
            "&& pip install --no-deps 'trackeval>=1.3,<2' 'trackers>=2.6,<3'",
        ),
        (
            ["foxglove"],
            ["foxglove", "--duration", "1"],
            "percept: error: percept foxglove needs foxglove (Foxglove's SDK, which serves the WebSocket "
            "protocol), in the `foxglove` extra: pip install 'percept[foxglove]'",
        ),
        (
            ["torch"],
            ["train", "--data", "nowhere", "--out", "x.onnx", "--steps", "1"],
            "percept: error: percept train needs torch (training), in the `train` extra: pip install 'percept[train]'",
        ),
    ],
)
def test_a_missing_extra_is_named_in_one_line(blocked, argv, message):
    script = BLOCKED.format(blocked=set(blocked), argv=argv)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip() == message


def test_require_passes_through_a_broken_dependency_of_an_installed_module(monkeypatch):
    def broken(name: str):
        raise ImportError("No module named 'libfoo'", name="libfoo")

    monkeypatch.setattr("importlib.import_module", broken)
    with pytest.raises(ImportError, match="libfoo") as caught:
        require("pycocotools", "percept bench detect")
    assert not isinstance(caught.value, MissingExtra)


def test_a_users_own_launch_file_by_its_bare_name_comes_before_a_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo.yaml").write_text("nodes: []\n")
    assert find_launch_file("demo").resolve() == (tmp_path / "demo.yaml").resolve()


@pytest.mark.parametrize("name", sorted(launch_files()))
def test_shipped_graphs_respawn_their_processing_nodes(name):
    """Issue 22: a crashed detector (tracker, planner, camera, simulator) restarts; only the end of a job
    (the pick loop's) or a node that fails for good ends a run."""
    from perception.runtime import launch_file

    description = launch_file.load(launch_files()[name], {})
    processing = ("sim.node:", "camera:", "test_camera:", "detector:", "tracker:", "grasp_planner:")
    for spec in description.nodes:
        if any(part in spec.target for part in processing):
            assert spec.respawn, f"{name}: {spec.fqn} ({spec.target}) does not respawn"
