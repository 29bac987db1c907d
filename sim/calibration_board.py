"""Views of a calibration board rendered by the simulator, with the camera's exact intrinsics: what
`percept calibrate camera` is tested against (a board in front of a camera, at seeded poses)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pybullet as p

from sim.camera import CameraSpec, intrinsics
from sim.textures import textured_body, write_quad_obj
from sim.world import World


def board_views(
    texture: np.ndarray,
    size_m: tuple[float, float],
    count: int,
    seed: int,
    camera: CameraSpec,
    renderer: str = "auto",
) -> tuple[list[np.ndarray], np.ndarray]:
    """`count` RGB frames of a flat board showing `texture` (grey or RGB, its full extent `size_m` wide
    and high), tilted up to 35 degrees and moved about in front of `camera`; and the camera's K."""
    rng = np.random.default_rng(seed)
    world = World(renderer)
    frames: list[np.ndarray] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            body = board_body(world, Path(folder), texture, size_m)
            eye, target = np.asarray(camera.eye), np.asarray(camera.target)
            forward = (target - eye) / np.linalg.norm(target - eye)
            for _ in range(count):
                distance = rng.uniform(0.45, 0.8)
                side = np.cross(forward, camera.up)
                side /= np.linalg.norm(side)
                up = np.cross(side, forward)
                shift = rng.uniform(-0.25, 0.25) * side + rng.uniform(-0.15, 0.15) * up
                position = eye + forward * distance + shift * distance
                # Face the camera, then tilt about the board's own axes.
                yaw = math.atan2(-forward[1], -forward[0])
                pitch = math.asin(np.clip(-forward[2], -1, 1))
                facing = p.getQuaternionFromEuler([0.0, -math.pi / 2 + pitch, yaw])
                tilt = p.getQuaternionFromEuler([*rng.uniform(-0.6, 0.6, 2), float(rng.uniform(-0.3, 0.3))])
                _, orientation = p.multiplyTransforms([0, 0, 0], facing, [0, 0, 0], tilt)
                p.resetBasePositionAndOrientation(
                    body, position.tolist(), orientation, physicsClientId=world.client
                )
                rgb, _, _ = world.render(camera, light_direction=tuple(-forward))  # type: ignore[arg-type]
                frames.append(rgb)
        return frames, intrinsics(camera, world.renderer)
    finally:
        world.close()


def board_body(world: World, folder: Path, texture: np.ndarray, size_m: tuple[float, float]) -> int:
    """A textured quad (an OBJ with texture coordinates: PyBullet's boxes tile a texture per face)."""
    image = texture if texture.ndim == 3 else cv2.cvtColor(texture, cv2.COLOR_GRAY2BGR)
    cv2.imwrite(str(folder / "board.png"), image)
    quad = write_quad_obj(folder / "board.obj", size_m[0] / 2, size_m[1] / 2)
    visual = p.createVisualShape(p.GEOM_MESH, fileName=str(quad), physicsClientId=world.client)
    texture_id = p.loadTexture(str(folder / "board.png"), physicsClientId=world.client)
    return textured_body(world.client, visual, texture_id, [0, 0, 0])
