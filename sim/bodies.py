"""Bodies built from visual primitives, for scenes whose agents are drawn, not simulated: one PyBullet
body per agent (one identity in the segmentation mask), and the points of its outline for the frame's
visible-fraction ground truth."""

from __future__ import annotations

import math

import numpy as np
import pybullet as p

Part = tuple[str, list[float], list[float], list[float]]  # shape, size, offset, RGBA colour


RING_POINTS = 24  # round parts' outline: its widest reach within 1 - cos(7.5 deg) = 0.9% of the radius


def round_outline(shape: str, radius: float, length: float) -> np.ndarray:
    """Points on a cylinder's rims, or on a sphere's parallels from pole to pole. (A sphere outlined by
    the rims of the cylinder round it reached up to its rims' projection: a walking person's whole box
    stood 1-4 px above the head the camera saw, 2 px on average.)"""
    angles = np.linspace(0, 2 * math.pi, RING_POINTS, endpoint=False)
    ring = np.c_[np.cos(angles), np.sin(angles)]
    if shape == "sphere":
        latitudes = np.linspace(-math.pi / 2, math.pi / 2, RING_POINTS // 2 + 1)
        return np.concatenate(
            [
                np.c_[ring * radius * math.cos(a), np.full(RING_POINTS, radius * math.sin(a))]
                for a in latitudes
            ]
        )
    return np.concatenate([np.c_[ring * radius, np.full(RING_POINTS, z)] for z in (-length / 2, length / 2)])


def compound(client: int, parts: list[Part]) -> tuple[int, np.ndarray]:
    """One body from visual parts: "box" (half extents), "cylinder" (radius, length) or "sphere"
    (radius), each at an offset from the body's origin. Returns the body id and the outline's points
    (the boxes' corners and rings around the round parts), in the body's frame."""
    shapes: list[int] = []
    offsets: list[list[float]] = []
    points: list[np.ndarray] = []
    for shape, size, offset, color in parts:
        # The first part is the body's base, placed by its visual frame; the others are links, placed by
        # their link positions.
        frame = {} if shapes else {"visualFramePosition": list(offset)}
        if shape == "box":
            shapes.append(
                p.createVisualShape(
                    p.GEOM_BOX, halfExtents=size, rgbaColor=color, physicsClientId=client, **frame
                )
            )
            corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * size
        else:
            radius, length = size[0], size[1] if len(size) > 1 else 2 * size[0]
            if shape == "sphere":
                shapes.append(
                    p.createVisualShape(
                        p.GEOM_SPHERE, radius=radius, rgbaColor=color, physicsClientId=client, **frame
                    )
                )
            else:
                shapes.append(
                    p.createVisualShape(
                        p.GEOM_CYLINDER,
                        radius=radius,
                        length=length,
                        rgbaColor=color,
                        physicsClientId=client,
                        **frame,
                    )
                )
            corners = round_outline(shape, radius, length)
        offsets.append(offset)
        points.append(corners + offset)
    base, *links = shapes
    if not links:
        return int(p.createMultiBody(0, -1, base, [0, 0, -10], physicsClientId=client)), np.concatenate(
            points
        )
    body = p.createMultiBody(
        0,
        -1,
        base,
        [0, 0, -10],
        physicsClientId=client,
        linkMasses=[0] * len(links),
        linkCollisionShapeIndices=[-1] * len(links),
        linkVisualShapeIndices=links,
        linkPositions=offsets[1:],
        linkOrientations=[[0, 0, 0, 1]] * len(links),
        linkInertialFramePositions=[[0, 0, 0]] * len(links),
        linkInertialFrameOrientations=[[0, 0, 0, 1]] * len(links),
        linkParentIndices=[0] * len(links),
        linkJointTypes=[p.JOINT_FIXED] * len(links),
        linkJointAxis=[[0, 0, 1]] * len(links),
    )
    return int(body), np.concatenate(points)
