"""The supporting plane of a depth image, for grasp planning (rotations and back-projection are in
perception.geometry)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Plane:
    """n . p + d = 0, with n a unit normal pointing to the side the camera is on."""

    normal: np.ndarray
    offset: float

    def height(self, points: np.ndarray) -> np.ndarray:
        """Signed distance of points above the plane (towards the camera)."""
        result: np.ndarray = points @ self.normal + self.offset
        return result

    def basis(self) -> tuple[np.ndarray, np.ndarray]:
        """Two unit vectors spanning the plane (the first as close to world x as the plane allows)."""
        reference = np.array([1.0, 0.0, 0.0]) if abs(self.normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        first = reference - self.normal * (reference @ self.normal)
        first /= np.linalg.norm(first)
        return first, np.cross(self.normal, first)


SCORED_POINTS = 500  # points of the cloud each RANSAC hypothesis is scored on


def fit_plane(
    points: np.ndarray,
    camera_position: np.ndarray,
    rng: np.random.Generator,
    iterations: int = 60,
    threshold: float = 0.004,
) -> tuple[Plane, int]:
    """The dominant plane of a point cloud by RANSAC, refined by least squares on its inliers, and its
    inlier count. The normal is turned towards the camera, so heights above it are positive."""
    if len(points) < 3:
        raise ValueError(f"plane fit: expected at least 3 points, found {len(points)}")
    samples = points[rng.integers(0, len(points), (iterations, 3))]
    normals = np.cross(samples[:, 1] - samples[:, 0], samples[:, 2] - samples[:, 0])
    lengths = np.linalg.norm(normals, axis=1)
    usable = lengths > 1e-9
    if not usable.any():
        raise ValueError("plane fit: the points are collinear")
    normals = normals[usable] / lengths[usable, None]
    offsets = -np.einsum("ij,ij->i", normals, samples[usable, 0])
    # Hypotheses are scored on a few hundred of the points (the table is most of them: a sample ranks
    # the planes as all of them would, at a fraction of the cost); the winner's inliers are all of them.
    scored = points[:: max(1, len(points) // SCORED_POINTS)]
    counts = (np.abs(scored @ normals.T + offsets) < threshold).sum(axis=0)
    best = int(counts.argmax())
    inliers = points[np.abs(points @ normals[best] + offsets[best]) < threshold]
    centre = inliers.mean(axis=0)
    # Least squares: the normal is the direction of least spread of the inliers (the 3 x 3 scatter's
    # eigenvector of the smallest eigenvalue: the SVD of every inlier costs more, for the same axis).
    centred = inliers - centre
    normal = np.linalg.eigh(centred.T @ centred)[1][:, 0]
    if normal @ (camera_position - centre) < 0:
        normal = -normal
    return Plane(normal, float(-normal @ centre)), len(inliers)
