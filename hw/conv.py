"""Streaming 3x3 convolution (pad 1, stride 1) with PE x SIMD folding, and its golden model.

`Conv2dStage` = `SlidingWindow` -> `_WindowBuffer` -> `MatrixVectorUnit` (-> `LaneSerialiser`
when ``out_lanes < pe``).

* The window unit emits, per output pixel, ``G = C / in_lanes`` beats of 3x3 x in_lanes values.
* `_WindowBuffer` collects them into one of two register banks (the pixel's vector of
  ``n = 9 * C`` values, order ``g, ky, kx, lane``: index ``g*9*in_lanes + (ky*3+kx)*in_lanes + l``)
  and replays the other bank ``NF = Cout / pe`` times as ``SF = n / simd`` chunks of ``simd``
  values, one chunk per cycle. Double buffering overlaps collecting pixel p+1 with computing p.
* The MVU holds the weights, reordered to that vector order, in a ROM of ``NF * SF`` words of
  ``pe * simd`` weights, and the bias in a ROM of ``NF`` words; it requantises with
  `exitgate.numerics.requantise` semantics and emits ``pe`` output channels per beat.

Output: a (Cout, H, W) map on an activation stream of ``out_lanes`` lanes of ``out_bits``.

Initiation interval (cycles per output pixel, back-to-back samples, no back-pressure): ``NF * SF``
when compute-bound; see `Conv2dStage.cycles_per_sample` for the window and output bounds.
Each unit advances on ``~o.valid | o.ready`` of its own output register; stalls propagate back
through ``ready`` without losing or duplicating beats.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..numerics import requantise
from .counters import step_replay
from .mvu import (MVU_LATENCY, LaneSerialiser, MatrixVectorUnit, accumulator_width,
                  chunk_signature)
from .stream import activation_signature
from .window import (SlidingWindow, _check_lanes, _check_shape,
                     sliding_window_golden, window_signature)

__all__ = ["Conv2dStage", "conv2d_acc", "conv2d_golden"]

KERNEL = 3


def conv2d_acc(x, weights, bias):
    """Integer accumulators of a 3x3, pad 1, stride 1 convolution: x (N, C, H, W) or (C, H, W),
    weights (Cout, C, 3, 3), bias (Cout,) at the accumulator scale -> (N, Cout, H, W) int64."""
    x = np.asarray(x, dtype=np.int64)
    single = x.ndim == 3
    w = np.asarray(weights, dtype=np.int64)
    cout = w.shape[0]
    win = sliding_window_golden(x[None] if single else x, w.shape[-1])  # (N, H, W, C, K, K)
    n, h, wd = win.shape[:3]
    acc = win.reshape(n, h, wd, -1) @ w.reshape(cout, -1).T + np.asarray(bias, dtype=np.int64)
    acc = acc.transpose(0, 3, 1, 2)
    return acc[0] if single else acc


def conv2d_golden(x, weights, bias, shift: int, out_bits: int, out_signed: bool,
                  relu: bool = False):
    """`conv2d_acc` then `exitgate.numerics.requantise`: the bit-exact model of `Conv2dStage`."""
    return requantise(conv2d_acc(x, weights, bias), shift, out_bits, out_signed, relu)


class _WindowBuffer(wiring.Component):
    """Collects the ``groups`` window beats of a pixel into one of two register banks and replays
    the other bank ``nf`` times as ``n / simd`` chunks of ``simd`` values.

    Ports: ``i``: In(window stream); ``o``: Out(chunk stream, ``simd`` x width).
    """

    def __init__(self, *, groups: int, lanes: int, width: int, signed_data: bool, nf: int,
                 simd: int):
        self.groups, self.lanes, self.width, self.nf, self.simd = groups, lanes, width, nf, simd
        self.beat_bits = KERNEL * KERNEL * lanes * width
        self.sf = groups * KERNEL * KERNEL * lanes // simd
        super().__init__({"i": In(window_signature(KERNEL, lanes, width, signed_data)),
                          "o": Out(chunk_signature(simd, width, signed_data))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        groups, nf_max, sf_max = self.groups, self.nf, self.sf
        banks = [Signal(groups * self.beat_bits, name=f"bank{b}") for b in range(2)]
        full = Signal(2)
        bank_first, bank_last = Signal(2), Signal(2)

        # Fill: window beat g of a pixel -> bank wb, word g.
        wb = Signal()
        fill_g = Signal(range(groups))
        fill_first = Signal()
        m.d.comb += i.ready.eq(~full.bit_select(wb, 1))
        with m.If(i.valid & i.ready):
            for b in range(2):
                with m.If(wb == b):
                    m.d.sync += banks[b].word_select(fill_g, self.beat_bits).eq(i.payload.data)
            with m.If(fill_g == 0):
                m.d.sync += fill_first.eq(i.payload.first)
            with m.If(fill_g == groups - 1):
                m.d.sync += [fill_g.eq(0), wb.eq(~wb), full.bit_select(wb, 1).eq(1),
                             bank_first.bit_select(wb, 1).eq(
                                 Mux(fill_g == 0, i.payload.first, fill_first)),
                             bank_last.bit_select(wb, 1).eq(i.payload.last)]
            with m.Else():
                m.d.sync += fill_g.eq(fill_g + 1)

        # Replay: bank rb, NF passes of SF chunks, into the output register.
        rb = Signal()
        nf = Signal(range(nf_max))
        sf = Signal(range(sf_max))
        en = ~o.valid | o.ready
        issue = Signal()
        m.d.comb += issue.eq(en & full.bit_select(rb, 1))
        chunk_bits = self.simd * self.width
        chunk = Mux(rb, banks[1].word_select(sf, chunk_bits), banks[0].word_select(sf, chunk_bits))
        with m.If(en):
            m.d.sync += o.valid.eq(issue)
        final = step_replay(m, issue, full, rb, nf, sf, nf_max, sf_max)
        with m.If(issue):
            m.d.sync += [o.payload.data.eq(chunk),
                         o.payload.first.eq(bank_first.bit_select(rb, 1) & (nf == 0) & (sf == 0)),
                         o.payload.last.eq(bank_last.bit_select(rb, 1) & final)]
        return m


class Conv2dStage(wiring.Component):
    """3x3 convolution, pad 1, stride 1, + bias, requantise (see module docstring).

    Ports: ``i``: In(activation stream, in_lanes x in_width, signed iff in_signed);
    ``o``: Out(activation stream, out_lanes x out_bits, signed iff out_signed).
    """

    def __init__(self, weights, bias, shape, *, in_width: int = 8, in_signed: bool = False,
                 weight_bits: int = 8, shift: int = 0, out_bits: int = 8,
                 out_signed: bool = False, relu: bool = False, pe: int = 1, simd: int = 1,
                 in_lanes: int = 1, out_lanes: int | None = None):
        self._MustUse__silence = True  # no UnusedElaboratable warning if a check fails
        owner = "Conv2dStage"
        _check_shape(owner, shape)
        c, h, w = shape
        weights = np.asarray(weights)
        bias = np.asarray(bias)
        if not np.issubdtype(weights.dtype, np.integer) or weights.ndim != 4 \
                or weights.shape[1:] != (c, KERNEL, KERNEL):
            raise ValueError(f"{owner}: weights must be an integer array of shape "
                             f"(Cout, {c}, 3, 3), got {weights.dtype} {weights.shape}")
        cout = weights.shape[0]
        if not np.issubdtype(bias.dtype, np.integer) or bias.shape != (cout,):
            raise ValueError(f"{owner}: bias must be an integer array of shape ({cout},), "
                             f"got {bias.dtype} {bias.shape}")
        _check_common(owner, weights, in_width, weight_bits, shift, out_bits)
        if out_lanes is None:
            out_lanes = pe
        if not isinstance(pe, int) or pe < 1 or cout % pe:
            raise ValueError(f"{owner}: pe must be a positive divisor of the output channel "
                             f"count ({cout}), got {pe!r}")
        n = c * KERNEL * KERNEL
        if not isinstance(simd, int) or simd < 1 or n % simd:
            raise ValueError(f"{owner}: simd must be a positive divisor of in_channels * 9 "
                             f"({n}), got {simd!r}")
        _check_lanes(owner, in_lanes, c, "in_lanes")
        if not isinstance(out_lanes, int) or out_lanes < 1 or pe % out_lanes:
            raise ValueError(f"{owner}: out_lanes must be a positive divisor of pe ({pe}), "
                             f"got {out_lanes!r}")
        self.weights, self.bias, self.shape = weights.astype(np.int64), bias.astype(np.int64), shape
        self.out_shape = (cout, h, w)
        self.in_width, self.in_signed, self.weight_bits = in_width, in_signed, weight_bits
        self.shift, self.out_bits = int(shift), out_bits
        self.out_signed, self.relu = out_signed, relu
        self.pe, self.simd, self.in_lanes, self.out_lanes = pe, simd, in_lanes, out_lanes
        self.nf, self.sf = cout // pe, n // simd
        self.acc_width = accumulator_width(weights, bias, in_width, in_signed)
        self._MustUse__silence = False
        super().__init__({
            "i": In(activation_signature(in_lanes, in_width, signed_data=in_signed)),
            "o": Out(activation_signature(out_lanes, out_bits, signed_data=out_signed))})

    @property
    def cycles_per_sample(self) -> int:
        """Designed cycles per sample on a back-to-back stream (no back-pressure): the largest of
        compute (``NF*SF`` per pixel, plus the window's warm-up of ``(W+4)*G`` steps at a sample
        boundary beyond the two pixels the buffer holds), the window's ``(H+1)*(W+1)*G`` steps,
        and the output's ``Cout/out_lanes`` beats per pixel."""
        c, h, w = self.shape
        groups = c // self.in_lanes
        fold = self.nf * self.sf
        compute = h * w * fold + max(0, (w + 4) * groups - 2 * fold)
        return max(compute, (h + 1) * (w + 1) * groups, h * w * self.out_shape[0] // self.out_lanes)

    @property
    def initiation_interval(self) -> float:
        """Designed cycles per output pixel on a back-to-back stream: ``cycles_per_sample / (H*W)``;
        ``NF * SF`` when compute-bound and the warm-up is hidden."""
        return self.cycles_per_sample / (self.shape[1] * self.shape[2])

    @property
    def latency(self) -> int:
        """Cycles from the cycle a sample's first input beat is accepted to the cycle its first
        output beat is valid (no stalls, idle pipeline): the window's step for pixel (1, 1)
        group G-1 comes ``(W+3)*G - 1`` steps later (one padding step per group in row 0), then
        window (2), buffer (2), one MVU pass of SF chunks and its pipeline (``MVU_LATENCY``)."""
        c, h, w = self.shape
        groups = c // self.in_lanes
        return (w + 3) * groups - 1 + 2 + 2 + self.sf + MVU_LATENCY - 1

    def elaborate(self, platform):
        m = Module()
        c, h, w = self.shape
        groups = c // self.in_lanes
        m.submodules.window = window = SlidingWindow(
            self.shape, kernel=KERNEL, lanes=self.in_lanes, width=self.in_width,
            signed_data=self.in_signed)
        m.submodules.buffer = buffer = _WindowBuffer(
            groups=groups, lanes=self.in_lanes, width=self.in_width,
            signed_data=self.in_signed, nf=self.nf, simd=self.simd)
        # Matrix columns in the buffer's vector order: g, ky, kx, lane.
        cout = self.out_shape[0]
        matrix = self.weights.reshape(cout, groups, self.in_lanes, KERNEL, KERNEL) \
            .transpose(0, 1, 3, 4, 2).reshape(cout, -1)
        m.submodules.mvu = mvu = MatrixVectorUnit(
            matrix, self.bias, in_width=self.in_width, in_signed=self.in_signed,
            weight_bits=self.weight_bits, pe=self.pe, simd=self.simd, acc_width=self.acc_width,
            shift=self.shift, out_bits=self.out_bits, out_signed=self.out_signed, relu=self.relu)
        wiring.connect(m, window.o, buffer.i)
        wiring.connect(m, buffer.o, mvu.i)
        wiring.connect(m, wiring.flipped(self.i), window.i)
        if self.out_lanes == self.pe:
            wiring.connect(m, mvu.o, wiring.flipped(self.o))
        else:
            m.submodules.serialiser = ser = LaneSerialiser(
                self.pe, self.out_lanes, self.out_bits, self.out_signed)
            wiring.connect(m, mvu.o, ser.i)
            wiring.connect(m, ser.o, wiring.flipped(self.o))
        return m


def _check_common(owner, weights, in_width, weight_bits, shift, out_bits, allow_none=False):
    """Checks shared by `Conv2dStage` and `LinearStage`."""
    if not isinstance(in_width, int) or not 1 <= in_width <= 32:
        raise ValueError(f"{owner}: in_width must be an integer in 1..32, got {in_width!r}")
    if not isinstance(weight_bits, int) or not 2 <= weight_bits <= 16:
        raise ValueError(f"{owner}: weight_bits must be an integer in 2..16, got {weight_bits!r}")
    lo, hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    if weights.size and (weights.min() < lo or weights.max() > hi):
        raise ValueError(f"{owner}: weights must lie in [{lo}, {hi}] ({weight_bits}-bit signed), "
                         f"got [{weights.min()}, {weights.max()}]")
    if not (shift is None and allow_none) and (
            not isinstance(shift, (int, np.integer)) or not -32 <= shift <= 48):
        raise ValueError(f"{owner}: shift must be an integer in -32..48, got {shift!r}")
    if not isinstance(out_bits, int) or not 1 <= out_bits <= 32:
        raise ValueError(f"{owner}: out_bits must be an integer in 1..32, got {out_bits!r}")
