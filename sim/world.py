"""One PyBullet physics client and its renderer.

The EGL renderer plugin is used where it loads (on this CPU it renders 640x480 about 2.5x faster than
TinyRenderer, through Mesa; on a GPU much faster), else TinyRenderer. It must be loaded before any body
(a plugin loaded after bodies renders blank), so `World` loads it on connect.
"""

from __future__ import annotations

import contextlib
import logging
import pkgutil
from typing import Any

import cv2
import numpy as np
import pybullet as p
import pybullet_data

from sim import quiet as _quiet
from sim.camera import CameraSpec, depth_from_buffer, gl_list, tile_projection, view_matrix

PHYSICS_HZ = 240
RENDERERS = ("auto", "egl", "tiny")
EGL_RESETS_PER_CONNECTION = 25  # memory held stays under ~0.35 GiB above a fresh world
# The EGL plugin draws into a 1024 x 768 buffer and stretches a larger image out of it, nearest
# neighbour: at 1280x720 a column in five repeated the one before (1920x1080: 47% of the columns, 29%
# of the rows) and the picture sat 0.37 px right of where K puts it. Larger images are drawn in tiles.
EGL_MOST = (1024, 768)
log = logging.getLogger("sim.world")


class World:
    def __init__(self, renderer: str = "auto", gui: bool = False) -> None:
        if renderer not in RENDERERS:
            raise ValueError(f"renderer: expected one of {', '.join(RENDERERS)}, found {renderer!r}")
        self.gui = gui
        self.connections = 0  # how many times it connected (see reset)
        self._resets_on_this_connection = 0
        self._connect(renderer)
        self.reset()

    def _connect(self, renderer: str) -> None:
        self.connections += 1
        with _quiet():
            self.client = p.connect(p.GUI if self.gui else p.DIRECT)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self.client)
        self.renderer = "tiny"
        if renderer in ("auto", "egl"):
            loader: Any = pkgutil.get_loader("eglRenderer")
            with _quiet():
                plugin = (
                    p.loadPlugin(loader.get_filename(), "_eglRendererPlugin", physicsClientId=self.client)
                    if loader
                    else -1
                )
            if plugin >= 0:
                self.renderer = "egl"
            elif renderer == "egl":
                raise RuntimeError(
                    "the EGL renderer plugin did not load (no EGL library?); use renderer 'tiny'"
                )
        log.info("rendering with %s", "the EGL plugin" if self.renderer == "egl" else "TinyRenderer")

    def reset(self) -> None:
        """An empty world (resetSimulation also zeroes gravity and solver settings, so set them again).
        `client` may change: the EGL plugin keeps the GL buffers of every body ever loaded until its
        connection closes (bullet3 issue 4149, open: ~13 MiB a tabletop scene here, 11 GiB over an
        800-frame dataset), so every EGL_RESETS_PER_CONNECTION resets the world connects afresh (0.2 s)."""
        if (
            self.renderer == "egl"
            and not self.gui  # a GUI window would close and open again
            and self._resets_on_this_connection >= EGL_RESETS_PER_CONNECTION
        ):
            self.close()
            self._connect("egl")
            self._resets_on_this_connection = 0
        self._resets_on_this_connection += 1
        with _quiet():
            p.resetSimulation(physicsClientId=self.client)
        self._loud_after = 3
        p.setGravity(0, 0, -9.81, physicsClientId=self.client)
        p.setTimeStep(1.0 / PHYSICS_HZ, physicsClientId=self.client)
        p.setPhysicsEngineParameter(numSolverIterations=150, physicsClientId=self.client)
        self.steps = 0

    def load(self, urdf: str, *args: Any, **kwargs: Any) -> int:
        """loadURDF, with an error that names the file and where it was looked for."""
        try:
            with _quiet():
                return int(p.loadURDF(urdf, *args, physicsClientId=self.client, **kwargs))
        except p.error:
            raise ValueError(
                f"cannot load URDF {urdf!r} (looked in the working folder and {pybullet_data.getDataPath()})"
            ) from None

    def step(self, count: int = 1) -> None:
        for _ in range(count):
            p.stepSimulation(physicsClientId=self.client)
        self.steps += count

    @property
    def time_s(self) -> float:
        return self.steps / PHYSICS_HZ

    def render(
        self, spec: CameraSpec, light_direction: tuple[float, float, float] = (0.5, -0.3, 1.0)
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RGB (H x W x 3 uint8), metric depth (H x W float32, NaN where nothing was hit) and the
        segmentation mask (H x W int32: body id, -1 for background)."""
        renderer = p.ER_BULLET_HARDWARE_OPENGL if self.renderer == "egl" else p.ER_TINY_RENDERER
        most_w, most_h = EGL_MOST if self.renderer == "egl" else (spec.width, spec.height)
        rgba = np.empty((spec.height, spec.width, 4), np.uint8)
        depth = np.empty((spec.height, spec.width), np.float32)
        mask = np.empty((spec.height, spec.width), np.int32)
        view = gl_list(view_matrix(spec))
        # The EGL plugin prints its vendor after a reset, through a stream that surfaces a frame or two
        # later: the first few frames render quietly (quieting every frame would cost milliseconds).
        self._loud_after -= 1
        with _quiet() if self._loud_after >= 0 else contextlib.nullcontext():
            for y0 in range(0, spec.height, most_h):
                for x0 in range(0, spec.width, most_w):
                    w, h = min(most_w, spec.width - x0), min(most_h, spec.height - y0)
                    _, _, tile_rgba, tile_depth, tile_seg = p.getCameraImage(
                        w,
                        h,
                        view,
                        gl_list(tile_projection(spec, x0, y0, w, h)),
                        lightDirection=list(light_direction),
                        shadow=0,  # sticky in PyBullet: pass it every time
                        renderer=renderer,
                        physicsClientId=self.client,
                    )
                    rgba[y0 : y0 + h, x0 : x0 + w] = np.asarray(tile_rgba, np.uint8).reshape(h, w, 4)
                    depth[y0 : y0 + h, x0 : x0 + w] = np.asarray(tile_depth).reshape(h, w)
                    mask[y0 : y0 + h, x0 : x0 + w] = np.asarray(tile_seg, np.int32).reshape(h, w)
        rgb = cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
        return rgb, depth_from_buffer(depth, spec.near, spec.far), mask

    def close(self) -> None:
        with _quiet():
            p.disconnect(physicsClientId=self.client)
