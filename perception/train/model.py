"""The shipped detector's network (needs torch: the `train` extra).

A small anchor-free detector in the manner of TTFNet/CenterNet: plain 3x3 conv-BN-ReLU stages down to
stride 32 (dilated residual blocks widen the view for near cars), a light FPN back up to stride 4, and one
output level there: a class heatmap and, per cell, distances to the four sides of the box. Stride 4 keeps
distant pedestrians and cones (a few pixels wide) on cells of their own.

`Exported` wraps it with the decoding (3x3 max-pool peaks, top-k, box gather), so the ONNX file outputs
the end-to-end layout 1 x K x 6 (x1, y1, x2, y2, score, class) and needs no NMS outside.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from perception.train.targets import STRIDE

REGRESSION_SCALE = 16.0  # box distances are predicted in units of 16 px (TTFNet's wh_offset_base)


def conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.first = conv(channels, channels, dilation=dilation)
        self.second = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.second(self.first(x)))


class Network(nn.Module):
    """Image (B x 3 x H x W, RGB 0-1) -> class logits (B x C x H/4 x W/4), box distances (B x 4 x ...)."""

    def __init__(
        self, num_classes: int, widths: tuple[int, int, int, int, int] = (16, 24, 48, 96, 128)
    ) -> None:
        super().__init__()
        w2, w4, w8, w16, w32 = widths
        self.stride4 = nn.Sequential(conv(3, w2, 2), conv(w2, w4, 2))
        self.stride8 = nn.Sequential(conv(w4, w8, 2), Residual(w8))
        self.stride16 = nn.Sequential(conv(w8, w16, 2), Residual(w16), Residual(w16, dilation=2))
        self.stride32 = nn.Sequential(conv(w16, w32, 2), Residual(w32), Residual(w32, dilation=2))
        neck = 32
        self.lateral = nn.ModuleList(nn.Conv2d(w, neck, 1) for w in (w4, w8, w16, w32))
        self.smooth8 = conv(neck, neck)
        self.head = conv(neck, neck)
        self.heatmap = nn.Conv2d(neck, num_classes, 1)
        self.distances = nn.Conv2d(neck, 4, 1)
        assert self.heatmap.bias is not None
        nn.init.constant_(self.heatmap.bias, -2.19)  # CenterNet's prior: sigmoid = 0.1 everywhere at start

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c4 = self.stride4(image)
        c8 = self.stride8(c4)
        c16 = self.stride16(c8)
        c32 = self.stride32(c16)
        p = self.lateral[3](c32)
        p = self.lateral[2](c16) + F.interpolate(p, size=c16.shape[2:], mode="nearest")
        p = self.smooth8(self.lateral[1](c8) + F.interpolate(p, size=c8.shape[2:], mode="nearest"))
        # The head's own 3x3 conv smooths the stride-4 sum: a separate one would cost a sixth of the net.
        features = self.head(self.lateral[0](c4) + F.interpolate(p, size=c4.shape[2:], mode="nearest"))
        return self.heatmap(features), F.relu(self.distances(features)) * REGRESSION_SCALE


def load_exported_weights(network: Network, path: str | Path) -> None:
    """Fill `network` from an ONNX file this module exported, so a shipped model can be trained on or
    exported again. The exporter folded each BatchNorm into its convolution's weights and bias; the
    BatchNorms here become a plain shift by that bias (scale 1, mean 0, variance 1), which computes
    the same function and trains on from there."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    layers = conv_layers_in_graph_order(network)
    if len(convs) != len(layers):
        raise ValueError(f"{path}: expected {len(layers)} convolutions (this network's), found {len(convs)}")
    with torch.no_grad():
        for (conv_layer, norm), node in zip(layers, convs, strict=True):
            weight, bias = (initializers.get(name) for name in node.input[1:3])
            # The class heatmap may have more classes than the file's (`--add-class`): the file's fill
            # the first rows; the new ones start at the prior alone (grow_class_rows).
            grown = (
                conv_layer is network.heatmap and weight is not None and _prefix_of(weight.shape, conv_layer)
            )
            if (
                weight is None
                or bias is None
                or (weight.shape != tuple(conv_layer.weight.shape) and not grown)
            ):
                raise ValueError(
                    f"{path}: convolution {node.name} has weights "
                    f"{None if weight is None else list(weight.shape)}, "
                    f"expected {list(conv_layer.weight.shape)} and a bias"
                )
            known_weight, known_bias = (torch.from_numpy(a.copy()) for a in (weight, bias))
            conv_layer.weight.copy_(grow_class_rows(known_weight, conv_layer.weight, "weight"))
            shift = norm.bias if norm is not None else conv_layer.bias
            assert shift is not None
            shift.copy_(grow_class_rows(known_bias, shift, "bias"))
            if norm is not None:
                norm.weight.fill_(1)
                assert norm.running_mean is not None and norm.running_var is not None
                norm.running_mean.zero_()
                norm.running_var.fill_(1 - norm.eps)


def grow_class_rows(known: torch.Tensor, initial: torch.Tensor, key: str) -> torch.Tensor:
    """The class heatmap's `key` ("weight" or "bias") for more classes than a model knows: its rows
    first, then the new classes' rows from `initial` (a fresh network's), their weights zero. A new
    class then scores the prior (sigmoid 0.1) everywhere, below any confidence, until it is trained,
    instead of whatever its random weights make of the features: the old classes' detections stay
    exactly as they were."""
    new_rows = initial[known.shape[0] :]
    return torch.cat([known, torch.zeros_like(new_rows) if key.endswith("weight") else new_rows])


def _prefix_of(shape: tuple[int, ...], layer: nn.Conv2d) -> bool:
    """Whether weights of `shape` are the first output channels of `layer` (fewer classes)."""
    return (
        len(shape) == 4
        and shape[0] <= layer.weight.shape[0]
        and tuple(shape[1:]) == tuple(layer.weight.shape[1:])
    )


def restore_batch_statistics(network: Network, images: list[torch.Tensor]) -> None:
    """After `load_exported_weights`, give each BatchNorm back the statistics the export folded away.

    The folded network computes the right function in eval mode, but in train mode each BatchNorm
    would normalise its convolution's output by the batch's statistics and the learned function would
    be lost at the first step. With the mean and spread of those outputs over a few batches (measured
    in eval mode, where the function is the shipped one) as its running statistics, scale and shift,
    BatchNorm computes the same function in eval mode and nearly the same in train mode."""
    sums: dict[nn.BatchNorm2d, list[torch.Tensor]] = {}

    def record(norm: nn.Module, inputs: tuple[torch.Tensor, ...], _: torch.Tensor) -> None:
        x = inputs[0].detach().double()
        moments = torch.stack([x.mean((0, 2, 3)), (x * x).mean((0, 2, 3))])
        sums.setdefault(norm, []).append(moments)  # type: ignore[arg-type]

    norms = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
    hooks = [norm.register_forward_hook(record) for norm in norms]
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            for batch in images:
                network(batch)
    finally:
        for hook in hooks:
            hook.remove()
        network.train(was_training)
    with torch.no_grad():
        for norm in norms:
            mean, square = torch.stack(sums[norm]).mean(0)
            variance = (square - mean * mean).clamp(min=1e-6)
            assert norm.running_mean is not None and norm.running_var is not None
            shift = norm.bias.clone()  # the folded bias: scale 1, mean 0, variance 1 after loading
            norm.running_mean.copy_(mean.float())
            norm.running_var.copy_((variance - norm.eps).clamp(min=1e-6).float())
            norm.weight.copy_(variance.sqrt().float())
            norm.bias.copy_(shift + mean.float())


def conv_layers_in_graph_order(network: Network) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
    """(convolution, its BatchNorm or None) in the order `forward` runs them, which is the ONNX
    graph's order."""

    def conv_bn(block: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d | None]:
        return (block[0], block[1])  # type: ignore[index]

    def stage(blocks: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
        found = []
        for block in blocks.children():
            found += (
                [conv_bn(block.first), conv_bn(block.second)]
                if isinstance(block, Residual)
                else [conv_bn(block)]
            )
        return found

    lateral: list[nn.Conv2d] = list(network.lateral)  # type: ignore[arg-type]
    return [
        *stage(network.stride4),
        *stage(network.stride8),
        *stage(network.stride16),
        *stage(network.stride32),
        (lateral[3], None),
        (lateral[2], None),
        (lateral[1], None),
        conv_bn(network.smooth8),
        (lateral[0], None),
        conv_bn(network.head),
        (network.heatmap, None),
        (network.distances, None),
    ]


def boxes_from_distances(distances: torch.Tensor) -> torch.Tensor:
    """B x 4 x h x w distances (left, top, right, bottom) -> B x 4 x h x w boxes in input pixels."""
    h, w = distances.shape[2:]
    xs = torch.arange(w, dtype=distances.dtype, device=distances.device) * STRIDE + STRIDE / 2
    ys = torch.arange(h, dtype=distances.dtype, device=distances.device) * STRIDE + STRIDE / 2
    x, y = xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)
    centre = torch.stack([x, y, x, y]).unsqueeze(0)
    return centre + torch.cat([-distances[:, :2], distances[:, 2:]], dim=1)


_BLOCK_DY = torch.tensor([0, 0, 1, 1])  # the 4 cells of a 2 x 2 block, row by row
_BLOCK_DX = torch.tensor([0, 1, 0, 1])


class Exported(nn.Module):
    """Network plus decoding: image -> 1 x K x 6 (x1, y1, x2, y2, score, class), best first."""

    def __init__(self, network: nn.Module, top_k: int = 100) -> None:
        super().__init__()
        self.network, self.top_k = network, top_k

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits, distances = self.network(image)
        scores = torch.sigmoid(logits)
        peaks = F.max_pool2d(scores, 3, stride=1, padding=1)
        scores = scores * (peaks == scores).to(scores.dtype)
        h, w = scores.shape[2:]
        # Two peaks never share a 2 x 2 block (each is the maximum of the other's 3 x 3) unless they tie,
        # so the best K peaks are the best K of the blocks' maxima: the top-k, the decoding's slowest
        # step in onnxruntime, ranks a quarter of the cells. Each block picked then finds its peak among
        # its 4 cells.
        blocks = F.max_pool2d(scores, 2, stride=2, ceil_mode=True)
        bh, bw = blocks.shape[2:]
        best, index = torch.topk(blocks.reshape(1, -1), self.top_k)
        cls = torch.div(index, bh * bw, rounding_mode="floor")
        block = index - cls * (bh * bw)
        by, bx = torch.div(block, bw, rounding_mode="floor"), torch.remainder(block, bw)
        y = torch.minimum(2 * by.unsqueeze(2) + _BLOCK_DY, torch.full_like(by.unsqueeze(2), h - 1))
        x = torch.minimum(2 * bx.unsqueeze(2) + _BLOCK_DX, torch.full_like(bx.unsqueeze(2), w - 1))
        candidates = (cls.unsqueeze(2) * h + y) * w + x  # 1 x K x 4, flat indices into the scores
        in_block = torch.gather(scores.reshape(1, -1), 1, candidates.reshape(1, -1)).reshape(1, -1, 4)
        cell = torch.gather(y * w + x, 2, in_block.argmax(dim=2, keepdim=True)).squeeze(2)
        boxes = boxes_from_distances(distances).reshape(1, 4, -1)
        picked = torch.gather(boxes, 2, cell.unsqueeze(1).expand(1, 4, self.top_k))
        return torch.cat([picked.transpose(1, 2), best.unsqueeze(2), cls.unsqueeze(2).to(best.dtype)], dim=2)
