"""One camera frame of a scene with its ground truth: the simulator's core, without any sockets
(the sim node publishes it; dataset export writes it to disk)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import pybullet as p

from sim.camera import CameraSpec, box_of_projection, boxes_from_mask, intrinsics, world_from_camera
from sim.world import World


class Scene(Protocol):
    world: World
    camera: CameraSpec
    light_direction: tuple[float, float, float]
    objects: list[Any]  # each with body, class_name, class_id, vertices (and maybe uid)


@dataclass
class Frame:
    rgb: np.ndarray  # H x W x 3 uint8
    depth: np.ndarray  # H x W float32 metres, NaN where nothing was hit
    mask: np.ndarray  # H x W int32 body ids, -1 background
    K: np.ndarray
    pose: np.ndarray  # 4 x 4 world_from_camera (OpenCV optical frame)
    ids: np.ndarray  # each visible object's identity (see capture)
    bodies: np.ndarray  # each visible object's PyBullet body: its pixels in `mask`
    class_ids: np.ndarray
    class_names: list[str]
    xyxy: np.ndarray  # the visible pixels' boxes
    extents: np.ndarray  # the whole objects' boxes, hidden parts included (the projected outline's box,
    # clipped to the image), as MOTChallenge annotates people
    positions: np.ndarray
    orientations: np.ndarray
    visible_fraction: np.ndarray
    pixels: np.ndarray  # visible pixel count per object
    sim_time_s: float


def capture(scene: Scene) -> Frame:
    """Render the scene's camera and describe every object that has at least one visible pixel."""
    world, spec = scene.world, scene.camera
    rgb, depth, mask = world.render(spec, scene.light_direction)
    K = intrinsics(spec, world.renderer)
    pose = world_from_camera(spec)
    bodies = np.array([o.body for o in scene.objects], np.int64)
    # The identity ground truth reports: a scene's own uid where it has one (the driving scene gives a
    # road user that came back a new one, and PyBullet reuses removed bodies' ids), else the body id.
    ids = np.array([getattr(o, "uid", o.body) for o in scene.objects], np.int64)
    boxes, counts = boxes_from_mask(mask, bodies)
    visible = counts > 0
    pixels = counts[visible]
    objects = [o for o, v in zip(scene.objects, visible, strict=True) if v]
    positions = np.zeros((len(objects), 3))
    orientations = np.zeros((len(objects), 4))
    fractions = np.zeros(len(objects), np.float32)
    extents = boxes[visible].astype(np.float64)
    camera_from_world = np.linalg.inv(pose)
    for i, obj in enumerate(objects):
        position, orientation = p.getBasePositionAndOrientation(obj.body, physicsClientId=world.client)
        positions[i], orientations[i] = position, orientation
        area, outline = _silhouette(obj.vertices, position, orientation, camera_from_world, K)
        fractions[i] = min(1.0, pixels[i] / area) if area > 0 else 1.0
        if area > 0:  # the outline's box, clipped; never smaller than the visible pixels' own
            clipped = np.clip(outline, 0, [spec.width, spec.height, spec.width, spec.height])
            extents[i] = np.r_[
                np.minimum(clipped[:2], extents[i, :2]), np.maximum(clipped[2:], extents[i, 2:])
            ]
    return Frame(
        rgb=rgb,
        depth=depth,
        mask=mask,
        K=K,
        pose=pose,
        ids=ids[visible],
        bodies=bodies[visible],
        class_ids=np.array([o.class_id for o in objects], np.int32),
        class_names=[o.class_name for o in objects],
        xyxy=boxes[visible],
        extents=extents,
        positions=positions,
        orientations=orientations,
        visible_fraction=fractions,
        pixels=pixels,
        sim_time_s=world.time_s,
    )


def _silhouette(
    vertices: np.ndarray, position: Any, orientation: Any, camera_from_world: np.ndarray, K: np.ndarray
) -> tuple[float, np.ndarray]:
    """Pixel area of the convex hull of the object's projected vertices, unclipped by the image border,
    and the hull's box (xyxy, in the visible boxes' pixel edges): the whole silhouette, so occlusion and
    truncation both lower the visible fraction. (A convex hull overestimates concave shapes such as a
    mug's handle gap a little.)"""
    if len(vertices) == 0:
        return 0.0, np.zeros(4)
    rotation = np.array(p.getMatrixFromQuaternion(orientation)).reshape(3, 3)
    world = vertices @ rotation.T + np.asarray(position)
    camera = world @ camera_from_world[:3, :3].T + camera_from_world[:3, 3]
    camera = camera[camera[:, 2] > 1e-3]
    if len(camera) < 3:
        return 0.0, np.zeros(4)
    pixels = (camera[:, :2] / camera[:, 2:3]) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    hull = cv2.convexHull(pixels.astype(np.float32))
    return float(cv2.contourArea(hull)), box_of_projection(pixels)
