"""Losses of the shipped detector: CenterNet's focal loss on the heatmap, GIoU on the regressed boxes."""

from __future__ import annotations

import torch

from perception.train.model import boxes_from_distances

REGRESSION_WEIGHT = 5.0  # TTFNet's balance between the two terms


def heatmap_focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of objects (peaks of 1)."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).to(p.dtype)
    negative_weight = (1 - target).pow(4)
    positive_loss = -(torch.log(p) * (1 - p).pow(2) * positive).sum()
    negative_loss = -(torch.log(1 - p) * p.pow(2) * negative_weight * (1 - positive)).sum()
    return (positive_loss + negative_loss) / positive.sum().clamp(min=1)


def giou(predicted: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted 1 - GIoU over the cells with weight > 0; boxes are B x 4 x h x w, weight B x h x w."""
    mask = weight > 0
    if not bool(mask.any()):
        return predicted.sum() * 0
    p = predicted.permute(0, 2, 3, 1)[mask]
    t = target.permute(0, 2, 3, 1)[mask]
    w = weight[mask]
    inter_w = (torch.min(p[:, 2], t[:, 2]) - torch.max(p[:, 0], t[:, 0])).clamp(min=0)
    inter_h = (torch.min(p[:, 3], t[:, 3]) - torch.max(p[:, 1], t[:, 1])).clamp(min=0)
    inter = inter_w * inter_h
    area_p = (p[:, 2] - p[:, 0]).clamp(min=0) * (p[:, 3] - p[:, 1]).clamp(min=0)
    area_t = (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])
    union = area_p + area_t - inter + 1e-6
    hull = (torch.max(p[:, 2], t[:, 2]) - torch.min(p[:, 0], t[:, 0])) * (
        torch.max(p[:, 3], t[:, 3]) - torch.min(p[:, 1], t[:, 1])
    ) + 1e-6
    value = inter / union - (hull - union) / hull
    return ((1 - value) * w).sum() / (w.sum() + 1e-4)


def detection_loss(
    logits: torch.Tensor,
    distances: torch.Tensor,
    heatmap: torch.Tensor,
    boxes: torch.Tensor,
    weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(heatmap loss, weighted box loss)."""
    return heatmap_focal(logits, heatmap), REGRESSION_WEIGHT * giou(
        boxes_from_distances(distances), boxes, weight
    )
