"""The layout holds: cores import and run on arrays alone, the import contracts hold (and catch a
forbidden import), and the package's root keeps only its face and what every layer shares."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# A process in which pyzmq and msgpack cannot be imported (as on a machine without them), that imports
# each core and runs it on arrays.
CORES_ON_ARRAYS = textwrap.dedent(
    """
    import sys

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("zmq", "msgpack"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocked())
    try:
        import zmq  # noqa: F401
        raise SystemExit("the block did not work")
    except ImportError:
        pass

    import numpy as np

    import perception
    from perception.camera import Calibration
    from perception.detector import Detector
    from perception.grasp import GraspPlanner, PickPolicy
    from perception.track import ByteTracker

    detector = Detector("models/percept.onnx")
    detections = detector(np.full((480, 640, 3), 127, np.uint8))
    print("detector", type(detections).__name__, len(detections))

    tracker = ByteTracker()
    for t in range(3):
        box = np.array([[100 + 5 * t, 100, 160 + 5 * t, 200]], np.float32)
        tracks = tracker.update(box, np.array([0.9], np.float32), np.array([8]), t * 0.1)
    print("tracker", [track.id for track in tracks])

    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    pose = np.eye(4)
    pose[:3, :3] = [[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]
    pose[:3, 3] = (0.5, 0.0, 0.7)
    depth = np.full((240, 320), 0.7, np.float32)
    depth[110:130, 150:170] = 0.66  # a block 4 cm tall, 4.4 cm across, on the table
    plan = GraspPlanner().plan(depth, K, pose, np.array([[145, 105, 175, 135]], np.float32), ["cube"])
    print("planner", len(plan.grasps), "grasp(s)", plan.rejected)
    policy = PickPolicy()
    print("policy", policy.choose(np.zeros((0, 3)), np.zeros((0, 3)), []))

    print("camera", Calibration.nominal(640, 480).K[0, 0] > 0)

    from sim import tabletop
    from sim.camera import CameraSpec
    from sim.frames import capture
    from sim.world import World

    world = World("tiny")
    scene = tabletop.TabletopScene(world, tabletop.TabletopParams(objects=2), 7, CameraSpec(width=160, height=120))
    frame = capture(scene)
    print("sim", frame.rgb.shape, len(frame.xyxy))
    world.close()

    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("zmq", "msgpack"))
    assert not loaded, loaded
    assert "perception.runtime" not in sys.modules, "a core pulled in the runtime"
    print("ok")
    """
)


def test_the_cores_import_and_run_where_pyzmq_and_msgpack_cannot_be_imported():
    result = subprocess.run(
        [sys.executable, "-c", CORES_ON_ARRAYS], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[-1] == "ok", result.stdout
    assert any(line.startswith("detector Detections") for line in lines)
    assert any(
        line.startswith("planner") and "grasp(s) []" in line and not line.startswith("planner 0")
        for line in lines
    ), result.stdout
    assert "tracker [1]" in lines and "policy None" in lines


def test_the_import_contracts_hold():
    result = subprocess.run([str(LINT_IMPORTS)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_the_import_contracts_catch_a_core_importing_the_runtime_and_a_tool_importing_another(tmp_path):
    for folder in ("perception", "sim"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    tracker = tmp_path / "perception" / "track" / "tracker.py"
    tracker.write_text(tracker.read_text() + "\nfrom perception.runtime import node  # noqa\n")
    viewer = tmp_path / "perception" / "viewer" / "state.py"
    viewer.write_text(viewer.read_text() + "\nfrom perception.cli import common  # noqa\n")
    result = subprocess.run(
        [str(LINT_IMPORTS)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(tmp_path), "PATH": str(LINT_IMPORTS.parent)},
    )
    assert result.returncode != 0
    assert "perception.track.tracker -> perception.runtime.node" in result.stdout
    assert "perception.viewer.state -> perception.cli.common" in result.stdout


def test_the_package_root_keeps_its_face_and_what_every_layer_shares():
    root_modules = sorted(p.name for p in (ROOT / "perception").glob("*.py"))
    # The face (`__init__`, and `__main__` for `python -m perception`), the messages and errors, the maths,
    # and what the installation holds (shipped files, extras): at most six.
    assert root_modules == [
        "__init__.py",
        "__main__.py",
        "errors.py",
        "geometry.py",
        "installed.py",
        "msgs.py",
    ]


def test_the_face_exports_what_it_lists_lazily():
    script = (
        "import sys, perception\n"
        "assert 'perception.runtime.node' not in sys.modules\n"
        "from perception import Node, Image, run, LATEST_ONLY, NodeHarness\n"
        "assert sorted(perception.__all__) == sorted(perception._EXPORTS)\n"
        "missing = [n for n in perception.__all__ if getattr(perception, n, None) is None]\n"
        "assert not missing, missing\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr[-2000:]
