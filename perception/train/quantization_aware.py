"""Quantisation-aware fine-tuning: train the network as `percept export --int8` will run it (needs torch).

`percept export --int8` (quantize.py) hands the network to onnxruntime's static quantisation: every
convolution but the two that write scores and boxes gets int8 weights (per output channel, symmetric,
-64..64: quantize.WEIGHT_RANGE) and uint8 inputs and outputs (per tensor, asymmetric, over the
calibrated range). Rounding there costs our model about 0.01 mAP50-95, mostly in where box sides land.
Here the same rounding is simulated in training (torch's FakeQuantize, the straight-through
estimator), so the weights learn to sit where rounding leaves them right, as quantisation-aware
training does in NVIDIA's pytorch-quantization flow for TensorRT. The ONNX written stays a float model,
with its weights already on the int8 grid: `percept export --int8` then quantises it as any other.

What is simulated, tensor by tensor, is what onnxruntime's QDQ quantiser quantises in our graph: each
quantised convolution's input, its weights and its output (before the ReLU, with the folded
BatchNorm's shift). Additions, upsampling and the two output convolutions run in float there, as here.
BatchNorms are frozen as the export folded them (scale 1, shift = the folded bias), so the weights
trained are the very weights onnxruntime quantises.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.quantization import FakeQuantize, MinMaxObserver, MovingAveragePerChannelMinMaxObserver

from perception.train.model import Network, conv_layers_in_graph_order
from perception.train.quantize import WEIGHT_RANGE

# The export's int8 weights are symmetric over quantize.WEIGHT_RANGE (scale = max |w| / 64); its QUInt8
# activations use 0..255 over [min(lo, 0), max(hi, 0)].
ACTIVATION_RANGE = (0, 255)
# Activation ranges grow over the first steps (min and max of all seen, as the export's MinMax
# calibration takes them), then stay, so the weights settle to fixed rounding: 100 batches of 32 crops.
RANGE_STEPS = 100


class QuantizedConv2d(nn.Conv2d):
    """A convolution whose input, weights and (where no BatchNorm follows) output are rounded as int8."""

    input_quantizer: FakeQuantize
    weight_quantizer: FakeQuantize
    output_quantizer: FakeQuantize | None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._conv_forward(self.input_quantizer(x), self.weight_quantizer(self.weight), self.bias)
        return y if self.output_quantizer is None else self.output_quantizer(y)  # type: ignore[no-any-return]


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm that always normalises with its running statistics, in training too: the folded
    shift onnxruntime will see; its output is the convolution's as onnxruntime quantises it. (Exported
    as a plain BatchNorm in eval mode it folds into its convolution, as before.)"""

    output_quantizer: FakeQuantize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.running_mean is not None and self.running_var is not None
        y = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return self.output_quantizer(y)  # type: ignore[no-any-return]


def _weight_quantizer() -> FakeQuantize:
    low, high = WEIGHT_RANGE
    # Each step's own weights set their channel's scale (averaging 1: no memory), as the export's do.
    return FakeQuantize(  # type: ignore[no-untyped-call]
        observer=MovingAveragePerChannelMinMaxObserver,
        averaging_constant=1.0,
        quant_min=low,
        quant_max=high,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
    )


def _activation_quantizer() -> FakeQuantize:
    low, high = ACTIVATION_RANGE
    # MinMax over everything seen, as `percept export --int8` calibrates (not a moving average).
    return FakeQuantize(  # type: ignore[no-untyped-call]
        observer=MinMaxObserver,
        quant_min=low,
        quant_max=high,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
    )


def quantized_layers(network: Network) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
    """The convolutions `percept export --int8` quantises (all but the last two, which write the class
    scores and the box sides: quantize.output_convolutions finds the same two in the ONNX graph)."""
    kept_float = (network.heatmap, network.distances)
    return [(conv, norm) for conv, norm in conv_layers_in_graph_order(network) if conv not in kept_float]


def prepare(network: Network) -> None:
    """Make `network` (weights as load_exported_weights left them) train as its int8 export will run."""
    for conv, norm in quantized_layers(network):
        conv.__class__ = QuantizedConv2d
        conv.input_quantizer = _activation_quantizer()
        conv.weight_quantizer = _weight_quantizer()
        conv.output_quantizer = _activation_quantizer() if norm is None else None  # type: ignore[assignment]
        if norm is not None:
            norm.__class__ = FrozenBatchNorm2d
            norm.output_quantizer = _activation_quantizer()
            norm.weight.requires_grad_(False)  # scale 1: the trained weights are the ones quantised


def is_simulation_state(name: str) -> bool:
    """Whether a state-dict entry belongs to the simulated rounding (a quantiser's ranges and switches)
    rather than to the network: an EMA of the weights has no use for it (export rounds anew)."""
    return "_quantizer." in name


def freeze_ranges(network: nn.Module) -> None:
    """Stop widening the activation ranges (after a first stretch of training has seen enough)."""
    for module in network.modules():
        if isinstance(module, FakeQuantize) and module.qscheme == torch.per_tensor_affine:
            module.disable_observer()


def to_float(network: nn.Module) -> None:
    """For export: weights rounded onto their int8 grid and kept as float, the simulated activations'
    rounding taken out (onnxruntime adds its own), layers plain again (the exporter folds BatchNorms)."""
    for module in list(network.modules()):
        if isinstance(module, QuantizedConv2d):
            with torch.no_grad():  # the training's own weight rounding, on these weights
                module.weight.copy_(module.weight_quantizer(module.weight))
            module.__class__ = nn.Conv2d  # type: ignore[assignment]
        elif isinstance(module, FrozenBatchNorm2d):
            module.__class__ = nn.BatchNorm2d  # type: ignore[assignment]
        for name in ("input_quantizer", "weight_quantizer", "output_quantizer"):
            if hasattr(module, name):
                delattr(module, name)
