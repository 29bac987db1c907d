"""Parallel-jaw grasps from a depth image and detections (a library: arrays in, grasps out).

    planner = GraspPlanner()
    plan = planner.plan(depth, K, world_from_camera, boxes, class_names)
    plan.grasps          # feasible grasps, best first (world frame), up to `per_object` per object
    plan.rejected        # (detection index, reason) for objects without one

Per frame: depth pixels become world points (every `step`-th pixel); RANSAC finds the supporting plane
among the points outside the boxes. Per detection: the box's pixels standing above the plane, their
largest connected patch (a neighbour leaning into the box is another patch), and in the plane's frame
the object's footprint. Candidates approach along the plane's normal (top-down on a table) at yaws
around the footprint's narrow axis; each needs an opening within the gripper's and finger pads that
land on free space, not on a neighbour. The quality prefers room to spare in the opening, the narrow
axis, and clearance from neighbours.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from perception.geometry import back_project_slopes, quaternion_from_matrix
from perception.grasp.geometry import Plane, fit_plane


@dataclass(frozen=True)
class Gripper:
    """A parallel-jaw gripper: the Panda hand by default (measured in PyBullet, field notes)."""

    max_opening: float = 0.078  # metres between the pads, fully open
    pad_width: float = 0.022  # pad extent across the closing direction
    pad_thickness: float = 0.012  # along the closing direction
    finger_length: float = 0.045  # how deep the fingers reach below the grasp point's top
    clearance: float = 0.008  # free space wanted each side of the object at the opening


@dataclass(frozen=True)
class Workspace:
    """Where objects may be picked from: world x and y bounds of an object's footprint centre, and the
    most an object may stand above the plane (taller things are the arm, or not on the table)."""

    x: tuple[float, float] = (-math.inf, math.inf)
    y: tuple[float, float] = (-math.inf, math.inf)
    max_height: float = 0.30

    def refuses(self, point: np.ndarray, top: float) -> str:
        """Why an object centred at `point` (world) with this top height is not to be picked; "" if it is."""
        x, y = float(point[0]), float(point[1])
        if not (self.x[0] <= x <= self.x[1] and self.y[0] <= y <= self.y[1]):
            return f"outside the workspace at ({x:.2f}, {y:.2f})"
        if top > self.max_height:
            return f"{top * 100:.0f} cm tall: more than the workspace's {self.max_height * 100:.0f} cm"
        return ""


class OutsideWorkspace(str):
    """A reason that means "not to be picked here" rather than "cannot be picked"."""


@dataclass(frozen=True)
class Grasp:
    position: tuple[float, float, float]  # world, between the fingertips
    orientation: tuple[float, float, float, float]  # x, y, z, w; the hand's z axis is the approach
    width: float  # opening to command, metres
    quality: float  # 0-1
    detection: int  # index of the detection it grasps
    class_name: str
    closing: tuple[float, float, float]  # unit direction the fingers close along (world)


@dataclass
class Plan:
    grasps: list[Grasp] = field(default_factory=list)  # best first
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (detection index, reason)
    outside: list[tuple[int, str]] = field(default_factory=list)  # not in the workspace: not to pick
    plane: Plane | None = None
    planning_ms: float = 0.0


@dataclass
class GraspPlanner:
    gripper: Gripper = field(default_factory=Gripper)
    workspace: Workspace = field(default_factory=Workspace)
    step: int = 2  # use every step-th pixel in each direction
    min_height: float = 0.008  # points this far above the plane belong to objects
    min_points: int = 12  # fewer object points than this: no grasp
    yaw_offsets_deg: tuple[float, ...] = (0.0, 15.0, -15.0, 30.0, -30.0, 90.0)
    per_object: int = 3  # feasible candidates kept per object, so a pick loop has another to try
    seed: int = 0

    def plan(
        self,
        depth: np.ndarray,
        K: np.ndarray,
        world_from_camera: np.ndarray,
        boxes: np.ndarray,
        class_names: list[str] | None = None,
    ) -> Plan:
        """Grasps for the detected objects (boxes: N x 4 pixels) in a metric depth image (NaN or 0 for
        no reading); K the 3 x 3 intrinsics; world_from_camera the 4 x 4 optical-frame pose."""
        start = time.perf_counter()
        depth = np.asarray(depth)
        if depth.ndim != 2:
            raise ValueError(f"depth: expected an H x W image in metres, found shape {depth.shape}")
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        names = list(class_names) if class_names else [""] * len(boxes)
        result = Plan()
        grid = self._grid(depth, K, world_from_camera, boxes)
        if grid is None:
            result.rejected = [
                (i, "too few depth readings outside the boxes to find the table") for i in range(len(boxes))
            ]
            result.planning_ms = (time.perf_counter() - start) * 1000
            return result
        result.plane = grid.plane
        for index, box in enumerate(boxes):
            reason_or_grasps = self._plan_object(index, box, names[index], grid)
            if isinstance(reason_or_grasps, OutsideWorkspace):
                result.outside.append((index, str(reason_or_grasps)))
            elif isinstance(reason_or_grasps, str):
                result.rejected.append((index, reason_or_grasps))
            else:
                result.grasps.extend(reason_or_grasps)
        result.grasps.sort(key=lambda g: -g.quality)
        result.planning_ms = (time.perf_counter() - start) * 1000
        return result

    # -- per frame ---------------------------------------------------------------------------------

    def _grid(
        self, depth: np.ndarray, K: np.ndarray, world_from_camera: np.ndarray, boxes: np.ndarray
    ) -> _Grid | None:
        """The supporting plane, and heights above it on the grid of every step-th pixel."""
        s = self.step
        sub = depth[::s, ::s].astype(np.float64)
        valid = np.isfinite(sub) & (sub > 0)
        grid = _Grid(s, np.where(valid, sub, 0.0), valid, K, world_from_camera)
        outside = valid.copy()
        for box in boxes:
            r0, r1, c0, c1 = _cells(box, s, *sub.shape)
            outside[r0:r1, c0:c1] = False
        rows, cols = np.nonzero(outside)
        if len(rows) < 50:
            return None
        rng = np.random.default_rng(self.seed)
        pick = rng.integers(0, len(rows), min(len(rows), 2000))
        grid.plane, _ = fit_plane(grid.points(rows[pick], cols[pick]), world_from_camera[:3, 3], rng)
        grid.heights = grid.height_map()
        grid.above = valid & (grid.heights > self.min_height)
        return grid

    # -- per object --------------------------------------------------------------------------------

    def _plan_object(self, index: int, box: np.ndarray, name: str, grid: _Grid) -> str | list[Grasp]:
        """Grasps for one detection, or why it has none (an OutsideWorkspace reason: not to pick)."""
        s, (h, w) = grid.step, grid.valid.shape
        x1, y1, x2, y2 = box
        if not np.all(np.isfinite(box)) or x2 <= x1 or y2 <= y1:
            return f"box {np.round(box, 1).tolist()} is empty or not finite"
        r0, r1, c0, c1 = _cells(box, s, h, w)
        if c1 <= c0 or r1 <= r0:
            return f"box {np.round(box, 1).tolist()} lies outside the {w * s}x{h * s} depth image"
        above = grid.above
        patch = above[r0:r1, c0:c1].astype(np.uint8)
        if int(patch.sum()) < self.min_points:
            return f"{int(patch.sum())} depth points above the table in the box (holes, or nothing there)"
        _, labels, stats, _ = cv2.connectedComponentsWithStats(patch, connectivity=8)
        largest = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
        # Neighbours that a finger could meet lie in a window around the box (as wide again each side).
        pad_r, pad_c = max(r1 - r0, 20), max(c1 - c0, 20)
        wr0, wr1, wc0, wc1 = max(r0 - pad_r, 0), min(r1 + pad_r, h), max(c0 - pad_c, 0), min(c1 + pad_c, w)
        mine = np.zeros((wr1 - wr0, wc1 - wc0), bool)
        mine[r0 - wr0 : r1 - wr0, c0 - wc0 : c1 - wc0] = labels == largest
        rows, cols = np.nonzero(mine)
        if len(rows) < self.min_points:
            return f"its largest patch above the table has {len(rows)} depth points"
        e1, e2 = grid.axes
        object_points = grid.points(rows + wr0, cols + wc0)
        heights = grid.heights[wr0:wr1, wc0:wc1]
        flat = np.stack([object_points @ e1, object_points @ e2], axis=1)
        near_rows, near_cols = np.nonzero(above[wr0:wr1, wc0:wc1] & ~mine)
        near = grid.points(near_rows + wr0, near_cols + wc0)
        near_flat = np.stack([near @ e1, near @ e2], axis=1)
        near_heights = heights[near_rows, near_cols]
        top = float(np.percentile(heights[rows, cols], 95))
        middle = (flat.min(axis=0) + flat.max(axis=0)) / 2
        refused = self.workspace.refuses(
            middle[0] * e1 + middle[1] * e2 - grid.plane.offset * grid.plane.normal, top
        )
        if refused:
            return OutsideWorkspace(refused)
        return self._candidates(index, name, flat, top, near_flat, near_heights, grid.plane, e1, e2)

    def _candidates(
        self,
        index: int,
        name: str,
        flat: np.ndarray,
        top: float,
        near_flat: np.ndarray,
        near_heights: np.ndarray,
        plane: Plane,
        e1: np.ndarray,
        e2: np.ndarray,
    ) -> str | list[Grasp]:
        g = self.gripper
        centred = flat - flat.mean(axis=0)
        # The narrow axis of the footprint: the eigenvector of the smallest spread.
        eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
        narrow = math.atan2(eigenvectors[1, 0], eigenvectors[0, 0])
        elongation = 1.0 - math.sqrt(max(eigenvalues[0], 0) / max(eigenvalues[1], 1e-12))
        grasp_height = max(top / 2, top - g.finger_length, 0.01)
        reasons: list[str] = []
        grasps: list[Grasp] = []
        for offset in self.yaw_offsets_deg:
            angle = narrow + math.radians(offset)
            closing = np.array([math.cos(angle), math.sin(angle)])
            across = np.array([-closing[1], closing[0]])
            along_c, along_a = flat @ closing, flat @ across
            extent = float(along_c.max() - along_c.min())
            width = extent + 2 * g.clearance
            if width > g.max_opening:
                reasons.append(f"{extent * 100:.1f} cm across at {offset:+.0f}°, wider than the opening")
                continue
            middle = (along_c.max() + along_c.min()) / 2 * closing + (
                along_a.max() + along_a.min()
            ) / 2 * across
            free = self._pad_clearance(middle, closing, across, width, grasp_height, near_flat, near_heights)
            if free < 0.0:
                reasons.append(f"a finger would land on a neighbour at {offset:+.0f}°")
                continue
            # Room in the opening, the narrow axis (for elongated objects), and clearance, in that order.
            quality = (
                0.5 * (1 - width / g.max_opening)
                + 0.3 * (1 - elongation * abs(math.sin(math.radians(offset))))
                + 0.2 * min(free / 0.03, 1.0)
            )
            grasps.append(
                self._grasp(index, name, middle, closing, grasp_height, width, quality, plane, e1, e2)
            )
        if not grasps:
            return "no feasible grasp: " + "; ".join(reasons[:3])
        return sorted(grasps, key=lambda grasp: -grasp.quality)[: self.per_object]

    def _pad_clearance(
        self,
        middle: np.ndarray,
        closing: np.ndarray,
        across: np.ndarray,
        width: float,
        grasp_height: float,
        near_flat: np.ndarray,
        near_heights: np.ndarray,
    ) -> float:
        """Distance (m) from the pads' swept boxes to the nearest neighbour point tall enough to meet
        the fingers; negative where a point lies inside one."""
        g = self.gripper
        if len(near_flat) == 0:
            return 1.0
        tall = near_heights > grasp_height - 0.01
        relative = near_flat[tall] - middle
        if len(relative) == 0:
            return 1.0
        c = np.abs(relative @ closing)
        a = np.abs(relative @ across)
        # Outside the pads' box: how far; inside it: negative.
        dc = np.maximum(np.abs(c - (width / 2 + g.pad_thickness / 2)) - g.pad_thickness / 2, 0.0)
        da = np.maximum(a - g.pad_width / 2, 0.0)
        inside = (dc == 0) & (da == 0)
        if inside.any():
            return -1.0
        return float(np.min(np.hypot(dc, da)))

    def _grasp(
        self,
        index: int,
        name: str,
        middle: np.ndarray,
        closing: np.ndarray,
        grasp_height: float,
        width: float,
        quality: float,
        plane: Plane,
        e1: np.ndarray,
        e2: np.ndarray,
    ) -> Grasp:
        # A point of the plane under the footprint's middle, then up to the grasp height.
        on_plane = middle[0] * e1 + middle[1] * e2 - plane.offset * plane.normal
        position = on_plane + grasp_height * plane.normal
        close_world = closing[0] * e1 + closing[1] * e2
        approach = -plane.normal
        # The hand: z along the approach, fingers closing along y (the Panda's convention).
        rotation = np.stack([np.cross(close_world, approach), close_world, approach], axis=1)
        return Grasp(
            position=(float(position[0]), float(position[1]), float(position[2])),
            orientation=quaternion_from_matrix(rotation),
            width=float(width),
            quality=float(quality),
            detection=index,
            class_name=name,
            closing=(float(close_world[0]), float(close_world[1]), float(close_world[2])),
        )


def _cells(box: np.ndarray, step: int, h: int, w: int) -> tuple[int, int, int, int]:
    """Rows and columns [r0, r1) x [c0, c1) of a pixel box on the grid of every step-th pixel."""
    x1, y1, x2, y2 = box
    return (
        min(max(int(y1) // step, 0), h),
        max(min(math.ceil(y2 / step), h), 0),
        min(max(int(x1) // step, 0), w),
        max(min(math.ceil(x2 / step), w), 0),
    )


class _Grid:
    """One depth frame on the grid of every step-th pixel: validity, then the plane and heights."""

    def __init__(
        self, step: int, depth: np.ndarray, valid: np.ndarray, K: np.ndarray, pose: np.ndarray
    ) -> None:
        self.step, self.depth, self.valid, self.K, self.pose = step, depth, valid, K, pose
        h, w = depth.shape
        # Per column and per row: the ray's slope in the camera frame (x/z and y/z).
        self.slope_x = (np.arange(w) * step - K[0, 2]) / K[0, 0]
        self.slope_y = (np.arange(h) * step - K[1, 2]) / K[1, 1]
        self.plane = Plane(np.array([0.0, 0.0, 1.0]), 0.0)
        self.heights = np.zeros_like(depth)
        self.above = np.zeros_like(valid)  # cells standing on the plane: objects, once the plane is known
        self.axes = (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))

    def points(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """World points of grid cells."""
        z = self.depth[rows, cols]
        return back_project_slopes(self.slope_x[cols], self.slope_y[rows], z, self.pose)

    def height_map(self) -> np.ndarray:
        """Height above the plane of every valid cell: for a point z * R c + t on the ray c, the height
        n . (z R c + t) + d = z (R^T n) . c + (n . t + d), a product of per-row and per-column terms."""
        plane, rotation, origin = self.plane, self.pose[:3, :3], self.pose[:3, 3]
        m = rotation.T @ plane.normal
        along = m[0] * self.slope_x[None, :] + m[1] * self.slope_y[:, None] + m[2]
        self.axes = plane.basis()
        heights: np.ndarray = np.where(
            self.valid, self.depth * along + (plane.normal @ origin + plane.offset), 0.0
        )
        return heights
