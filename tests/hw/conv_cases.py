"""Random conv stages and inputs shared by test_conv.py and test_conv_frame.py (imported from
this folder, which those tests put on sys.path: pytest runs with --import-mode=importlib)."""

import numpy as np


def make_conv(cls, rng, c, h, w, cout, *, weight_bits, in_signed, bias=200, **kwargs):
    """A ``cls`` (Conv2dStage or FrameConv2dStage) with narrow-range random weights and bias:
    (dut, weights, bias)."""
    lim = (1 << (weight_bits - 1)) - 1
    weights = rng.integers(-lim, lim + 1, (cout, c, 3, 3))
    b = rng.integers(-bias, bias + 1, cout)
    dut = cls(weights, b, (c, h, w), in_signed=in_signed, weight_bits=weight_bits, **kwargs)
    return dut, weights, b


def conv_inputs(rng, n, shape, in_signed, width=8):
    """``n`` random samples of ``shape``, ``width``-bit signed or unsigned."""
    lo, hi = (-(1 << (width - 1)), 1 << (width - 1)) if in_signed else (0, 1 << width)
    return rng.integers(lo, hi, (n, *shape))
