"""Pinhole camera geometry for PyBullet renders: intrinsics from the projection matrix, metric depth
from the OpenGL depth buffer, the camera's pose in the world (OpenCV optical frame: x right, y down,
z forward), and boxes from a segmentation mask (rotations and back-projection: perception.geometry).
Plain numpy: no PyBullet here.

Facts measured in PyBullet 3.2.7 (shared/field-notes-grasping.md): the field of view is vertical; view
matrices are column-major (reshape(4, 4).T); TinyRenderer casts pixel (u, v) through
(u - W/2, v + 1 - H/2) / f, so its principal point is (W/2, H/2 - 1) in pixel-index coordinates; the
EGL plugin follows OpenGL's rule (pixel centres at half-integers, rows flipped): (W/2 - 0.5, H/2 - 0.5).
Measured with squares facing the camera, their mask's centroid against their centre projected with K:
within 0.09 px on both renderers at 320x240, 640x480, 641x479, 1280x720 and a 20-degree field of view
(docs/benchmarks.md, "The simulator's ground truth"; tests/sim/test_sim.py holds it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perception.geometry import PIXEL_CENTRE

# Principal point offset from (W/2, H/2), per renderer, in pixel-index coordinates; see the docstring.
PIXEL_OFFSET = {"tiny": (0.0, -1.0), "egl": (-0.5, -0.5)}


@dataclass(frozen=True)
class CameraSpec:
    """Where the camera is and how it sees."""

    width: int = 640
    height: int = 480
    fov_deg: float = 58.0  # vertical
    near: float = 0.05
    far: float = 5.0
    eye: tuple[float, float, float] = (0.95, -0.03, 0.6)
    target: tuple[float, float, float] = (0.52, -0.03, 0.0)
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera size must be positive, found {self.width} x {self.height}")
        if not 0 < self.near < self.far:
            raise ValueError(f"camera clip planes need 0 < near < far, found near={self.near} far={self.far}")
        forward = np.subtract(self.target, self.eye)
        if np.linalg.norm(np.cross(forward, self.up)) < 1e-9:
            raise ValueError(f"camera up vector {self.up} is parallel to the view direction {tuple(forward)}")


def view_matrix(spec: CameraSpec) -> np.ndarray:
    """The 4x4 world-to-camera matrix in OpenGL axes (x right, y up, z backwards), row-major."""
    eye, target, up = (np.asarray(v, np.float64) for v in (spec.eye, spec.target, spec.up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    side = np.cross(forward, up)
    side /= np.linalg.norm(side)
    true_up = np.cross(side, forward)
    view = np.eye(4)
    view[0, :3], view[1, :3], view[2, :3] = side, true_up, -forward
    view[:3, 3] = -view[:3, :3] @ eye
    return view


def projection_matrix(spec: CameraSpec) -> np.ndarray:
    """The 4x4 OpenGL projection matrix for a vertical field of view, row-major."""
    aspect = spec.width / spec.height
    f = 1.0 / math.tan(math.radians(spec.fov_deg) / 2)
    n, fa = spec.near, spec.far
    return np.array(
        [
            [f / aspect, 0, 0, 0],
            [0, f, 0, 0],
            [0, 0, (fa + n) / (n - fa), 2 * fa * n / (n - fa)],
            [0, 0, -1, 0],
        ]
    )


def tile_projection(spec: CameraSpec, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """The projection matrix that draws only the part of `spec`'s image from column x0 and row y0 (from
    the top), `width` x `height` pixels, as an image of that size: the same rays, the frustum cut."""
    projection = projection_matrix(spec)
    tile = projection.copy()
    bottom = spec.height - y0 - height  # OpenGL counts rows from the bottom
    # Adding c times the last row (which gives w = -z) shifts normalised device coordinates by c.
    tile[0] = projection[0] * spec.width / width + projection[3] * ((spec.width - 2 * x0) / width - 1)
    tile[1] = projection[1] * spec.height / height + projection[3] * ((spec.height - 2 * bottom) / height - 1)
    return tile


def gl_list(matrix: np.ndarray) -> list[float]:
    """A row-major 4x4 matrix as the column-major flat list PyBullet takes."""
    return [float(v) for v in matrix.T.reshape(-1)]


def intrinsics(spec: CameraSpec, renderer: str = "tiny") -> np.ndarray:
    """The 3x3 K matrix derived from the projection matrix."""
    projection = projection_matrix(spec)
    fx = projection[0, 0] * spec.width / 2
    fy = projection[1, 1] * spec.height / 2
    du, dv = PIXEL_OFFSET[renderer]
    return np.array([[fx, 0, spec.width / 2 + du], [0, fy, spec.height / 2 + dv], [0, 0, 1]])


def depth_from_buffer(buffer: np.ndarray, near: float, far: float) -> np.ndarray:
    """Metric depth (distance along the optical axis, metres, float32) from OpenGL depth in [0, 1].
    Pixels on the far plane (nothing hit) become NaN."""
    # float32 throughout (the buffer's own type): about 1 um error at 1 m (tabletop), 6 mm at 100 m
    # (driving), and a third of the time of float64 on a frame with cold caches after rendering.
    d = np.asarray(buffer, np.float32)
    denominator = d * np.float32(near - far)
    denominator += np.float32(far)
    depth = np.float32(far * near) / denominator
    depth[d >= 1.0] = np.nan
    return depth


def world_from_camera(spec: CameraSpec) -> np.ndarray:
    """4x4 pose of the camera's optical frame (OpenCV axes) in the world."""
    return np.linalg.inv(view_matrix(spec)) @ np.diag([1.0, -1.0, -1.0, 1.0])


def box_of_projection(pixels: np.ndarray) -> np.ndarray:
    """The box (x1, y1, x2, y2, in boxes_from_mask's pixel edges) of points projected with K (N x 2)."""
    return np.concatenate([pixels.min(axis=0), pixels.max(axis=0)]) + PIXEL_CENTRE


def boxes_from_mask(mask: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each id: its visible box (x1, y1, x2, y2; pixel edges, so x2 = last column + 1: see
    perception.geometry.PIXEL_CENTRE) and its pixel count in the mask. Ids with no pixel get count 0 and a box of NaN. One
    pass over the mask."""
    ids = np.asarray(ids, np.int64).reshape(-1)
    boxes = np.full((len(ids), 4), np.nan, np.float32)
    counts = np.zeros(len(ids), np.int64)
    if len(ids) == 0 or ids.max() < 0:
        return boxes, counts
    lookup = np.full(int(ids.max()) + 2, -1, np.int64)  # mask value -> index in ids (last slot: others)
    lookup[ids[ids >= 0]] = np.flatnonzero(ids >= 0)
    flat = np.asarray(mask).reshape(-1)
    index = lookup[np.clip(flat, -1, len(lookup) - 1)]  # -1 and values beyond the ids map to -1
    pixels = np.flatnonzero(index >= 0)
    which = index[pixels]
    rows, cols = np.divmod(pixels, mask.shape[1])
    counts[:] = np.bincount(which, minlength=len(ids))
    low = np.full((len(ids), 2), np.iinfo(np.int64).max)
    high = np.full((len(ids), 2), -1)
    np.minimum.at(low, (which, 0), cols)
    np.minimum.at(low, (which, 1), rows)
    np.maximum.at(high, (which, 0), cols)
    np.maximum.at(high, (which, 1), rows)
    seen = counts > 0
    boxes[seen] = np.concatenate([low[seen], high[seen] + 1], axis=1)
    return boxes, counts
