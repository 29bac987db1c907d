"""Scenario suites for `percept bench detect --suite NAME`: named, seeded sets of simulator frames with
their ground truth, rendered once and cached on disk.

A suite is a scene, a seed, a frame count and the sweep factors it renders (sim.variations), each at
severities 1-5 beside the clean frames. Its cache folder is keyed by all of these and by the
simulator's version (a hash of the sim package's source and PyBullet's version, and whether the EGL
renderer is there), so a changed simulator never serves stale frames: it renders a new folder. A folder
is written under a temporary name and renamed when complete; one that fails its checks (manifest, truth
checksum, images) is reported, never silently used or overwritten.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.errors import PerceptError

CACHE_FORMAT = "percept-suite/1"
CHUNK_FRAMES = 5  # frames per rendering job: small enough to spread over workers


@dataclass(frozen=True)
class Suite:
    name: str
    scene: str
    frames: int
    seed: int
    description: str = ""
    factors: tuple[str, ...] = ()  # sim.variations factors, each at every severity
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    width: int = 640
    height: int = 480
    min_pixels: int = 16  # smaller boxes are don't-care regions
    version: int = 1  # bump when the suite's definition changes

    def variations(self) -> list[Any]:
        from sim.variations import Variation

        return [Variation()] + [Variation(f, s) for f in self.factors for s in self.severities]


# Seeds 4000 and up were never used for training (perception/share/models/percept.md lists those).
SUITES = {
    s.name: s
    for s in (
        Suite(
            "tabletop-standard", "tabletop", 100, 4000, "100 tabletop scenes, 3-6 objects, randomised light"
        ),
        Suite("driving-standard", "driving", 100, 4000, "two 10 s driving episodes at 5 frames/s"),
        Suite(
            "tabletop-robustness",
            "tabletop",
            30,
            4100,
            "30 tabletop scenes under lighting, scale, occlusion, clutter and camera height at 5 severities",
            factors=("lighting", "scale", "occlusion", "clutter", "camera_height"),
        ),
        Suite(
            "driving-robustness",
            "driving",
            50,
            4100,
            "10 s of driving under lighting, scale, occlusion, camera height and traffic at 5 severities",
            factors=("lighting", "scale", "occlusion", "camera_height", "traffic"),
        ),
    )
}


def find(name: str) -> Suite:
    if name not in SUITES:
        raise PerceptError(f"--suite: expected one of {', '.join(SUITES)}, found {name!r}")
    return SUITES[name]


def listing() -> str:
    lines = [f"{'suite':<22} {'scene':<9} {'frames':>6} {'seed':>5}  what"]
    for s in SUITES.values():
        total = s.frames * len(s.variations())
        lines.append(f"{s.name:<22} {s.scene:<9} {total:>6} {s.seed:>5}  {s.description}")
    return "\n".join(lines)


def simulator_version() -> str:
    """Changes whenever the frames the simulator renders could: its source, PyBullet, the renderer."""
    import sim

    digest = hashlib.sha256()
    for path in sorted(Path(sim.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(importlib.metadata.version("pybullet").encode())
    digest.update(b"egl" if importlib.util.find_spec("eglRenderer") else b"tiny")
    return digest.hexdigest()[:16]


def cache_key(suite: Suite) -> str:
    settings = json.dumps({**asdict(suite), "simulator": simulator_version()}, sort_keys=True)
    return hashlib.sha256(settings.encode()).hexdigest()[:16]


def default_cache() -> Path:
    if os.environ.get("PERCEPT_CACHE"):
        return Path(os.environ["PERCEPT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "percept"


@dataclass
class Rendered:
    """One variation of a suite: its frames and each frame's truth boxes (class_id, xyxy, name-free)."""

    label: str
    images: list[np.ndarray] = field(default_factory=list)
    truth: list[list[dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True)
class RenderJob:
    scene: str
    seed: int
    indices: tuple[int, ...]
    width: int
    height: int
    min_pixels: int
    factor: str
    severity: int


def render_job(job: RenderJob) -> list[tuple[np.ndarray, list[dict[str, Any]]]]:
    """Render some frames of one variation (runs in a worker: its own PyBullet connection)."""
    from sim.camera import CameraSpec
    from sim.dataset import frame_boxes, rendered_frames
    from sim.variations import Variation

    out = []
    camera = CameraSpec(width=job.width, height=job.height)
    variation = Variation(job.factor, job.severity)
    for _, frame in rendered_frames(job.scene, job.seed, list(job.indices), camera, variation=variation):
        # Objects under the labelling threshold come as "don't care" regions, as in an exported set.
        # Distances are from the camera (frame_boxes keeps the objects with a visible pixel, in the
        # frame's order).
        distances = np.linalg.norm(frame.positions - frame.pose[:3, 3], axis=1)
        boxes = [
            dict(box, distance=round(float(d), 2))
            for box, d in zip(frame_boxes(frame, job.min_pixels), distances, strict=True)
        ]
        out.append((frame.rgb, boxes))
    return out


def jobs(suite: Suite) -> list[RenderJob]:
    return [
        RenderJob(
            suite.scene,
            suite.seed,
            tuple(range(start, min(start + CHUNK_FRAMES, suite.frames))),
            suite.width,
            suite.height,
            suite.min_pixels,
            v.factor,
            v.severity,
        )
        for v in suite.variations()
        for start in range(0, suite.frames, CHUNK_FRAMES)
    ]


def load_or_render(
    suite: Suite,
    pool: Any,
    cache: Path | None,
    progress: Any = None,
) -> tuple[dict[str, Rendered], str]:
    """The suite's frames by variation label, from the cache or rendered by `pool` (and then cached);
    and where they came from. `cache` None: rendered and not kept."""
    folder = cache / f"{suite.name}-{cache_key(suite)}" if cache else None
    if folder is not None and folder.exists():
        return _load(folder, suite), f"cache {folder}"
    work = jobs(suite)
    results = pool.map(render_job, work, progress)
    rendered: dict[str, Rendered] = {}
    for job, frames in zip(work, results, strict=True):
        from sim.variations import Variation

        label = Variation(job.factor, job.severity).label
        entry = rendered.setdefault(label, Rendered(label))
        for rgb, boxes in frames:
            entry.images.append(rgb)
            entry.truth.append(boxes)
    if folder is not None:
        _store(folder, suite, rendered)
        return rendered, f"rendered by {pool.description}, cached in {folder}"
    return rendered, f"rendered by {pool.description}"


def _truth_digest(truth: list[list[dict[str, Any]]]) -> str:
    return hashlib.sha256(json.dumps(truth, sort_keys=True).encode()).hexdigest()


def _store(folder: Path, suite: Suite, rendered: dict[str, Rendered]) -> None:
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    manifest: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "key": cache_key(suite),
        "suite": asdict(suite),
        "simulator": simulator_version(),
        "variations": {},
    }
    for label, entry in rendered.items():
        (partial / label).mkdir(parents=True)
        for index, rgb in enumerate(entry.images):
            cv2.imwrite(str(partial / label / f"{index:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        (partial / label / "truth.json").write_text(json.dumps(entry.truth))
        manifest["variations"][label] = {
            "frames": len(entry.images),
            "truth_sha256": _truth_digest(entry.truth),
        }
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=1))
    partial.rename(folder)


def _load(folder: Path, suite: Suite) -> dict[str, Rendered]:
    def bad(why: str) -> PerceptError:
        return PerceptError(f"suite cache {folder}: {why}; delete the folder to render the suite again")

    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise bad(f"expected a readable manifest.json, found {type(exc).__name__}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT:
        raise bad(
            f"expected format {CACHE_FORMAT}, found {manifest.get('format') if isinstance(manifest, dict) else manifest!r}"
        )
    if manifest.get("key") != cache_key(suite):
        raise bad(f"expected key {cache_key(suite)}, found {manifest.get('key')!r} (another suite's frames)")
    rendered = {}
    for variation in suite.variations():
        label = variation.label
        entry = manifest["variations"].get(label)
        if entry is None:
            raise bad(f"expected the variation {label}, found none")
        try:
            truth = json.loads((folder / label / "truth.json").read_text())
        except (OSError, ValueError):
            raise bad(f"expected a readable {label}/truth.json") from None
        if _truth_digest(truth) != entry["truth_sha256"] or len(truth) != entry["frames"]:
            raise bad(f"{label}/truth.json does not match its checksum")
        images = []
        for index in range(entry["frames"]):
            path = folder / label / f"{index:06d}.png"
            image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.exists() else None
            if image is None or image.shape != (suite.height, suite.width, 3):
                raise bad(
                    f"expected a {suite.width}x{suite.height} PNG at {label}/{path.name}, found "
                    + ("none" if image is None else "x".join(map(str, image.shape[1::-1])))
                )
            images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        rendered[label] = Rendered(label, images, truth)
    return rendered
