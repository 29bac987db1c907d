"""Controlled changes to a seeded scene, one factor at a time at severities 1-5, for robustness sweeps
rendered in the simulator (`percept bench detect --factors`, the `*-robustness` suites).

Each factor changes one thing and leaves the seeded scene otherwise as it was (the same objects in the
same places, the same camera and light unless the factor is the camera or the light):
- lighting: the light swings towards the horizon, dims and warms. PyBullet's EGL renderer takes the
  light's direction but ignores its colour and strength (measured: lightColor and the ambient/diffuse
  coefficients change no pixel there), so the direction is rendered and the dimming and colour are a
  per-channel gain on the rendered frame, the same on either renderer;
- scale: the field of view widens (tan of its half-angle x1.2 to x2.5), so objects come out smaller,
  as if farther away;
- occlusion: a low grey wall stands between the camera and each labelled object, halfway along the
  line of sight, hiding the lower 10% to 60% of it; the ground truth's visible fraction and box come
  from the segmentation, so they say what really shows;
- clutter (tabletop): 2 to 10 more objects on the table, placed around the ones already there;
- camera_height: the camera moves from its mounting height with its target fixed (tabletop: down by
  7 cm a step, towards a grazing view; driving: up by 0.5 m a step, as on a truck or a pole);
- traffic (driving): 1.5x to 3.5x the cars and 1 to 5 more pedestrians. More road users are drawn
  from the episode's seeded generator after the first ones, so the first cars are the same and the
  pedestrians and cones that follow them differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pybullet as p

from sim.camera import CameraSpec

FACTORS = {
    "tabletop": ("lighting", "scale", "occlusion", "clutter", "camera_height"),
    "driving": ("lighting", "scale", "occlusion", "camera_height", "traffic"),
}
SEVERITIES = (1, 2, 3, 4, 5)
OCCLUDER_RGBA = (0.55, 0.55, 0.52, 1.0)


@dataclass(frozen=True)
class Variation:
    """One factor at one severity; the default (CLEAN) is the scene as designed."""

    factor: str = "none"
    severity: int = 0

    def check(self, scene: str) -> None:
        if self.factor == "none":
            return
        if self.factor not in FACTORS[scene]:
            raise ValueError(
                f"factor: expected one of {', '.join(FACTORS[scene])} for the {scene} scene, found {self.factor!r}"
            )
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity: expected 1 to 5, found {self.severity}")

    @property
    def label(self) -> str:
        return "clean" if self.factor == "none" else f"{self.factor}-{self.severity}"


CLEAN = Variation()


def scene_params(scene: str, params: Any, variation: Variation) -> Any:
    """The scene's parameters under the variation (traffic density is a parameter)."""
    if variation.factor == "traffic":
        s = variation.severity
        return replace(params, cars=round(params.cars * (1 + 0.5 * s)), pedestrians=params.pedestrians + s)
    return params


def extra_objects(variation: Variation) -> int:
    """How many objects clutter adds to a tabletop scene."""
    return 2 * variation.severity if variation.factor == "clutter" else 0


def camera(spec: CameraSpec, scene: str, variation: Variation) -> CameraSpec:
    """The camera as the variation moves or widens it."""
    s = variation.severity
    if variation.factor == "scale":
        widen = (1.2, 1.4, 1.7, 2.0, 2.5)[s - 1]
        half = math.atan(math.tan(math.radians(spec.fov_deg) / 2) * widen)
        return replace(spec, fov_deg=math.degrees(2 * half))
    if variation.factor == "camera_height":
        step = -0.07 if scene == "tabletop" else 0.5
        eye = (spec.eye[0], spec.eye[1], spec.eye[2] + step * s)
        return replace(spec, eye=eye)
    return spec


def light(
    direction: tuple[float, float, float], variation: Variation
) -> tuple[tuple[float, float, float], np.ndarray]:
    """The light's direction, and the per-channel gain on the rendered frame (RGB)."""
    if variation.factor != "lighting":
        return direction, np.ones(3)
    s = variation.severity
    x, y, z = direction
    # Lower the light's elevation: keep its bearing, shrink its height towards the horizon.
    lowered = (x, y, z * (1.0 - 0.17 * s))
    gain = (1.0 - 0.11 * s) * np.array([1.0, 1.0 - 0.05 * s, 1.0 - 0.1 * s])
    return lowered, gain


def apply_gain(rgb: np.ndarray, gain: np.ndarray) -> np.ndarray:
    if np.all(gain == 1.0):
        return rgb
    return np.asarray(np.clip(rgb.astype(np.float32) * gain, 0, 255).round().astype(np.uint8))


class Occluders:
    """One grey wall per labelled object, just in front of it (5% nearer the camera than its nearest
    point), as wide as the object seen from there and covering the lower `coverage` of its silhouette
    (as a low wall, a hedge or a parked car hides what stands behind it). A tall thin strip would look like a post
    or a pedestrian, so sweeps would count detections of the occluders rather than what they hide.
    Walls are made again each frame (objects move and turn, and PyBullet cannot resize a body)."""

    def __init__(self, client: int, coverage: float) -> None:
        self.client = client
        self.coverage = coverage
        self.panels: list[int] = []

    @classmethod
    def for_variation(cls, client: int, variation: Variation) -> Occluders | None:
        """Panels for a freshly built scene (a reset world has none), or None without occlusion."""
        if variation.factor != "occlusion":
            return None
        return cls(client, (0.1, 0.2, 0.3, 0.45, 0.6)[variation.severity - 1])

    def place(self, objects: list[Any], spec: CameraSpec) -> None:
        for panel in self.panels:
            p.removeBody(panel, physicsClientId=self.client)
        self.panels = []
        eye = np.asarray(spec.eye, np.float64)
        for obj in objects:
            position, orientation = p.getBasePositionAndOrientation(obj.body, physicsClientId=self.client)
            centre = np.asarray(position)
            sight = centre - eye
            side = np.cross(sight, (0.0, 0.0, 1.0))
            if np.linalg.norm(side) < 1e-9 or len(obj.vertices) == 0:
                continue
            side /= np.linalg.norm(side)
            rotation = np.array(p.getMatrixFromQuaternion(orientation)).reshape(3, 3)
            points = centre + obj.vertices @ rotation.T  # its surface, in the world
            flat = np.array([sight[0], sight[1], 0.0])
            forward = flat / max(float(np.linalg.norm(flat)), 1e-9)
            ahead = (points - eye) @ forward  # each point's distance along the horizontal view
            if ahead.min() <= 0.05:
                continue  # beside or behind the camera: nothing to hide
            wall = max(ahead.min() * 0.95, 0.3 * float(ahead.mean()))  # just in front of its nearest point
            # Where the rays from the eye to its surface cross the wall's (vertical) plane: the
            # object's silhouette there. The wall spans its width (with a margin) and its lowest
            # `coverage` of height, so it hides that share of what the camera sees of it.
            crossing = eye + (points - eye) * (wall / ahead)[:, None]
            across, up = (crossing - eye) @ side, crossing[:, 2]
            width = 1.1 * float(across.max() - across.min())
            low = float(up.min())
            high = low + self.coverage * float(up.max() - low)
            middle = eye + wall * forward + side * float(across.max() + across.min()) / 2
            middle[2] = (low + high) / 2
            visual = p.createVisualShape(
                p.GEOM_BOX,
                halfExtents=[0.002, width / 2, (high - low) / 2],
                rgbaColor=list(OCCLUDER_RGBA),
                physicsClientId=self.client,
            )
            yaw = math.atan2(sight[1], sight[0])
            self.panels.append(
                p.createMultiBody(
                    0,
                    -1,
                    visual,
                    middle.tolist(),
                    p.getQuaternionFromEuler([0, 0, yaw]),
                    physicsClientId=self.client,
                )
            )
