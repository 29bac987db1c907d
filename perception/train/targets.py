"""Training targets of the shipped detector (TTFNet-style, one output level), in plain numpy.

Each box puts an elliptical Gaussian peak on its class's heatmap at its centre cell (exactly 1 there),
and asks every cell inside a smaller Gaussian sub-box to regress the distances from the cell to the box's
four sides. Those regression cells are weighted by the sub-box Gaussian, normalised so that each box
weighs log(area) in all: big boxes give more, but not area-proportionally more, signal. Where boxes
overlap the smaller one wins, because it has fewer cells to spare.

The heatmap's Gaussian is centred on the box's own centre, not on its cell's: for a small object whose
centre lies near a cell's edge, the neighbouring cell is then asked for nearly as much as its own, which
is what the network sees (on held-out driving frames the peak of 28% of distant pedestrians fell there).
So that such a peak still boxes the object, each of the 3 x 3 cells around the centre cell that no box
regresses is taught to, weighted as the centre cell times its heatmap value: the centre cell's own weight
is kept whole. Boxes 15 px and up already regress over those cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

STRIDE = 4
HEATMAP_ALPHA = 0.54  # Gaussian size relative to the box, for the class heatmap (TTFNet's alpha)
REGRESSION_BETA = 0.54  # size of the sub-box whose cells regress the box (TTFNet's beta)


@dataclass
class Targets:
    heatmap: np.ndarray  # C x h x w float32, peaks of 1 at box centres
    box: np.ndarray  # 4 x h x w float32: the box (x1, y1, x2, y2, input pixels) each cell regresses; a
    # cell (i, j) stands at input pixel (j * stride + stride / 2, i * stride + stride / 2)
    weight: np.ndarray  # h x w float32, 0 where a cell regresses nothing


class _CentreCell(NamedTuple):
    """What a box leaves for the cells around its centre cell (see the second pass of encode)."""

    box: int
    row: int
    column: int
    weight: float  # the centre cell's regression weight
    centre: tuple[float, float]  # the box's centre (x, y), in the cell-centre units of _gaussian
    sigma: tuple[float, float]  # its heatmap Gaussian's (x, y)


def _gaussian(cx: float, cy: float, sx: float, sy: float, x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    """A Gaussian centred on (cx, cy) in cell units (cell j's centre is at j), over cells [y0, y1) x [x0, x1)."""
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    return np.exp(-((xs - cx) ** 2) / (2 * sx * sx) - ((ys - cy) ** 2) / (2 * sy * sy))


def encode(
    boxes: np.ndarray, classes: np.ndarray, input_hw: tuple[int, int], num_classes: int, stride: int = STRIDE
) -> Targets:
    """Targets for boxes (N x 4, x1 y1 x2 y2, input pixels) of classes (N,) on an input of input_hw."""
    h, w = input_hw[0] // stride, input_hw[1] // stride
    heatmap = np.zeros((num_classes, h, w), np.float32)
    box_target = np.zeros((4, h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    centre_cells: list[_CentreCell] = []
    for i in np.argsort(-areas, kind="stable"):  # largest first, so smaller boxes overwrite
        x1, y1, x2, y2 = boxes[i]
        bw, bh = (x2 - x1) / stride, (y2 - y1) / stride
        if bw <= 0 or bh <= 0:
            continue
        cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
        ci, cj = min(int(cy), h - 1), min(int(cx), w - 1)

        heat_sigma = (max(HEATMAP_ALPHA * bw / 6, 0.35), max(HEATMAP_ALPHA * bh / 6, 0.35))
        rx, ry = int(3 * heat_sigma[0]) + 1, int(3 * heat_sigma[1]) + 1
        x0, xe, y0, ye = max(cj - rx, 0), min(cj + rx + 1, w), max(ci - ry, 0), min(ci + ry + 1, h)
        fx, fy = cx - 0.5, cy - 0.5  # the centre in the cell-centre units of _gaussian
        bump = _gaussian(fx, fy, *heat_sigma, x0, xe, y0, ye)
        region = heatmap[int(classes[i]), y0:ye, x0:xe]
        np.maximum(region, bump, out=region)
        heatmap[int(classes[i]), ci, cj] = 1.0

        sx, sy = max(REGRESSION_BETA * bw / 6, 0.35), max(REGRESSION_BETA * bh / 6, 0.35)
        rx, ry = int(REGRESSION_BETA * bw / 2), int(REGRESSION_BETA * bh / 2)
        x0, xe, y0, ye = max(cj - rx, 0), min(cj + rx + 1, w), max(ci - ry, 0), min(ci + ry + 1, h)
        sub = _gaussian(cj, ci, sx, sy, x0, xe, y0, ye)
        sub *= np.log(max(float(areas[i]), 2.0)) / sub.sum()
        box_target[:, y0:ye, x0:xe] = boxes[i][:, None, None]
        weight[y0:ye, x0:xe] = sub
        centre_cells.append(_CentreCell(i, ci, cj, float(sub[ci - y0, cj - x0]), (fx, fy), heat_sigma))
    claimed = weight > 0
    for cell in centre_cells:  # the free cells around each centre cell
        ci, cj = cell.row, cell.column
        x0, xe, y0, ye = max(cj - 1, 0), min(cj + 2, w), max(ci - 1, 0), min(ci + 2, h)
        extra = cell.weight * _gaussian(*cell.centre, *cell.sigma, x0, xe, y0, ye)
        # A free cell near two small boxes regresses the one whose centre is nearer (relative to its size).
        taken = ~claimed[y0:ye, x0:xe] & (extra > weight[y0:ye, x0:xe])
        box_target[:, y0:ye, x0:xe][:, taken] = boxes[cell.box][:, None]
        weight[y0:ye, x0:xe][taken] = extra[taken]
    return Targets(heatmap, box_target, weight)
