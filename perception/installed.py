"""What this installation holds: the files that ship inside the package (the launch files and the
detector models in perception/share/, package data of the wheel), found by name from any directory as
`ros2 launch` finds a package's launch files; and the optional extras, each named in one line when a
command needs one that is not installed.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from perception.errors import MissingExtra, PerceptError, did_you_mean

# The optional extras (pyproject.toml declares the same; a test holds them equal): the module a command
# imports -> the extra that installs it, and what it is for. The base install is what a real-camera
# graph needs (runtime, detector, tracker, grasp planner, cameras, record/play, viewer).
EXTRAS = {
    "pybullet": ("sim", "the simulator"),
    "trimesh": ("sim", "reading your OBJ and STL meshes"),
    "pycocotools": ("bench", "COCO mAP in percept bench detect"),
    "matplotlib": ("bench", "the plots of a benchmark report"),
    "distributed": ("cluster", "Dask distributed, to fan work out to a cluster"),
    "foxglove": ("foxglove", "Foxglove's SDK, which serves the WebSocket protocol"),
    "websockets": ("foxglove", "a WebSocket client"),
    "torch": ("train", "training"),
    "onnx": ("train", "writing models: training, and percept export --int8"),
    "rosbags": ("ros2", "ROS 2 message layouts, CDR and rosbag2 files"),
    "cyclonedds": ("ros2", "DDS, to join a ROS 2 graph"),
    "pyrealsense2": ("realsense", "Intel RealSense depth cameras (and libusb-1.0 from the system)"),
}
# Where the distribution's name differs from the module's.
DISTRIBUTIONS = {"foxglove": "foxglove-sdk"}
# TrackEval and the peer trackers require the desktop OpenCV (opencv-python), which would install a
# second cv2 beside our headless one: they install without their dependencies, on top of `bench`
# (which carries the rest of theirs).
NO_DEPS = {
    "trackeval": "TrackEval, which scores tracking",
    "trackers": "the peer trackers (SORT, ByteTrack, OC-SORT)",
}
NO_DEPS_INSTALL = (
    "pip install 'percept[bench]' && pip install --no-deps 'trackeval>=1.3,<2' 'trackers>=2.6,<3'"
)


def require(module: str, command: str) -> ModuleType:
    """Import an optional module, or raise a one-line error naming the extra that installs it."""
    root = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != root:
            raise  # it is installed but something it needs is missing or broken: show that, not a hint
        if root in NO_DEPS:
            raise MissingExtra(f"{command} needs {NO_DEPS[root]}: {NO_DEPS_INSTALL}") from None
        extra, purpose = EXTRAS[root]
        raise MissingExtra(
            f"{command} needs {root} ({purpose}), in the `{extra}` extra: pip install 'percept[{extra}]'"
        ) from None


SHARE = Path(__file__).resolve().parent / "share"
LAUNCH_DIR = SHARE / "launch"
MODELS_DIR = SHARE / "models"
# The shipped detector as a command line or launch file names it (find_model finds it from any directory):
# every default that means "our detector" is this name.
SHIPPED_MODEL = "models/percept.onnx"
DEFAULT_MODEL = MODELS_DIR / Path(SHIPPED_MODEL).name


def launch_files() -> dict[str, Path]:
    """The launch files that ship, by name (the file name without .yaml)."""
    return {path.stem: path for path in sorted(LAUNCH_DIR.glob("*.yaml"))}


def find_launch_file(spec: str | Path) -> Path:
    """A launch file by path (as given), or by the name of one that ships (`tabletop_grasp`, also
    `tabletop_grasp.yaml` or `launch/tabletop_grasp.yaml`, as the checkout used to hold them)."""
    path = Path(spec)
    if path.is_file():
        return path
    if path.suffix != ".yaml" and path.with_name(path.name + ".yaml").is_file():
        return path.with_name(path.name + ".yaml")  # a file of the user's by its name, before ours
    shipped = launch_files()
    name = path.name.removesuffix(".yaml")
    if path.parent in (Path("."), Path("launch")) and name in shipped:
        return shipped[name]
    raise PerceptError(
        f"launch file {spec}: no such file, and no launch file of that name ships"
        f"{did_you_mean(name, list(shipped))} (shipped: {', '.join(shipped) or 'none'})"
    )


def find_model(path: str | Path) -> Path:
    """A model by path (as given, relative to the working directory), else one that ships by its file
    name (`percept.onnx`, also `models/percept.onnx` as the checkout used to hold it). A path that
    matches neither comes back as it is, for the detector to name in its error."""
    path = Path(path)
    if path.is_absolute() or path.is_file():
        return path
    if path.parent in (Path("."), Path("models")) and (MODELS_DIR / path.name).is_file():
        return MODELS_DIR / path.name
    return path
