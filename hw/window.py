"""Sliding window (line buffer) over a streamed feature map: K x K windows, zero padding
``(K - 1) / 2``, stride 1, for any odd ``K >= 3`` (tested: K = 3 and K = 5).

Input: a (C, H, W) map on an activation stream of ``lanes`` lanes (``G = C / lanes`` beats per
pixel, see `exitgate.hw.stream`). Output: per output pixel (raster order, same H x W), ``G`` beats,
beat ``g`` holding the K x K window of channels ``g*lanes .. g*lanes+lanes-1``:

    data   ArrayLayout(elem, K*K*lanes), element (ky*K + kx)*lanes + l is
           x[g*lanes + l, h + ky - P, w + kx - P] (0 outside the map), P = (K - 1) / 2
    first  first beat of a sample;  last  last beat of a sample

The unit walks an extended grid of (H + P) x (W + P) positions x G groups, one per cycle; the
positions right of and below the map are padding steps that take no input. The K - 1 previous rows
live in one `Memory` (depth W*G, BRAM) read and written once per step; the K - 1 previous columns
in a (K - 1)*G shift register. Padding outside the map is applied by masking on output, so the
buffers never need clearing between back-to-back samples.

Throughput: one step per cycle, so ``(H+P)*(W+P)*G`` cycles per sample. Latency: an input beat
reaches the output register 2 cycles after it is accepted. Back-pressure: the output register
takes a new beat when empty or accepted; the step stage moves on unless it holds a window for a
blocked output, so non-emitting steps continue while the output is stalled.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .counters import step_raster
from .ram import read_register, sdp_memory
from .stream import activation_signature

__all__ = ["window_signature", "SlidingWindow", "sliding_window_golden"]


def window_signature(kernel: int, lanes: int, width: int, signed_data: bool) -> stream.Signature:
    """Stream of K x K x lanes windows (see module docstring)."""
    elem = signed(width) if signed_data else unsigned(width)
    return stream.Signature(data.StructLayout({
        "data": data.ArrayLayout(elem, kernel * kernel * lanes), "first": 1, "last": 1}))


def sliding_window_golden(x, kernel: int = 3):
    """Zero-padded K x K windows of ``x`` (N, C, H, W) or (C, H, W): shape (N, H, W, C, K, K)
    (or (H, W, C, K, K)), int64. ``[..., h, w, c, ky, kx] = x[c, h+ky-P, w+kx-P]``."""
    x = np.asarray(x, dtype=np.int64)
    single = x.ndim == 3
    if single:
        x = x[None]
    p = (kernel - 1) // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kernel, kernel), axis=(2, 3))
    win = win.transpose(0, 2, 3, 1, 4, 5)  # (N, H, W, C, K, K)
    return win[0] if single else win


def _check_shape(owner: str, shape):
    if (not isinstance(shape, tuple) or len(shape) != 3
            or not all(isinstance(v, int) and v >= 1 for v in shape)):
        raise ValueError(f"{owner}: shape must be a (C, H, W) tuple of positive integers, "
                         f"got {shape!r}")


def _check_lanes(owner: str, lanes, channels: int, name: str = "lanes"):
    if not isinstance(lanes, int) or lanes < 1 or channels % lanes:
        raise ValueError(f"{owner}: {name} must be a positive divisor of the channel count "
                         f"({channels}), got {lanes!r}")


def _check_width(owner: str, width):
    if not isinstance(width, int) or not 1 <= width <= 32:
        raise ValueError(f"{owner}: width must be an integer in 1..32, got {width!r}")


class SlidingWindow(wiring.Component):
    """K x K sliding window, pad (K-1)/2, stride 1 (see module docstring).

    Ports: ``i``: In(activation stream, lanes x width); ``o``: Out(`window_signature`).
    """

    def __init__(self, shape, *, kernel: int = 3, lanes: int = 1, width: int = 8,
                 signed_data: bool = False):
        self._MustUse__silence = True  # no UnusedElaboratable warning if a check fails
        _check_shape("SlidingWindow", shape)
        if not isinstance(kernel, int) or kernel < 3 or kernel % 2 == 0:
            raise ValueError(f"SlidingWindow: kernel must be an odd integer >= 3, got {kernel!r}")
        _check_lanes("SlidingWindow", lanes, shape[0])
        _check_width("SlidingWindow", width)
        self.shape, self.kernel, self.lanes = shape, kernel, lanes
        self.width, self.signed_data = width, signed_data
        self._MustUse__silence = False
        super().__init__({
            "i": In(activation_signature(lanes, width, signed_data=signed_data)),
            "o": Out(window_signature(kernel, lanes, width, signed_data))})

    @property
    def cycles_per_sample(self) -> int:
        c, h, w = self.shape
        p = (self.kernel - 1) // 2
        return (h + p) * (w + p) * (c // self.lanes)

    @property
    def latency(self) -> int:
        """Cycles from accepting the input beat that completes the first window to its output."""
        return 2

    def elaborate(self, platform):
        m = Module()
        c, h_max, w_max = self.shape
        k, lanes = self.kernel, self.lanes
        p = (k - 1) // 2
        groups = c // lanes
        row_bits = lanes * self.width
        i, o = self.i, self.o

        m.submodules.lines = lines = sdp_memory(shape=unsigned((k - 1) * row_bits),
                                                depth=w_max * groups)
        wr = lines.write_port()
        # no write-to-read bypass (Fmax: the step enable stays out of the read data path): step
        # 0 reads the next position's word while step 1 writes the previous position's, never
        # the same word, not even for a one-word line (W = 1, G = 1), where a padding step
        # always lies between a position's write and the next row's read of it
        rd = read_register(m, lines, wr)

        # s1 moves on unless it holds an emitting step and the output register is blocked, so
        # padding and first-row steps proceed while the output is stalled.
        en_o, en_1 = Signal(), Signal()
        s1_valid, s1_emit = Signal(), Signal()
        m.d.comb += [en_o.eq(~o.valid | o.ready), en_1.eq(~s1_valid | ~s1_emit | en_o)]

        # Step 0: position counters; real positions take an input beat.
        hp = Signal(range(h_max + p))
        wp = Signal(range(w_max + p))
        g = Signal(range(groups))
        real = (hp < h_max) & (wp < w_max)
        # what step 1 needs to know of the position, as registers beside it (Fmax: the line
        # buffer's write enable and the stage enables are then one or two LUTs from registers,
        # not behind the position compares): it emits a window; it is inside the map's width
        emit0, in_w0 = (hp >= p) & (wp >= p), wp < w_max
        fire = Signal()
        m.d.comb += [fire.eq(en_1 & (~real | i.valid)), i.ready.eq(en_1 & real),
                     rd.addr.eq(Mux(wp < w_max, wp * groups + g, 0)), rd.en.eq(en_1)]
        with m.If(fire):
            step_raster(m, [(g, groups), (wp, w_max + p), (hp, h_max + p)])

        s1_hp, s1_wp, s1_g = Signal.like(hp), Signal.like(wp), Signal.like(g)
        s1_x = Signal(row_bits)
        s1_in_w = Signal()
        with m.If(en_1):
            m.d.sync += [s1_valid.eq(fire), s1_hp.eq(hp), s1_wp.eq(wp), s1_g.eq(g),
                         s1_x.eq(i.payload.data), s1_emit.eq(emit0), s1_in_w.eq(in_w0)]

        # Step 1: column = K-1 buffered rows + this input; update line buffer and column history.
        olds = [rd.data.word_select(j, row_bits) for j in range(k - 1)]  # row hp-1-j
        column = Cat(*reversed(olds), s1_x)  # row ky at word ky: rows hp-K+1 .. hp
        m.d.comb += [wr.addr.eq(s1_wp * groups + s1_g), wr.en.eq(en_1 & s1_valid & s1_in_w),
                     wr.data.eq(Cat(s1_x, *olds[:-1]))]
        history = [Signal(k * row_bits, name=f"col{n}") for n in range((k - 1) * groups)]
        with m.If(en_1 & s1_valid):
            m.d.sync += history[0].eq(column)
            m.d.sync += [history[n].eq(history[n - 1]) for n in range(1, len(history))]
        columns = [history[(k - 1 - kx) * groups - 1] for kx in range(k - 1)] + [column]

        row_ok = [(s1_hp + ky >= 2 * p) & (s1_hp + ky < h_max + 2 * p) for ky in range(k)]
        col_ok = [(s1_wp + kx >= 2 * p) & (s1_wp + kx < w_max + 2 * p) for kx in range(k)]
        window = Cat(*[Mux(row_ok[ky] & col_ok[kx], columns[kx].word_select(ky, row_bits), 0)
                       for ky in range(k) for kx in range(k)])
        with m.If(en_o):
            m.d.sync += [
                o.valid.eq(s1_valid & s1_emit & en_1),
                o.payload.data.eq(window),
                o.payload.first.eq((s1_hp == p) & (s1_wp == p) & (s1_g == 0)),
                o.payload.last.eq((s1_hp == h_max + p - 1) & (s1_wp == w_max + p - 1)
                                  & (s1_g == groups - 1)),
            ]
        return m
