"""Parallel-jaw grasps from a depth image and detections (a library: arrays in, grasps out).

    planner = GraspPlanner()
    plan = planner.plan(depth, K, world_from_camera, boxes, class_names)
    plan.grasps          # feasible grasps, best first (world frame), up to `per_object` per object
    plan.rejected        # (detection index, reason) for objects without one
    plan.pushes          # when no grasp is left: pushes for those, best first

Per frame: depth pixels become world points (every `step`-th pixel); RANSAC finds the supporting plane
among the points outside the boxes; cells beside a jump in height between two standing cells mark
where objects meet. Per detection: the cells standing above the plane, cut at those jumps and where
another detection's box claims them (nearer its centre); the object is every piece lying mostly inside
its box (a touching neighbour lies mostly outside it), and in the plane's frame its footprint.
Candidates approach along the plane's normal at every `angle_step_deg` of the half-turn from the
footprint's narrow axis and along the sides of its smallest enclosing rectangle, at the deepest grasp
height the fingers reach, then higher ones while none fits (the pads close on the part above the grasp
height; higher, the fingertips pass over lower neighbours). Each needs an opening within the gripper's,
finger pads that land on free space, not on a neighbour, and nothing higher than the hand's underside
under the hand's body (it would stop the hand short of the grasp: most failures in piles). The
quality prefers room to spare in the opening, the narrow axis, and clearance from neighbours. Grasps that failed before (told by the
caller) are not offered again. When no grasp is left to offer in the whole frame, the objects without
one get pushes instead (perception.grasp.push): straight lines low over the table that move one away
from its neighbours or turn it. What the planner takes and refuses (the gripper, the workspace, the
arguments' checks): perception.grasp.inputs.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from perception.geometry import back_project_slopes, quaternion_from_matrix
from perception.grasp.geometry import Plane, fit_plane
from perception.grasp.inputs import (
    Gripper,
    Workspace,
    checked_boxes,
    checked_depth,
    checked_intrinsics,
    checked_names,
    checked_pose,
    refuse_unless,
)
from perception.grasp.pick_policy import repeats
from perception.grasp.push import plan_pushes
from perception.msgs import is_number


class OutsideWorkspace(str):
    """A reason that means "not to be picked here" rather than "cannot be picked"."""


MIN_GRIP_DEPTH = 0.02  # metres of the object the pads hold at the highest grasp tried
HEIGHT_TOLERANCE = 0.005  # points this far below the grasp height still meet the pads
OBSTACLE_CELL = 0.005  # metres: neighbours are checked against the pads on a grid this fine
SAME_ANGLE = math.radians(2.0)  # closing directions closer than this are one candidate
CLEARANCE_COUNTED = 0.03  # metres of free room round the pads that raise a grasp's quality...
CLEARANCE_WEIGHT = 0.2  # ...by up to this much
OPEN_MARGIN = 0.01  # metres the fingers open wider each side than the object needs, where there is room
PLANE_POINTS = 2000  # depth cells outside the boxes the table's plane is fitted to
PUSH_MARGIN = 0.05  # metres inside the workspace's bounds that a pushed object's middle must stay


@dataclass(frozen=True)
class Grasp:
    """One parallel-jaw grasp, in the world frame (that of world_from_camera), metres.

    position: the point between the fingertips at the grasp height. orientation: the hand's, a unit
    quaternion (x, y, z, w): its z axis the approach (into the table, along its normal), its y axis the
    closing direction (the Panda's convention). width: the opening to command: the held part's extent
    across, the gripper's clearance each side, and up to OPEN_MARGIN more each side where nothing stands
    there; at most the gripper's max_opening. quality: 0-1, from room to spare in the opening (up to
    0.5), closing across an elongated object's narrow axis (0.3) and free room round the pads (0.2);
    grasps are ranked by it. detection: the index of its box in plan()'s boxes; class_name: that box's
    name ("" without names). closing: the unit direction the fingers close along (the hand's y axis;
    either sign, the jaws are symmetric)."""

    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]
    width: float
    quality: float
    detection: int
    class_name: str
    closing: tuple[float, float, float]


@dataclass(frozen=True)
class Push:
    """A straight push with the closed fingers: down at `start`, along the table to `end` (world points
    at the fingertips' height), for an object that no grasp fits."""

    start: tuple[float, float, float]
    end: tuple[float, float, float]
    quality: float  # 0-1
    detection: int  # index of the detection it pushes
    class_name: str
    kind: str  # "separate" (away from its neighbours) or "turn" (off its middle)


@dataclass
class Plan:
    """What GraspPlanner.plan found for one frame: each detection has grasps (up to `per_object`), or
    is in rejected or in outside.

    grasps: the feasible grasps, best (highest quality) first. rejected: (detection index, reason) for
    each detection without one: a box that is empty, not finite or off the image, holes in the depth,
    an object too far to measure (depth in millimetres?), no grasp that fits, each grasp failed before.
    outside: (detection index, reason) for objects outside the workspace or taller than its max_height:
    not to be picked here, so neither grasped nor pushed. pushes: only when no detection has a grasp,
    pushes for the objects rejected after a search for grasps (none fits, or each failed before), best
    first. plane: the table's plane in the world frame (n . p + d = 0, n towards the camera); None when
    too little of the depth lies outside the boxes to find it. planning_ms: how long plan() took."""

    grasps: list[Grasp] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    pushes: list[Push] = field(default_factory=list)
    outside: list[tuple[int, str]] = field(default_factory=list)
    plane: Plane | None = None
    planning_ms: float = 0.0


@dataclass
class GraspPlanner:
    """Ranked parallel-jaw grasps from one depth frame and its detections (the module's docstring says
    how), for `gripper` within `workspace`.

    plan(depth, K, world_from_camera, boxes, class_names=None, failed=()) takes:
      depth: H x W floats, metres along the optical axis (NaN or 0 where there is no reading),
        registered to the image the boxes were found in. Integer depth (a camera's raw millimetres) is
        refused: multiply it by the camera's depth scale first.
      K: that image's 3 x 3 intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], pixels.
      world_from_camera: the 4 x 4 rigid transform from the camera's optical frame (OpenCV axes: x
        right, y down, z forward) to the world frame the grasps are wanted in.
      boxes: N x 4 pixels (x1, y1, x2, y2); class_names: one str per box, or None.
    It returns a Plan: grasps in the world frame, metres, and a reason for every detection without one.
    Inputs that cannot be right (a wrong shape, integer depth, a principal point off the image, a
    non-finite K or pose, a pose that is not rigid, a str for the names) raise GraspInputError, a
    ValueError; what is wrong with one detection (a NaN or inverted box, one off the image, holes in
    its depth) is a reason in Plan.rejected.

    Settings: step: use every step-th pixel each way (1 or more). min_height: metres above the table a
    point stands to belong to an object. min_points: fewer points of an object than this (3 or more)
    and it has no grasp. angle_step_deg: in-plane angles tried round the half-turn, from the narrow axis
    (0-180). grasp_heights: heights tried, from as deep as the fingers reach up to MIN_GRIP_DEPTH below
    the top (1 or more). per_object: grasps kept per object, distinct, so a pick loop has another to try
    (1 or more). jump: metres: a height step this large between neighbouring grid cells is an edge
    between objects (the grid's cells are 2-3 mm apart: a rounded side's slope stays under it).
    min_height and jump must be under the workspace's max_height: no object in it could stand higher
    or make a larger step. seed: the plane fit's random draws. pushes: plan pushes for objects without
    a feasible grasp."""

    gripper: Gripper = field(default_factory=Gripper)
    workspace: Workspace = field(default_factory=Workspace)
    step: int = 2
    min_height: float = 0.008
    min_points: int = 12
    angle_step_deg: float = 15.0
    grasp_heights: int = 3
    per_object: int = 3
    jump: float = 0.01
    seed: int = 0
    pushes: bool = True

    def __post_init__(self) -> None:
        def integer_from(least: int, name: str) -> None:
            value = getattr(self, name)
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= least
            refuse_unless(ok, f"GraspPlanner.{name}", f"an integer, {least} or more", value)

        def metres_under_max_height(name: str) -> None:
            value, most = getattr(self, name), self.workspace.max_height
            ok = is_number(value) and 0 < value < most
            refuse_unless(ok, f"GraspPlanner.{name}", f"metres over 0, under max_height {most:g}", value)

        integer_from(1, "step")
        # A footprint of fewer than 3 points has no area: no width to measure across it.
        integer_from(3, "min_points")
        integer_from(1, "grasp_heights")
        # A cap on the grasps a pick loop is offered per object (_distinct stops when it is reached): 0
        # is never reached, and kept every candidate.
        integer_from(1, "per_object")
        metres_under_max_height("min_height")
        metres_under_max_height("jump")
        # Past the half-turn no angle but the narrow axis is tried; past a whole turn, not even that
        # (round(180 / step) angles).
        angle = self.angle_step_deg
        ok = is_number(angle) and 0 < angle <= 180
        refuse_unless(ok, "GraspPlanner.angle_step_deg", "degrees over 0, 180 at most", angle)

    def plan(
        self,
        depth: np.ndarray,
        K: np.ndarray,
        world_from_camera: np.ndarray,
        boxes: np.ndarray,
        class_names: Sequence[str] | np.ndarray | None = None,
        failed: Iterable[tuple[np.ndarray, np.ndarray]] = (),
    ) -> Plan:
        """Grasps for the detected objects (the class's docstring says what each argument is). `failed`:
        grasps (world position, closing direction) that failed since the scene last moved
        (perception.grasp.FailedGrasps); none is offered again, and an object whose every grasp repeats
        one is rejected. Pushes are planned only when no grasp is left to offer: a loop grasps first."""
        start = time.perf_counter()
        depth = checked_depth(depth)
        K = checked_intrinsics(K, depth.shape)
        world_from_camera = checked_pose(world_from_camera)
        boxes = checked_boxes(boxes)
        names = checked_names(class_names, len(boxes))
        result = Plan()
        grid = self._grid(depth, K, world_from_camera, boxes)
        if grid is None:
            result.rejected = [
                (i, "too few depth readings outside the boxes to find the table") for i in range(len(boxes))
            ]
            result.planning_ms = (time.perf_counter() - start) * 1000
            return result
        result.plane = grid.plane
        failed = list(failed)
        unpushed: list[_Unpushed] = []  # objects rejected, with what a push needs of them
        for index in range(len(boxes)):
            reason_or_grasps = self._plan_object(index, boxes, names[index], grid, failed, unpushed)
            if isinstance(reason_or_grasps, OutsideWorkspace):
                result.outside.append((index, str(reason_or_grasps)))
            elif isinstance(reason_or_grasps, str):
                result.rejected.append((index, reason_or_grasps))
            else:
                result.grasps.extend(reason_or_grasps)
        result.grasps.sort(key=lambda g: -g.quality)
        if self.pushes and not result.grasps:
            for rejected in unpushed:
                result.pushes.extend(self._pushes(rejected, grid.plane, *grid.axes))
        result.pushes.sort(key=lambda push: -push.quality)
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
        sub[~valid] = 0.0
        grid = _Grid(s, sub, valid, K, world_from_camera)
        outside = valid.copy()
        for box in boxes[np.isfinite(boxes).all(axis=1)]:  # a NaN box has no cells: its detection's reason
            r0, r1, c0, c1 = _cells(box, s, *sub.shape)
            outside[r0:r1, c0:c1] = False
        # Up to PLANE_POINTS cells outside the boxes, drawn at random: most of a frame is table, so a
        # few draws per point find them without listing every cell.
        rng = np.random.default_rng(self.seed)
        drawn = rng.integers(0, outside.size, 3 * PLANE_POINTS)
        cells = drawn[outside.ravel()[drawn]][:PLANE_POINTS]
        if len(cells) < PLANE_POINTS:  # mostly boxes, holes or off the table: draw from those there are
            every = np.flatnonzero(outside)
            if len(every) < 50:
                return None
            cells = every[rng.integers(0, len(every), min(len(every), PLANE_POINTS))]
        rows, cols = np.divmod(cells, outside.shape[1])
        grid.plane, _ = fit_plane(grid.points(rows, cols), world_from_camera[:3, 3], rng)
        grid.heights = grid.height_map()
        grid.above = valid & (grid.heights > self.min_height)
        grid.edges = _height_jumps(grid.heights, grid.above, self.jump)
        return grid

    # -- per object --------------------------------------------------------------------------------

    def _plan_object(
        self,
        index: int,
        boxes: np.ndarray,
        name: str,
        grid: _Grid,
        failed: list[tuple[np.ndarray, np.ndarray]],
        unpushed: list[_Unpushed],
    ) -> str | list[Grasp]:
        """Grasps for detection `index` (of `boxes`) that do not repeat a failed one, or why it has none
        (an OutsideWorkspace reason: not to pick); an object without one is added to `unpushed`."""
        s, (h, w) = grid.step, grid.valid.shape
        box = boxes[index]
        x1, y1, x2, y2 = box
        if not np.all(np.isfinite(box)) or x2 <= x1 or y2 <= y1:
            return f"box {np.round(box, 1).tolist()} is empty or not finite"
        r0, r1, c0, c1 = _cells(box, s, h, w)
        if c1 <= c0 or r1 <= r0:
            return f"box {np.round(box, 1).tolist()} lies outside the {w * s}x{h * s} depth image"
        too_far = self._too_far_to_measure(grid, (r0, r1, c0, c1))
        if too_far:
            return too_far
        above = grid.above
        standing_here = above[r0:r1, c0:c1]
        if int(standing_here.sum()) < self.min_points:
            return f"{int(standing_here.sum())} depth points above the table in the box (holes, or nothing there)"
        # The object is cut out of a window round its box (as wide again each side): room to see whether a
        # piece of the patch lies mostly inside the box. Its neighbours come from the frame's map instead.
        pad_r, pad_c = max(r1 - r0, 20), max(c1 - c0, 20)
        wr0, wr1, wc0, wc1 = max(r0 - pad_r, 0), min(r1 + pad_r, h), max(c0 - pad_c, 0), min(c1 + pad_c, w)
        box_cells = (slice(r0 - wr0, r1 - wr0), slice(c0 - wc0, c1 - wc0))
        mine = self._object_cells(index, boxes, grid, (wr0, wr1, wc0, wc1), (r0, r1, c0, c1), box_cells)
        rows, cols = np.nonzero(mine)
        if len(rows) < self.min_points:
            return f"what is left of it once cut from its neighbours has {len(rows)} depth points"
        e1, e2 = grid.axes
        object_points = grid.points(rows + wr0, cols + wc0)
        heights = grid.heights[wr0:wr1, wc0:wc1]
        flat = np.stack([object_points @ e1, object_points @ e2], axis=1)
        standing = heights[rows, cols]
        k = int(0.95 * (len(standing) - 1))  # its 95th percentile height (np.percentile costs 0.1 ms)
        top = float(np.partition(standing, k)[k])
        middle = (flat.min(axis=0) + flat.max(axis=0)) / 2
        refused = self.workspace.refuses(_in_world(middle, 0.0, grid.plane, e1, e2), top)
        if refused:
            return OutsideWorkspace(refused)
        levels = self._levels(top)
        near_flat, near_heights, hand_flat, hand_heights = self._neighbours(grid, flat, middle, levels[0])
        found = self._candidates(
            index,
            name,
            flat,
            standing,
            levels,
            near_flat,
            near_heights,
            hand_flat,
            hand_heights,
            grid.plane,
            e1,
            e2,
        )
        if not isinstance(found, str) and failed:
            fresh = ~repeats(
                np.array([g.position for g in found]), np.array([g.closing for g in found]), failed
            )
            found = [g for g, keep in zip(found, fresh, strict=True) if keep] or (
                f"each of its {len(found)} grasp(s) failed before"
            )
        if isinstance(found, str):
            # A push needs the footprint to a few millimetres, not every depth point of it: thinned as the
            # neighbours are, it costs a fifth as much.
            unpushed.append(_Unpushed(index, name, _thinned(flat, standing)[0], top, near_flat, near_heights))
        return found

    def _too_far_to_measure(self, grid: _Grid, cells: tuple[int, int, int, int]) -> str:
        """Why the object in these cells lies too far for its width to be measured, or "": its grid
        cells, step * z / f apart at depth z, would lie further apart than the gripper opens even at its
        nearest reading, so whatever fits the opening is at most one cell across. No table within an arm's
        reach is that far (for the Panda's 7.8 cm opening, the simulator's 640 x 480 camera and step 2:
        17 m); depth in millimetres read as metres is, hundreds of metres."""
        r0, r1, c0, c1 = cells
        readings = grid.depth[r0:r1, c0:c1][grid.valid[r0:r1, c0:c1]]
        if not len(readings):
            return ""  # holes: the count of points above the table says so
        nearest = float(readings.min())
        spacing = grid.step * nearest / max(grid.K[0, 0], grid.K[1, 1])
        if spacing <= self.gripper.max_opening:
            return ""
        return (
            f"its nearest depth reading is {nearest:.3g} m away, where depth cells lie {spacing:.3g} m "
            f"apart, more than the gripper's {self.gripper.max_opening:g} m opening: is the depth in millimetres? "
            "(expected metres)"
        )

    def _neighbours(
        self, grid: _Grid, flat: np.ndarray, middle: np.ndarray, lowest: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What stands round an object within the hand's reach of its middle (plane frame, thinned to the
        tallest per OBSTACLE_CELL square, with heights), less the object's own squares: where the pads
        could meet something; and of those, what the hand's body could come down on: higher than its
        underside at the `lowest` grasp height, and not bordering the object's squares either (its
        rounded sides, which the fingers straddle)."""
        g = self.gripper
        every, heights, keys = grid.standing()
        reach = float(np.abs(flat - middle).max()) + math.hypot(g.hand_length / 2, g.hand_width / 2)
        # What stands taller than the workspace's tallest object is the arm (over the table at its home
        # pose, out of the way by the time the hand comes down), not a neighbour.
        near = np.flatnonzero(
            (np.abs(every - middle) <= reach).all(axis=1) & (heights <= self.workspace.max_height)
        )
        own = np.unique(_cell_keys(flat))
        near = near[~_among(keys, own)[near]]
        tall = near[heights[near] > lowest + g.palm_height - HEIGHT_TOLERANCE]
        if len(tall):
            tall = tall[~_among(keys, (own[:, None] + _NEIGHBOUR_KEYS[None, :]).ravel())[tall]]
        return every[near], heights[near], every[tall], heights[tall]

    def _pushes(self, rejected: _Unpushed, plane: Plane, e1: np.ndarray, e2: np.ndarray) -> list[Push]:
        """Pushes for an object no grasp fits, in the world frame; the object's new place must be in the
        workspace, PUSH_MARGIN inside its bounds (so a push never clears the table by shoving an object
        off it)."""
        g = self.gripper

        def inside(point: np.ndarray) -> bool:
            x, y = _in_world(point, 0.0, plane, e1, e2)[:2]
            (x0, x1), (y0, y1), m = self.workspace.x, self.workspace.y, PUSH_MARGIN
            within_reach = math.hypot(x, y) <= self.workspace.reach - m
            return bool(x0 + m <= x <= x1 - m and y0 + m <= y <= y1 - m and within_reach)

        r = rejected
        found = plan_pushes(
            r.footprint,
            r.top,
            r.near_flat,
            r.near_heights,
            2 * g.pad_thickness,
            g.pad_width,
            g.max_opening,
            inside,
        )
        return [
            Push(
                start=tuple(float(v) for v in _in_world(c.start, c.height, plane, e1, e2)),  # type: ignore[arg-type]
                end=tuple(float(v) for v in _in_world(c.end, c.height, plane, e1, e2)),  # type: ignore[arg-type]
                quality=c.quality,
                detection=r.index,
                class_name=r.name,
                kind=c.kind,
            )
            for c in found
        ]

    def _object_cells(
        self,
        index: int,
        boxes: np.ndarray,
        grid: _Grid,
        window: tuple[int, int, int, int],
        cells: tuple[int, int, int, int],
        box_cells: tuple[slice, slice],
    ) -> np.ndarray:
        """Detection `index`'s object as a mask of the window's cells. Touching objects stand in one
        patch above the table: it is cut where the height jumps between neighbouring cells (one object's
        side against another's) and where another detection's box claims the cells (nearer its centre),
        and the object is every piece lying mostly inside this box: a neighbour leaning in lies mostly
        outside it, while a step within the object itself (a plinth, a mug's rim) leaves its pieces
        inside. Then the object's own rim, lost to the cut (a jump has two sides), is given back."""
        wr0, wr1, wc0, wc1 = window
        r0, r1, c0, c1 = cells
        standing = grid.above[wr0:wr1, wc0:wc1]
        edges = grid.edges[wr0:wr1, wc0:wc1]
        inside = np.zeros_like(standing)
        inside[box_cells] = True
        claimed = np.ones_like(standing)
        claimed[box_cells] = _owned(index, boxes, grid.step, r0, r1, c0, c1)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            (standing & ~edges & claimed).astype(np.uint8), connectivity=8
        )
        in_box = np.bincount(labels[inside], minlength=count)
        mostly_inside = in_box >= 0.5 * np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
        mostly_inside[0] = False  # the background
        mine: np.ndarray = mostly_inside[labels]
        if int(mine.sum()) < self.min_points:  # too little left once cut: the box's largest patch
            _, labels, stats, _ = cv2.connectedComponentsWithStats(
                (standing & inside).astype(np.uint8), connectivity=8
            )
            if len(stats) < 2:
                return np.zeros_like(standing)
            return np.asarray(labels == 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax()))
        # One cell deep: the rim beside the cut. Grown deeper through edge cells it could walk into a
        # touching neighbour's own rim; a rounded side's outer cells stay out instead, and count as a
        # neighbour's (the pads keep that much further off: the safe side).
        rim = cv2.dilate(mine.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & edges & standing
        whole: np.ndarray = mine | (rim & inside)
        return whole

    def _candidates(
        self,
        index: int,
        name: str,
        flat: np.ndarray,
        point_heights: np.ndarray,
        levels: list[float],
        near_flat: np.ndarray,
        near_heights: np.ndarray,
        hand_flat: np.ndarray,
        hand_heights: np.ndarray,
        plane: Plane,
        e1: np.ndarray,
        e2: np.ndarray,
    ) -> str | list[Grasp]:
        """The best grasps of one object, searched over in-plane angles (the whole half-turn: the jaws
        are symmetric) at the deepest of its grasp `levels` (see _levels), then higher ones only while
        none fits (a higher grasp holds less of the object, but its fingertips pass over lower neighbours
        and close on a narrower top); or why none is feasible."""
        g = self.gripper
        narrowest, blocked = math.inf, False
        for level in levels:
            # The pads close on what stands between them: the object's points above the grasp height
            # (a wide base below the fingertips does not widen the grasp).
            held = flat[point_heights >= level - HEIGHT_TOLERANCE]
            if len(held) < 3:
                continue
            # The extent along any direction is the convex hull's: a few dozen points instead of hundreds.
            hull = held[cv2.convexHull(held.astype(np.float32), returnPoints=False).ravel()]
            angles, elongation = self._angles(held, hull)
            closings = np.stack([np.cos(angles), np.sin(angles)], axis=1)
            acrosses = np.stack([-closings[:, 1], closings[:, 0]], axis=1)
            along, across = hull @ closings.T, hull @ acrosses.T  # points x angles
            low_c, high_c, low_a, high_a = along.min(0), along.max(0), across.min(0), across.max(0)
            widths = high_c - low_c + 2 * g.clearance
            narrowest = min(narrowest, float((high_c - low_c).min()))
            fits = np.flatnonzero(widths <= g.max_opening)
            if not len(fits):
                continue
            # Room in the opening, the narrow axis (for elongated objects) and clearance, in that order.
            off_axis = np.abs(np.sin(angles - angles[0]))  # from the held part's narrow axis (first)
            bases = 0.5 * (1 - widths / g.max_opening) + 0.3 * (1 - elongation * off_axis)
            middles = ((high_c + low_c) / 2)[:, None] * closings + ((high_a + low_a) / 2)[:, None] * acrosses
            # Neighbours tall enough to meet fingers at this height, and the pads' room from them. Points
            # beyond the pads' reach plus the room at which clearance stops counting cannot change it.
            centre = middles[fits].mean(axis=0)
            reach = (
                float(np.linalg.norm(middles[fits] - centre, axis=1).max())
                + g.max_opening / 2 + g.pad_thickness + g.pad_width / 2 + CLEARANCE_COUNTED
            )  # fmt: skip
            offsets = near_flat - centre
            near = (near_heights > level - 0.01) & (np.einsum("pd,pd->p", offsets, offsets) <= reach * reach)
            obstacles = near_flat[near]
            # Higher neighbours the hand's body would come down on (the fingers straddle the object).
            under_hand = hand_flat[hand_heights > level + g.palm_height - HEIGHT_TOLERANCE]
            # Every candidate that fits, best first; those kept are the best distinct grasps (not repeats
            # in the pick policy's sense), so one that fails leaves the pick loop others to try.
            order = fits[np.argsort(-bases[fits], kind="stable")]
            free = self._pad_clearance(
                middles[order], closings[order], acrosses[order], widths[order], obstacles, under_hand
            )
            clear = free >= 0.0
            clear_k, clear_f = order[clear], free[clear]
            clear_q = bases[clear_k] + CLEARANCE_WEIGHT * np.minimum(clear_f / CLEARANCE_COUNTED, 1.0)
            kept = self._distinct(clear_q, middles[clear_k], closings[clear_k])
            kept_k, kept_q, kept_f = clear_k[kept], clear_q[kept], clear_f[kept]
            if len(kept_k):
                # The opening to command: as measured, plus the free room round the pads up to
                # OPEN_MARGIN each side, for what depth does not show (a rounded side under its
                # silhouette, a few millimetres of error in the measured width).
                openings = np.minimum(widths[kept_k] + 2 * np.minimum(kept_f, OPEN_MARGIN), g.max_opening)
                return [
                    self._grasp(index, name, middles[k], closings[k], level, float(opening), q, plane, e1, e2)
                    for k, q, opening in zip(kept_k.tolist(), kept_q.tolist(), openings.tolist(), strict=True)
                ]
            blocked = True
        if blocked:
            return (
                "no feasible grasp: a finger or the hand would come down on a neighbour at every angle "
                "and height that fits"
            )
        return (
            f"no feasible grasp: {narrowest * 100:.1f} cm across where narrowest (every "
            f"{self.angle_step_deg:g}° of the half-turn, {len(levels)} grasp height(s)), wider than the opening"
        )

    def _levels(self, top: float) -> list[float]:
        """Grasp heights to try for an object this tall, deepest first: as deep as the fingers reach (half
        its height at most), up to MIN_GRIP_DEPTH below its top."""
        lowest = max(top / 2, top - self.gripper.finger_length, 0.01)
        highest = max(lowest, top - MIN_GRIP_DEPTH)
        if highest <= lowest or self.grasp_heights < 2:
            return [lowest]
        steps = self.grasp_heights - 1
        return [lowest + (highest - lowest) * i / steps for i in range(steps + 1)]

    def _distinct(self, qualities: np.ndarray, middles: np.ndarray, closings: np.ndarray) -> np.ndarray:
        """Up to `per_object` rows, best first, none a repeat of a better one (the pick policy's
        `repeats`)."""
        kept: list[int] = []
        for row in np.argsort(-qualities, kind="stable").tolist():
            better = [(middles[other], closings[other]) for other in kept]
            if not repeats(middles[row : row + 1], closings[row : row + 1], better)[0]:
                kept.append(row)
                if len(kept) == self.per_object:
                    break
        return np.array(kept, np.int64)

    def _angles(self, held: np.ndarray, hull: np.ndarray) -> tuple[np.ndarray, float]:
        """Closing directions to try (radians): the narrow axis of the held points first, then every
        `angle_step_deg` round the half-turn from it, and the sides of their smallest enclosing
        rectangle (the narrowest direction of a square, which the spread's axes do not find; from their
        convex `hull`); and how elongated the held part is (0 round or square, towards 1 long and
        thin)."""
        # The spread's axes in closed form (a 2 x 2 eigenproblem; numpy's eigh costs more than the rest).
        centred = held - held.mean(axis=0)
        (sxx, sxy), (_, syy) = (centred.T @ centred).tolist()
        mean, spread = (sxx + syy) / 2, math.hypot((sxx - syy) / 2, sxy)
        narrow = 0.5 * math.atan2(2 * sxy, sxx - syy) + math.pi / 2  # across the widest spread
        elongation = 1.0 - math.sqrt(max(mean - spread, 0.0) / max(mean + spread, 1e-12))
        steps = round(180.0 / self.angle_step_deg)
        regular = narrow + math.radians(self.angle_step_deg) * np.arange(steps)
        (_, _), (_, _), rect_deg = cv2.minAreaRect(hull.astype(np.float32))
        rect = math.radians(rect_deg)
        # The rectangle's sides often repeat an angle already there (the jaws make angles alike mod pi):
        # a side closer than SAME_ANGLE to one of them adds nothing. (The two sides are a quarter apart.)
        sides = np.array([rect, rect + math.pi / 2])
        apart = np.abs(np.mod(sides[:, None] - regular[None, :] + math.pi / 2, math.pi) - math.pi / 2)
        angles: np.ndarray = np.concatenate([regular, sides[apart.min(axis=1) >= SAME_ANGLE]])
        return angles, elongation

    def _pad_clearance(
        self,
        middles: np.ndarray,
        closings: np.ndarray,
        acrosses: np.ndarray,
        widths: np.ndarray,
        obstacles: np.ndarray,
        under_hand: np.ndarray,
    ) -> np.ndarray:
        """For each candidate (rows of grasp middles, closing and across directions, widths, in the
        plane's frame): the distance (m) from its pads' swept boxes to the nearest obstacle point
        (neighbours tall enough to meet the fingers), or -1 where a point lies inside one, or one of
        `under_hand` (points higher than the hand's underside) lies under the hand's body."""
        g = self.gripper
        free: np.ndarray = np.ones(len(middles))
        # Each point's offset from each candidate's middle along its closing and across directions
        # (points x candidates), as projections less the middle's own.
        middle_c = np.einsum("kd,kd->k", middles, closings)
        middle_a = np.einsum("kd,kd->k", middles, acrosses)
        if len(obstacles):
            c = np.abs(obstacles @ closings.T - middle_c)
            a = np.abs(obstacles @ acrosses.T - middle_a)
            # Outside the pads' box: how far; inside it: -1.
            dc = np.maximum(np.abs(c - (widths / 2 + g.pad_thickness / 2)) - g.pad_thickness / 2, 0.0)
            da = np.maximum(a - g.pad_width / 2, 0.0)
            squared = dc * dc + da * da
            free = np.sqrt(squared.min(axis=0))
            free[(squared == 0).any(axis=0)] = -1.0
        if len(under_hand):
            c = np.abs(under_hand @ closings.T - middle_c)
            a = np.abs(under_hand @ acrosses.T - middle_a)
            free[((c <= g.hand_length / 2) & (a <= g.hand_width / 2)).any(axis=0)] = -1.0
        return free

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
        position = _in_world(middle, grasp_height, plane, e1, e2)
        close_world = closing[0] * e1 + closing[1] * e2
        approach = -plane.normal
        # The hand: z along the approach, fingers closing along y (the Panda's convention).
        side = np.array(
            [  # close_world x approach (np.cross costs tens of microseconds on 3-vectors)
                close_world[1] * approach[2] - close_world[2] * approach[1],
                close_world[2] * approach[0] - close_world[0] * approach[2],
                close_world[0] * approach[1] - close_world[1] * approach[0],
            ]
        )
        rotation = np.stack([side, close_world, approach], axis=1)
        return Grasp(
            position=(float(position[0]), float(position[1]), float(position[2])),
            orientation=quaternion_from_matrix(rotation),
            width=float(width),
            quality=float(quality),
            detection=index,
            class_name=name,
            closing=(float(close_world[0]), float(close_world[1]), float(close_world[2])),
        )


def _in_world(point: np.ndarray, height: float, plane: Plane, e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    """The world point `height` above the plane over a point of the plane's frame (e1, e2 its basis):
    the plane's point under it, then up along its normal."""
    on_plane = point[0] * e1 + point[1] * e2 - plane.offset * plane.normal
    world: np.ndarray = on_plane + height * plane.normal
    return world


def _height_jumps(heights: np.ndarray, above: np.ndarray, jump: float) -> np.ndarray:
    """Cells standing above the plane beside a 4-neighbour, also standing, more than `jump` higher or
    lower: both sides of a step between objects (a step down to the table is an outline, not a cut)."""
    edges = np.zeros_like(above)
    for axis in (0, 1):
        low = [slice(None), slice(None)]
        high = [slice(None), slice(None)]
        low[axis], high[axis] = slice(None, -1), slice(1, None)
        a, b = tuple(low), tuple(high)
        step = (np.abs(heights[b] - heights[a]) > jump) & above[a] & above[b]
        edges[a] |= step
        edges[b] |= step
    return edges


def _owned(index: int, boxes: np.ndarray, step: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """The cells [r0, r1) x [c0, c1) of box `index` that no other box claims: a cell inside another box
    belongs to whichever box's centre is nearer (in pixels: a small object beside a large one keeps
    its own cells, where distances measured in each box's size would hand them to the large one)."""
    rows = (np.arange(r0, r1) * step + step / 2)[:, None]
    cols = (np.arange(c0, c1) * step + step / 2)[None, :]

    def distance(box: np.ndarray) -> np.ndarray:
        squared: np.ndarray = (cols - (box[0] + box[2]) / 2) ** 2 + (rows - (box[1] + box[3]) / 2) ** 2
        return squared

    mine = distance(boxes[index])
    owned = np.ones((r1 - r0, c1 - c0), bool)
    # Only boxes that overlap these cells can claim any (in clutter a box overlaps a few of a dozen).
    x0, x1, y0, y1 = c0 * step, c1 * step, r0 * step, r1 * step
    overlapping = (boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1) & (boxes[:, 3] > y0)
    overlapping &= np.isfinite(boxes).all(axis=1)
    overlapping[index] = False
    for other in np.flatnonzero(overlapping).tolist():
        box = boxes[other]
        inside = (cols >= box[0]) & (cols < box[2]) & (rows >= box[1]) & (rows < box[3])
        owned &= ~(inside & (distance(box) < mine))
    return owned


def _thinned(points: np.ndarray, heights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour points (N x 2, in the plane) kept one per OBSTACLE_CELL square, the tallest: the pads
    are 12 x 22 mm, so a finer obstacle map only costs time in clutter."""
    keep = _tallest_per_cell(points, heights)
    return points[keep], heights[keep]


def _tallest_per_cell(points: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """Rows of `points` (N x 2, in the plane) to keep: the tallest in each OBSTACLE_CELL square, in the
    order of the squares' keys (_cell_keys)."""
    if len(points) == 0:
        return np.zeros(0, np.int64)
    cells = _squares(points)
    cells -= cells.min(axis=0)
    square = cells[:, 0] * (int(cells[:, 1].max()) + 1) + cells[:, 1]  # ordered as the keys are
    # One sort by square, then tallest first within it (heights in hundredths of a millimetre).
    depth = HEIGHT_UNITS - 1 - np.clip(heights * 1e5, 0, HEIGHT_UNITS - 1).astype(np.int64)
    order = np.argsort(square * HEIGHT_UNITS + depth)
    ordered = square[order]
    first = np.ones(len(order), bool)
    first[1:] = ordered[1:] != ordered[:-1]
    keep: np.ndarray = order[first]
    return keep


HEIGHT_UNITS = 1 << 24  # hundredths of a millimetre: up to 167 m


def _squares(points: np.ndarray) -> np.ndarray:
    """The OBSTACLE_CELL square of the plane each point lies in (points N x 2 -> integers N x 2)."""
    squares: np.ndarray = np.floor(points / OBSTACLE_CELL).astype(np.int64)
    return squares


def _cell_keys(points: np.ndarray) -> np.ndarray:
    """One integer per OBSTACLE_CELL square of the plane (points N x 2)."""
    cells = _squares(points)
    keys: np.ndarray = (cells[:, 0] << 32) + cells[:, 1]
    return keys


def _among(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Which of the sorted, distinct `keys` are among `wanted` (np.isin, by binary search)."""
    found = np.zeros(len(keys), bool)
    if len(keys):
        at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        found[at[keys[at] == wanted]] = True
    return found


# Key offsets from a cell to itself and its 8 neighbours (see _cell_keys).
_NEIGHBOUR_KEYS = np.array([(dx << 32) + dy for dx in (-1, 0, 1) for dy in (-1, 0, 1)], np.int64)


def _cells(box: np.ndarray, step: int, h: int, w: int) -> tuple[int, int, int, int]:
    """Rows and columns [r0, r1) x [c0, c1) of a pixel box on the grid of every step-th pixel."""
    x1, y1, x2, y2 = box
    return (
        min(max(int(y1) // step, 0), h),
        max(min(math.ceil(y2 / step), h), 0),
        min(max(int(x1) // step, 0), w),
        max(min(math.ceil(x2 / step), w), 0),
    )


@dataclass(frozen=True)
class _Unpushed:
    """An object without a grasp to offer, and what planning a push for it needs (plane frame)."""

    index: int
    name: str
    footprint: np.ndarray  # its points, thinned
    top: float
    near_flat: np.ndarray  # its neighbours' points and heights
    near_heights: np.ndarray


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
        self.edges = np.zeros_like(valid)  # cells beside a jump in height: where objects meet
        self.axes = (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
        self._standing: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def standing(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every standing cell of the frame in the plane's frame, thinned to the tallest per
        OBSTACLE_CELL square: points (N x 2), heights and the squares' keys, sorted (made once per
        frame)."""
        if self._standing is None:
            rows, cols = np.nonzero(self.above)
            world = self.points(rows, cols)
            e1, e2 = self.axes
            flat = np.stack([world @ e1, world @ e2], axis=1)
            heights = self.heights[rows, cols]
            keep = _tallest_per_cell(flat, heights)  # in the order of their squares' keys
            self._standing = flat[keep], heights[keep], _cell_keys(flat[keep])
        return self._standing

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
        heights: np.ndarray = self.depth * along
        heights += plane.normal @ origin + plane.offset
        heights[~self.valid] = 0.0
        return heights
