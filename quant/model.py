"""The multi-exit CNN family, built from a ModelConfig with Brevitas fixed-point quantisers.

Every quantiser has a power-of-two scale (Brevitas ``*FixedPoint`` quantisers), so every rescale
in hardware is a shift:

    input      QuantIdentity, unsigned `input_bits`, constant scale 2**-input_frac_bits
    segment    QuantConv2d 3x3 pad 1 (weights: signed narrow `weight_bits`, bias: Int16Bias at
               the accumulator scale) -> QuantReLU (unsigned `act_bits`) -> optional MaxPool2d(2)
    exit head  MaxPool2d(2) x `pool` -> Flatten -> [QuantLinear -> QuantReLU]  -> QuantLinear
               (the last layer's integer accumulator is the exit's logits)

``forward`` returns one logits tensor (an IntQuantTensor) per exit, in exit order. With
``quantise=False`` the same network is built with all quantisers off (the float baseline).
"""

from __future__ import annotations

import torch
from brevitas.inject.enum import ScalingImplType
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant import (Int8WeightPerTensorFixedPoint, Int16Bias,
                            Uint8ActPerTensorFixedPoint)
from torch import nn

from .config import ModelConfig

__all__ = ["MultiExitCNN", "build_model", "logits_value"]


def _pixel_quant(bits: int, frac_bits: int):
    class PixelQuant(Uint8ActPerTensorFixedPoint):
        # unsigned b-bit fixed point: scale = 2**ceil(log2(scaling_init)) / 2**b
        scaling_impl_type = ScalingImplType.CONST
        scaling_init = 2.0 ** (bits - frac_bits)
        bit_width = bits
    return PixelQuant


def _conv(cin, cout, bits, quantise):
    return QuantConv2d(cin, cout, 3, padding=1, bias=True,
                       weight_quant=Int8WeightPerTensorFixedPoint if quantise else None,
                       weight_bit_width=bits, bias_quant=Int16Bias if quantise else None,
                       return_quant_tensor=quantise)


def _linear(cin, cout, bits, quantise):
    return QuantLinear(cin, cout, bias=True,
                       weight_quant=Int8WeightPerTensorFixedPoint if quantise else None,
                       weight_bit_width=bits, bias_quant=Int16Bias if quantise else None,
                       return_quant_tensor=quantise)


def _relu(bits, quantise):
    return QuantReLU(act_quant=Uint8ActPerTensorFixedPoint if quantise else None,
                     bit_width=bits, return_quant_tensor=quantise)


class MultiExitCNN(nn.Module):
    """Backbone segments with exit heads after chosen segments; forward returns a list of logits."""

    def __init__(self, cfg: ModelConfig, input_shape: tuple[int, int, int], quantise: bool = True):
        super().__init__()
        self.cfg = cfg
        c, h, w = input_shape
        self.input_quant = QuantIdentity(
            act_quant=_pixel_quant(cfg.input_bits, cfg.input_frac_bits) if quantise else None,
            return_quant_tensor=quantise)
        self.segments = nn.ModuleList()
        shapes = []
        for seg in cfg.segments:
            layers = [_conv(c, seg.channels, seg.weight_bits, quantise),
                      _relu(seg.act_bits, quantise)]
            c = seg.channels
            if seg.pool:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(f"input {input_shape} is too small for {len(cfg.segments)} pools")
            self.segments.append(nn.Sequential(*layers))
            shapes.append((c, h, w))
        self.heads = nn.ModuleList()
        for ex in cfg.exits:
            c, h, w = shapes[ex.after - 1]
            layers = [nn.MaxPool2d(2) for _ in range(ex.pool)]
            h, w = h >> ex.pool, w >> ex.pool
            if h < 1 or w < 1:
                raise ValueError(f"exit after segment {ex.after}: {ex.pool} pools leave nothing")
            layers.append(nn.Flatten())
            features = c * h * w
            if ex.hidden:
                layers += [_linear(features, ex.hidden, ex.weight_bits, quantise),
                           _relu(ex.act_bits, quantise)]
                features = ex.hidden
            layers.append(_linear(features, cfg.classes, ex.weight_bits, quantise))
            self.heads.append(nn.Sequential(*layers))
        self.exit_after = [ex.after - 1 for ex in cfg.exits]

    def forward(self, x):
        x = self.input_quant(x)
        outs = []
        for i, seg in enumerate(self.segments):
            x = seg(x)
            for head, after in zip(self.heads, self.exit_after):
                if after == i:
                    outs.append(head(x))
        return outs

    def backbone_parameters(self):
        """Parameters of everything but the early (non-final) exit heads."""
        early = {id(p) for head in self.heads[:-1] for p in head.parameters()}
        return [p for p in self.parameters() if id(p) not in early]


def build_model(cfg: ModelConfig, input_shape, quantise: bool = True, seed: int = 0) -> MultiExitCNN:
    torch.manual_seed(seed)
    return MultiExitCNN(cfg, tuple(input_shape), quantise=quantise)


def logits_value(out) -> torch.Tensor:
    """The float tensor behind a model output (QuantTensor or plain tensor)."""
    return out.value if hasattr(out, "value") else out
