"""Dataset export: rendered frames with boxes, in COCO or YOLO layout, deterministic for a seed.

Frame i depends only on (seed, i), never on the number of workers: a tabletop frame is a fresh scene
(seeded from seed and i) with domain randomisation (object count and classes, colours, light, camera
jitter); driving frames come in episodes of EPISODE_S seconds (EPISODE_FRAMES at the dataset's 5
frames/s), one seeded sequence each; `rendered_frames` also plays them at other rates (the same traffic).
Each worker process runs its own simulator; episodes are handed out whole.

The split is real: a share of the frames (VAL_SHARE) is held out for validation, spread evenly, and
driving frames go whole episodes at a time, so that no validation frame has a near twin of
a few hundred milliseconds in training. A user's own objects (sim/user_objects.py) join the tabletop
draw: each frame holds one or more of them among our classes as distractors, and the class list
(COCO categories, YOLO names) is ours followed by theirs.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.detector.vocabulary import TABLETOP_CLASSES, with_user_classes
from sim.camera import CameraSpec
from sim.frames import Frame, capture
from sim.user_objects import UserObject
from sim.variations import CLEAN, Variation

EPISODE_S = 10.0  # seconds of driving per sequence
DATASET_RATE = 5.0  # frames/s of exported driving sequences
EPISODE_FRAMES = round(EPISODE_S * DATASET_RATE)  # driving frames per exported sequence
SCENES = ("tabletop", "driving")  # the scenes datasets export (the shipped detector's); the crowd scene
# is the tracker's, played by `rendered_frames` alone
FORMATS = ("coco", "yolo")
VAL_SHARE = 0.2  # of the frames (driving: of the episodes) held out for validation
USER_OBJECT_TEXTURES = 0.5  # share of tables textured (and user meshes recoloured) in --object exports:
# half the frames keep the plain table the suites and the demo show


@dataclass(frozen=True)
class ExportSpec:
    scene: str
    frames: int
    out: Path
    format: str
    seed: int = 0
    width: int = 640
    height: int = 480
    renderer: str = "auto"
    min_pixels: int = 16  # objects with fewer visible pixels (slivers) are don't-care regions: frame_boxes
    user_objects: tuple[UserObject, ...] = ()  # a user's own objects (tabletop only)
    val_share: float = VAL_SHARE

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return with_user_classes([o.name for o in self.user_objects])

    def __post_init__(self) -> None:
        if self.user_objects and self.scene != "tabletop":
            raise ValueError(f"user objects: the tabletop scene takes them, not {self.scene}")
        with_user_classes([o.name for o in self.user_objects])  # names clear of ours and of each other
        if not 0 <= self.val_share < 1:
            raise ValueError(f"val share: expected a fraction from 0 to under 1, found {self.val_share}")
        if self.scene not in SCENES:
            raise ValueError(f"scene: expected one of {', '.join(SCENES)}, found {self.scene!r}")
        if self.format not in FORMATS:
            raise ValueError(f"format: expected one of {', '.join(FORMATS)}, found {self.format!r}")
        if self.frames < 1:
            raise ValueError(f"frames: expected at least 1, found {self.frames}")
        if self.width < 1 or self.height < 1:
            raise ValueError(
                f"size: expected a width and height of at least 1, found {self.width} x {self.height}"
            )
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"out: expected a folder, found the file {self.out}")


def episodes(spec: ExportSpec) -> list[list[int]]:
    """Frame indices grouped into the units a worker renders in one go."""
    size = EPISODE_FRAMES if spec.scene == "driving" else 25
    return [list(range(start, min(start + size, spec.frames))) for start in range(0, spec.frames, size)]


def _scene_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def split_of(spec: ExportSpec, index: int) -> str:
    """ "train" or "val" for frame `index`: every (1 / val_share)-th unit, spread evenly (a unit is a
    frame for the tabletop, where every frame is its own scene, and a whole episode for driving), so
    that any export of a few units holds some out, and a frame's part never depends on how many were
    asked for."""
    unit = index // EPISODE_FRAMES if spec.scene == "driving" else index
    return "val" if math.floor((unit + 1) * spec.val_share) > math.floor(unit * spec.val_share) else "train"


def rendered_frames(
    scene_name: str,
    seed: int,
    indices: list[int],
    camera: CameraSpec,
    renderer: str = "auto",
    rate: float = DATASET_RATE,
    variation: Variation = CLEAN,
    user_objects: tuple[UserObject, ...] = (),
) -> Iterator[tuple[int, Frame]]:
    """Frames `indices` of the seeded sequence of a scene, each with its ground truth. Driving episodes
    hold EPISODE_S seconds at `rate` frames/s, crowd episodes crowd.EPISODE_S: episode e is the same
    traffic or crowd at any rate. `variation` changes one factor of every frame (sim.variations), the
    rest of the seeded scene staying as it is."""
    from sim import crowd, driving, tabletop, variations
    from sim.world import PHYSICS_HZ, World

    variation.check(scene_name)

    per_episode = round((crowd.EPISODE_S if scene_name == "crowd" else EPISODE_S) * rate)
    steps_per_frame = round(PHYSICS_HZ / rate)

    world = World(renderer)
    try:
        scene: Any = None
        occluders: variations.Occluders | None = None
        for index in indices:
            if scene_name == "tabletop":
                rng = np.random.default_rng(_scene_seed(seed, index))
                objects = int(rng.integers(3, 7))  # drawn first: the seeded scenes stay as they were
                ours = list(rng.choice(TABLETOP_CLASSES, size=int(rng.integers(3, 9)), replace=False))
                if user_objects:  # theirs in every frame, among a few of ours as distractors
                    ours = [*(o.name for o in user_objects), *ours[: int(rng.integers(1, 5))]]
                table_params = tabletop.TabletopParams(
                    objects=objects,
                    camera_jitter=0.03,
                    light_jitter=0.6,
                    classes=ours,
                    user_objects=list(user_objects),
                    include=[o.name for o in user_objects],
                    textures=USER_OBJECT_TEXTURES if user_objects else 0.0,
                )
                scene = tabletop.TabletopScene(world, table_params, _scene_seed(seed, index), camera)
                if variations.extra_objects(variation):
                    scene.add_objects(variations.extra_objects(variation))
                occluders = variations.Occluders.for_variation(world.client, variation)
            elif scene is None or index % per_episode == 0 or index == indices[0]:
                episode = index // per_episode
                rng = np.random.default_rng(_scene_seed(seed, episode))
                if scene_name == "crowd":
                    people = crowd.CrowdParams(
                        people=int(rng.integers(10, 31)),
                        camera_height=float(rng.uniform(*crowd.CAMERA_HEIGHTS)),
                        light_jitter=0.6,
                    )
                    scene = crowd.CrowdScene(world, people, _scene_seed(seed, episode), camera)
                    scene.advance((index % per_episode + 1) * steps_per_frame)
                    occluders = None
                    yield index, _capture_varied(scene, scene_name, variation, occluders)
                    continue
                params = variations.scene_params(
                    "driving",
                    driving.DrivingParams(
                        cars=int(rng.integers(5, 12)),
                        pedestrians=int(rng.integers(1, 5)),
                        cones=int(rng.integers(2, 7)),
                        camera_jitter=0.1,
                        light_jitter=0.6,
                        ego_speed=float(rng.uniform(6, 14)),
                    ),
                    variation,
                )
                scene = driving.DrivingScene(world, params, _scene_seed(seed, episode), camera)
                scene.advance((index % per_episode + 1) * steps_per_frame)
                occluders = variations.Occluders.for_variation(world.client, variation)
            else:
                scene.advance(steps_per_frame)
            yield index, _capture_varied(scene, scene_name, variation, occluders)
    finally:
        world.close()


def _capture_varied(scene: Any, scene_name: str, variation: Variation, occluders: Any) -> Frame:
    """Capture with the variation's camera, light and occluders, then restore the scene's own camera
    and light (a tabletop scene keeps them from frame to frame)."""
    from sim import variations

    camera, light_direction = scene.camera, scene.light_direction
    scene.camera = variations.camera(camera, scene_name, variation)
    scene.light_direction, gain = variations.light(light_direction, variation)
    try:
        if occluders is not None:
            occluders.place(scene.objects, scene.camera)
        frame = capture(scene)
    finally:
        scene.camera, scene.light_direction = camera, light_direction
    frame.rgb = variations.apply_gain(frame.rgb, gain)
    return frame


def frame_boxes(frame: Frame, min_pixels: int) -> list[dict[str, Any]]:
    """The labels of one frame: every object with a visible pixel, in the frame's order; those with
    fewer than `min_pixels` are "don't care" regions ("ignore": True; COCO's iscrowd, KITTI's DontCare):
    finding them is no error, missing them no miss (training leaves them out of its labels)."""
    return [
        {
            "class_id": int(c),
            "xyxy": [float(v) for v in box],
            "track_id": int(body),
            "visible_fraction": round(float(fraction), 4),
            "pixels": int(n),
            **({} if n >= min_pixels else {"ignore": True}),
        }
        for c, box, body, fraction, n in zip(
            frame.class_ids, frame.xyxy, frame.ids, frame.visible_fraction, frame.pixels, strict=True
        )
    ]


def render_episode(spec: ExportSpec, frames: list[int]) -> list[dict[str, Any]]:
    """Render these frames, write their images, return their labels (runs in a worker process)."""
    camera = CameraSpec(width=spec.width, height=spec.height)
    labels = []
    frames_of = rendered_frames(
        spec.scene, spec.seed, frames, camera, spec.renderer, user_objects=spec.user_objects
    )
    for index, frame in frames_of:
        name = f"{index:06d}.png"
        cv2.imwrite(str(spec.out / "images" / name), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
        labels.append(
            {
                "index": index,
                "file": name,
                "width": spec.width,
                "height": spec.height,
                "episode": index // EPISODE_FRAMES if spec.scene == "driving" else index,
                "split": split_of(spec, index),
                "boxes": frame_boxes(frame, spec.min_pixels),
            }
        )
    return labels


def export(
    spec: ExportSpec, workers: int | None = None, progress: Callable[[int, int, float], None] | None = None
) -> dict[str, Any]:
    """Render `spec.frames` frames with up to `workers` processes and write the dataset; a summary."""
    (spec.out / "images").mkdir(parents=True, exist_ok=True)
    units = episodes(spec)
    workers = max(1, min(workers or os.cpu_count() or 1, len(units)))
    start = time.monotonic()
    labels: list[dict[str, Any]] = []
    if workers == 1:
        results: Iterator[list[dict[str, Any]]] = (render_episode(spec, unit) for unit in units)
        for batch in results:
            labels += batch
            if progress:
                progress(len(labels), spec.frames, time.monotonic() - start)
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(render_episode, spec, unit) for unit in units]
            for future in futures:
                labels += future.result()
                if progress:
                    progress(len(labels), spec.frames, time.monotonic() - start)
    labels.sort(key=lambda item: item["index"])
    (write_coco if spec.format == "coco" else write_yolo)(spec, labels)
    boxes = sum(not box.get("ignore") for item in labels for box in item["boxes"])
    return {
        "frames": len(labels),
        "val_frames": sum(item["split"] == "val" for item in labels),
        "boxes": boxes,
        "seconds": round(time.monotonic() - start, 1),
        "workers": workers,
        "out": str(spec.out),
        "format": spec.format,
    }


def write_coco(spec: ExportSpec, labels: list[dict[str, Any]]) -> None:
    """annotations.json (every frame, each image with its "split"), and train.json and val.json: the
    same in two disjoint parts."""
    document = _coco(spec, labels)
    (spec.out / "annotations.json").write_text(json.dumps(document))
    for split in ("train", "val"):
        part = _coco(spec, [item for item in labels if item["split"] == split])
        (spec.out / f"{split}.json").write_text(json.dumps(part))


def _coco(spec: ExportSpec, labels: list[dict[str, Any]]) -> dict[str, Any]:
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for item in labels:
        images.append(
            {
                "id": item["index"],
                "file_name": f"images/{item['file']}",
                "width": item["width"],
                "height": item["height"],
                "episode": item["episode"],
                "split": item["split"],
            }
        )
        for box in item["boxes"]:
            x1, y1, x2, y2 = box["xyxy"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": item["index"],
                    "category_id": box["class_id"],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(bool(box.get("ignore"))),
                    "track_id": box["track_id"],
                    "visible_fraction": box["visible_fraction"],
                }
            )
    categories = [{"id": i, "name": name} for i, name in enumerate(spec.vocabulary)]
    return {
        "info": {"description": f"percept {spec.scene} scenes", "seed": spec.seed},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def write_yolo(spec: ExportSpec, labels: list[dict[str, Any]]) -> None:
    (spec.out / "labels").mkdir(exist_ok=True)
    for item in labels:
        lines = []
        for box in item["boxes"]:
            if box.get("ignore"):  # YOLO's labels have no don't-care regions: left out
                continue
            x1, y1, x2, y2 = box["xyxy"]
            w, h = item["width"], item["height"]
            lines.append(
                f"{box['class_id']} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            )
        (spec.out / "labels" / item["file"].replace(".png", ".txt")).write_text(
            "\n".join(lines) + ("\n" if lines else "")
        )
    for split in ("train", "val"):  # image lists, as Ultralytics reads them
        files = [f"images/{item['file']}" for item in labels if item["split"] == split]
        (spec.out / f"{split}.txt").write_text("".join(f"./{f}\n" for f in files))
    # Quoted: a class named on, no or null would read back from YAML as true, false or nothing.
    names = "\n".join(f"  {i}: {json.dumps(name)}" for i, name in enumerate(spec.vocabulary))
    (spec.out / "data.yaml").write_text(  # no `path`: the YAML's folder, wherever the folder is moved
        f"train: train.txt\nval: val.txt\nnames:\n{names}\n"
    )


def progress_bar(done: int, total: int, elapsed: float) -> None:
    width = 30
    filled = int(width * done / total)
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else 0.0
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} frames  {rate:.1f} frames/s  "
        f"ETA {eta:.0f} s "
    )
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()
