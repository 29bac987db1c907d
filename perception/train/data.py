"""Training data: labelled sets (`percept dataset export` folders, COCO files, Ultralytics datasets) held in
memory, served as augmented crops.

The network is fully convolutional, so it trains on crops of the full-resolution frames and runs on whole
frames: a crop costs a quarter of a frame to learn from, while objects keep the pixel size they will have
at inference, which is what decides how well small, distant objects are found. A quarter of the crops
zoom out (up to the whole frame) so that objects bigger than a crop are seen whole. Half the crops are
centred near an object (driving frames are mostly road and sky), half are anywhere. The object is drawn
class first, evenly among the classes in the frame, then within its class: a driving frame holds about
five cars to each pedestrian, so drawn by object pedestrians would be the centre of a fifth as many
crops as cars, and the rarer class is the harder one (LVIS's repeat-factor sampling reasons the same way).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from perception.detector.preprocess import PAD_VALUE
from perception.detector.vocabulary import SHIPPED_CLASSES
from perception.errors import PerceptError
from perception.labelled import classes_used, open_split, set_name, training_split


@dataclass
class Dataset:
    name: str
    images: list[np.ndarray]  # H x W x 3 uint8 RGB
    boxes: list[np.ndarray]  # per image, N x 4 float32 x1 y1 x2 y2
    classes: list[np.ndarray]  # per image, N int64 ids into the model's classes


def load_labelled(
    source: str | Path, classes: tuple[str, ...] = SHIPPED_CLASSES, split: str | None = None
) -> Dataset:
    """A labelled set (perception.labelled: a `percept dataset export` folder, a COCO JSON file of any
    origin, an Ultralytics data.yaml) at `split`: by default its train split where it keeps one, else
    all of it (a COCO file, an export from before the splits). Class ids follow the names into
    `classes`, so any order works; a class the model lacks is refused before any image is read."""
    source = Path(source)
    split = split or training_split(source)
    unknown = sorted(classes_used(source, split) - set(classes))
    if unknown:
        added = [n for n in unknown if n not in SHIPPED_CLASSES]
        hint = f" (add yours with --add-class {added[0]})" if added else ""
        raise PerceptError(f"dataset {source}: classes {unknown} are not among {', '.join(classes)}{hint}")
    _, frames = open_split(source, split)
    images, boxes, class_ids = [], [], []
    for rgb, every in frames:
        labels = [box for box in every if not box.get("ignore")]  # a crowd region is no object to learn
        images.append(rgb)
        boxes.append(np.array([box["xyxy"] for box in labels], np.float32).reshape(-1, 4))
        class_ids.append(np.array([classes.index(box["name"]) for box in labels], np.int64))
    return Dataset(set_name(source), images, boxes, class_ids)


@dataclass(frozen=True)
class CropSpec:
    height: int = 240
    width: int = 320
    min_scale: float = 0.75  # a crop covers (scale x height) x (scale x width) source pixels
    max_scale: float = 1.33
    zoom_out: float = 0.25  # share of crops taken at scales up to max_zoom_out instead
    max_zoom_out: float = 2.0  # a 640x480 frame whole: near cars larger than a crop are seen whole too
    near_object: float = 0.5  # share of crops centred near an object
    min_pixels: float = 16.0  # a clipped box smaller than this (in source pixels) is no longer labelled


def random_crop(
    image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, spec: CropSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A crop resized to spec's size (padded where it leaves the image), with its boxes and classes."""
    low, high = (
        (spec.max_scale, spec.max_zoom_out)
        if rng.random() < spec.zoom_out
        else (spec.min_scale, spec.max_scale)
    )
    scale = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    crop_w, crop_h = spec.width * scale, spec.height * scale
    height, width = image.shape[:2]
    if len(boxes) and rng.random() < spec.near_object:
        present = np.unique(classes)
        of_class = np.flatnonzero(classes == present[rng.integers(len(present))])
        x1, y1, x2, y2 = boxes[of_class[rng.integers(len(of_class))]]
        cx = (x1 + x2) / 2 + rng.uniform(-0.4, 0.4) * crop_w
        cy = (y1 + y2) / 2 + rng.uniform(-0.4, 0.4) * crop_h
        left, top = cx - crop_w / 2, cy - crop_h / 2
    else:
        left = rng.uniform(min(0.0, width - crop_w), max(0.0, width - crop_w))
        top = rng.uniform(min(0.0, height - crop_h), max(0.0, height - crop_h))
    # One affine warp does the crop, the resize and the padding.
    s = spec.width / crop_w
    matrix = np.array([[s, 0, -left * s], [0, s, -top * s]], np.float32)
    crop = cv2.warpAffine(
        image,
        matrix,
        (spec.width, spec.height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    )
    # The simulator labels the visible part of an object, so a box cut by the crop keeps its visible part.
    shown = np.clip(boxes - [left, top, left, top], 0, [crop_w, crop_h, crop_w, crop_h]) * s
    visible = np.clip(boxes, 0, [width, height, width, height])
    kept_area = (shown[:, 2] - shown[:, 0]) * (shown[:, 3] - shown[:, 1]) / (s * s)
    keep = (kept_area >= spec.min_pixels) & (visible[:, 2] > visible[:, 0])
    return crop, shown[keep].astype(np.float32), classes[keep]


def augment(
    image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip, per-channel gain and brightness: what lighting and paint vary in the scenes.

    Returns the image as float32 in 0-1, written into `out` (H x W x 3) when given: a training batch
    fills its slots in place, which halves the time spent making batches.
    """
    if rng.random() < 0.5:
        image = image[:, ::-1]
        width = image.shape[1]
        boxes = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)
    gain = (rng.uniform(0.8, 1.2, 3) * rng.uniform(0.7, 1.3) / 255).astype(np.float32)
    out = np.multiply(image, gain, out=out, dtype=np.float32)
    np.minimum(out, 1.0, out=out)  # the gain is positive: only the top needs clipping
    return out, boxes.reshape(-1, 4).astype(np.float32)
