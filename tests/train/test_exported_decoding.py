"""The decoding the export puts in the graph (`Exported`): the top K peaks found among the 2 x 2 blocks'
maxima are those of one top-k over every cell. Needs torch, the `train` extra; CI does not install it,
so this runs where training is installed."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="torch is the train extra")

import torch.nn.functional as F  # noqa: E402

from perception.train.model import Exported, boxes_from_distances  # noqa: E402


class _Fixed(torch.nn.Module):
    """A network that returns the same logits and distances whatever the image."""

    def __init__(self, logits: torch.Tensor, distances: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.distances = logits, distances

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.logits, self.distances


def _one_top_k(logits: torch.Tensor, distances: torch.Tensor, top_k: int) -> torch.Tensor:
    """The decoding as it was: one top-k over every class and cell."""
    scores = torch.sigmoid(logits)
    peaks = F.max_pool2d(scores, 3, stride=1, padding=1)
    scores = scores * (peaks == scores).to(scores.dtype)
    h, w = scores.shape[2:]
    best, index = torch.topk(scores.reshape(1, -1), top_k)
    cls = torch.div(index, h * w, rounding_mode="floor")
    cell = index - cls * (h * w)
    boxes = boxes_from_distances(distances).reshape(1, 4, -1)
    picked = torch.gather(boxes, 2, cell.unsqueeze(1).expand(1, 4, top_k))
    return torch.cat([picked.transpose(1, 2), best.unsqueeze(2), cls.unsqueeze(2).to(best.dtype)], dim=2)


@pytest.mark.parametrize("height, width", [(30, 40), (29, 37)])  # odd sides: blocks cut at the edge
def test_the_same_detections_as_one_top_k_over_every_cell(height, width):
    generator = torch.Generator().manual_seed(height)
    logits = torch.randn(1, 11, height, width, generator=generator) * 3 - 2
    # A peak in the last row and column, where an odd side leaves blocks of one cell or two.
    logits[0, 4, height - 1, width - 1] = 12.0
    distances = torch.rand(1, 4, height, width, generator=generator) * 5
    image = torch.zeros(1, 3, 4 * height, 4 * width)
    decoded = Exported(_Fixed(logits, distances), top_k=60)(image)
    assert torch.equal(decoded, _one_top_k(logits, distances, 60))
    # The best is that corner peak, its box's right side from the corner cell's centre (stride 4).
    assert decoded[0, 0, 5] == 4 and decoded[0, 0, 2] == (width - 1) * 4 + 2 + distances[0, 2, -1, -1]
