"""Streaming 3x3 convolution (pad 1, stride 1) with PE x SIMD folding, and its golden model.

`Conv2dStage` = `SlidingWindow` -> `_WindowBuffer` -> `MatrixVectorUnit` (-> `LaneSerialiser`
when ``out_lanes < pe``).

* The window unit emits, per output pixel, ``G = C / in_lanes`` beats of 3x3 x in_lanes values.
* `_WindowBuffer` writes them, regrouped into ``SF = n / simd`` words of ``simd`` values, one
  word per cycle, into one of two banks of a `Memory` (block RAM: the pixel's vector of
  ``n = 9 * C`` values, order ``g, ky, kx, lane``: index ``g*9*in_lanes + (ky*3+kx)*in_lanes + l``)
  and replays the other bank ``NF = Cout / pe`` times, one word (chunk) per cycle. Double
  buffering overlaps collecting pixel p+1 with computing p.
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

import math

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..numerics import requantise
from .counters import step_replay
from .mvu import (LaneSerialiser, MatrixVectorUnit, accumulator_width, mvu_latency,
                  chunk_signature, soft_rows)
from .plumbing import SkidBuffer
from .ram import read_register, sdp_memory
from .stream import activation_signature
from .window import (SlidingWindow, _check_lanes, _check_shape,
                     sliding_window_golden, window_signature)

__all__ = ["Conv2dStage", "conv2d_acc", "conv2d_golden", "window_buffer_banks"]

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


#: most banks `window_buffer_banks` chooses (the buffer memory is ``banks * SF`` words)
MAX_BANKS = 16


def window_buffer_banks(shape, in_lanes: int, fold: int) -> int:
    """Banks of the conv's window buffer: the fewest (a power of two, at least 2, at most
    `MAX_BANKS`) that hide the window's warm-up at a sample boundary. Between the last window of
    one sample and the first of the next the window takes ``(W + 4) * G`` steps (the padding
    row and the first row and a pixel of the next sample); each bank the buffer holds ahead
    covers one pixel's ``fold = NF * SF`` compute cycles, so ``banks * fold >= (W + 4) * G``
    keeps the MVU busy across samples. With a large fold (small boards) that is 2 banks."""
    c, _, w = shape
    warmup = (w + 4) * (c // in_lanes)
    banks = 2
    while banks * fold < warmup and banks < MAX_BANKS:
        banks *= 2
    return banks


def _fill_schedule(groups: int, beat_units: int, word_units: int) -> int:
    """Cycle model of `_WindowBuffer`'s fill for one pixel offered back to back into an empty
    gearbox and a free bank: the cycle of the pixel's last word write, counted from the first
    beat's acceptance (cycle 0)."""
    count, beats, words, total = 0, 0, 0, groups * beat_units // word_units
    cycle = 0
    while True:
        emit = count >= word_units
        left = count - word_units if emit else count
        words += emit
        if emit and words == total:
            return cycle
        if beats < groups and left < word_units:
            beats, left = beats + 1, left + beat_units
        count, cycle = left, cycle + 1


class _WindowBuffer(wiring.Component):
    """Packs the ``groups`` window beats of a pixel into ``SF = n / simd`` words of ``simd``
    values in one of ``banks`` banks of a `Memory` (``banks * SF`` words), filled and replayed in
    turn, and replays each full bank ``nf`` times, one word (chunk) per cycle. With two banks
    collecting pixel p+1 overlaps computing p; more banks let the window run further ahead
    (across a sample boundary, see `window_buffer_banks`).

    A beat holds ``9 * lanes`` values and a word ``simd``; both are whole numbers of units of
    ``u = gcd(9 * lanes, simd)`` values. A staging register of ``simd - u + 9 * lanes`` values (a
    gearbox) writes its lowest ``simd`` values to the fill bank whenever it holds them and that
    bank is free, and takes a beat (appended above what it holds) whenever fewer than ``simd``
    values stay after this cycle's write: so a beat is split over ``9 * lanes / simd`` writes, or
    ``simd / (9 * lanes)`` beats share one. A pixel starts a word, so every bank is one pixel.
    Replay: the read port (not transparent, enabled when the output register can move) is the
    output payload; ``first``/``last`` and ``valid`` are registered beside it.

    Ports: ``i``: In(window stream); ``o``: Out(chunk stream, ``simd`` x width).
    """

    def __init__(self, *, groups: int, lanes: int, width: int, signed_data: bool, nf: int,
                 simd: int, banks: int = 2):
        self.groups, self.lanes, self.width, self.nf, self.simd = groups, lanes, width, nf, simd
        self.banks = banks
        beat = KERNEL * KERNEL * lanes
        self.sf = groups * beat // simd
        self.unit = math.gcd(beat, simd)
        self.beat_units, self.word_units = beat // self.unit, simd // self.unit
        super().__init__({"i": In(window_signature(KERNEL, lanes, width, signed_data)),
                          "o": Out(chunk_signature(simd, width, signed_data))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        groups, nf_max, sf_max = self.groups, self.nf, self.sf
        bu, wu = self.beat_units, self.word_units
        unit_bits = self.unit * self.width
        word_bits = wu * unit_bits
        nb = self.banks
        m.submodules.banks = banks = sdp_memory(shape=unsigned(word_bits), depth=nb * sf_max)
        # the read port is enabled while bank rb fills, but its data is then not issued
        wr = banks.write_port()
        rd = read_register(m, banks, wr)
        full, bank_first, bank_last = Signal(nb), Signal(nb), Signal(nb)

        # Fill: gearbox of (wu - 1 + bu) units; word widx of bank wb from its lowest wu units.
        stage = Signal((wu - 1 + bu) * unit_bits)
        count = Signal(range(wu + bu))
        left = Signal(range(wu + bu))
        accept = Signal()
        # ``emit`` (a word goes to the fill bank), ``i.ready`` and the staging slices' load
        # enables (``load``, one-hot: slice ``left`` while ready) are functions of this block's
        # registers only, so they are registers themselves, computed a cycle ahead from the
        # next values of the count, the fill bank and its full bit (below). Fmax: as logic they
        # were four LUT levels from the bank flags to a few hundred flip-flop enables (the
        # staging register, and the window skid buffer's output register in front of it), the
        # ECP5 designs' critical path at some placements.
        emit, ready = Signal(), Signal(init=1)
        load = Signal(wu, init=1)
        wb = Signal(range(nb))
        widx = Signal(range(sf_max))
        # word address of bank wb's word widx: banks are filled in turn, so (beyond two banks,
        # where it is a mux) a counter of its own instead of wb * SF + widx arithmetic
        waddr = Signal(range(nb * sf_max))
        g = Signal(range(groups))
        pix_first, pix_last = Signal(), Signal()
        m.d.comb += [left.eq(Mux(emit, count - wu, count)),
                     i.ready.eq(ready),
                     accept.eq(i.valid & ready),
                     wr.addr.eq(Mux(wb, sf_max + widx, widx) if nb == 2 else waddr),
                     wr.data.eq(stage[:word_bits]),
                     wr.en.eq(emit)]
        # an emitted word rotates to the top, not shifted out for zeros: those bits are written
        # before they are emitted again, and a constant there would be a synchronous reset to
        # yosys, whose ECP5 LSR pin then carries the emit logic (Fmax)
        count_next = Signal.like(count)
        m.d.comb += count_next.eq(left + Mux(accept, bu, 0))
        m.d.sync += [stage.eq(Mux(emit, stage.rotate_right(word_bits), stage)),
                     count.eq(count_next)]
        # The beat lands above the units held whenever one could be taken (``i.ready``), taken
        # or not: those units are free, and an untaken beat's are overwritten before they are
        # emitted (``count`` only moves on ``accept``). So the staging register's enables (a
        # few hundred flip-flops) depend on this block's own registers only, not on the
        # producer's ``valid`` (Fmax: that route was the ECP5 design's critical path).
        for k in range(wu):
            with m.If(load[k]):             # ready & (left == k)
                m.d.sync += stage[k * unit_bits:(k + bu) * unit_bits].eq(i.payload.data)
        with m.If(accept):
            m.d.sync += g.eq(Mux(g == groups - 1, 0, g + 1))
            with m.If(g == 0):
                m.d.sync += pix_first.eq(i.payload.first)
            with m.If(g == groups - 1):
                m.d.sync += pix_last.eq(i.payload.last)
        # The pixel's last word is written no earlier than the cycle the next pixel's first beat
        # is taken, so pix_first / pix_last still hold this pixel's markers here.
        with m.If(emit):
            if nb > 2:
                m.d.sync += waddr.eq(Mux(waddr == nb * sf_max - 1, 0, waddr + 1))
            with m.If(widx == sf_max - 1):
                m.d.sync += [widx.eq(0),
                             full.bit_select(wb, 1).eq(1),
                             bank_first.bit_select(wb, 1).eq(pix_first),
                             bank_last.bit_select(wb, 1).eq(pix_last)]
            with m.Else():
                m.d.sync += widx.eq(widx + 1)

        # Replay: bank rb, NF passes of SF words; the read port's data is the output payload.
        rb = Signal(range(nb))
        rbase = Signal(range(nb * sf_max))      # rb * SF (beyond two banks)
        nf = Signal(range(nf_max))
        sf = Signal(range(sf_max))
        en, issue = Signal(), Signal()
        first, last = Signal(), Signal()
        m.d.comb += [en.eq(~o.valid | o.ready), issue.eq(en & full.bit_select(rb, 1)),
                     rd.addr.eq(Mux(rb, sf_max + sf, sf) if nb == 2 else rbase + sf),
                     rd.en.eq(en),
                     o.payload.data.eq(rd.data), o.payload.first.eq(first),
                     o.payload.last.eq(last)]
        with m.If(en):
            m.d.sync += o.valid.eq(issue)
        final = step_replay(m, issue, full, rb, nf, sf, nf_max, sf_max)
        if nb > 2:
            with m.If(issue & final):
                m.d.sync += rbase.eq(Mux(rb == nb - 1, 0, rbase + sf_max))
        with m.If(issue):
            m.d.sync += [first.eq(bank_first.bit_select(rb, 1) & (nf == 0) & (sf == 0)),
                         last.eq(bank_last.bit_select(rb, 1) & final)]

        # the fill bank moves on after its last word (wb_next), and next cycle's emit, ready
        # and load are computed from the next count, fill bank and full bits (a
        # bank is set full by its last word's write and released after its last replay; the
        # two never meet on one bank, since one needs it empty and the other full)
        fill_done = emit & (widx == sf_max - 1)
        release = issue & final
        wb_next = Signal.like(wb)
        full_next = Signal.like(full)
        m.d.comb += [wb_next.eq(Mux(fill_done, (~wb if nb == 2 else wb + 1), wb)),
                     full_next.eq(Cat(*((full[b] | (fill_done & (wb == b)))
                                        & ~(release & (rb == b)) for b in range(nb))))]
        emit_next, left_next = Signal(), Signal.like(left)
        m.d.comb += [emit_next.eq((count_next >= wu) & ~full_next.bit_select(wb_next, 1)),
                     left_next.eq(Mux(emit_next, count_next - wu, count_next))]
        m.d.sync += [wb.eq(wb_next), emit.eq(emit_next), ready.eq(left_next < wu),
                     load.eq(Mux(left_next < wu, Const(1, wu) << left_next, 0))]
        #: observation only (tests): the fill side's registers, to check the registered flags
        #: against their definitions on every cycle
        self.fill_state = {"emit": emit, "ready": ready, "load": load, "count": count,
                           "full": full, "wb": wb}
        return m


class _ConvStage(wiring.Component):
    """What `Conv2dStage` and `exitgate.hw.conv_frame.FrameConv2dStage` share: the constructor's
    checks and attributes (the folding's SIMD and input lanes are each block's own,
    `_check_fold`), the ports, and the MVU (-> lane serialiser) at the end of ``elaborate``.
    ``deep``: the MVU's deeper pipeline (`MatrixVectorUnit`; latency grows, cycles do not).
    ``soft``: the MVU's products (True) or its first ``soft`` PE rows' in logic, not DSPs
    (`MatrixVectorUnit`; same values and cycles); the attribute holds the number of rows."""

    def __init__(self, weights, bias, shape, *, in_width: int = 8, in_signed: bool = False,
                 weight_bits: int = 8, shift: int = 0, out_bits: int = 8,
                 out_signed: bool = False, relu: bool = False, pe: int = 1, simd: int = 1,
                 in_lanes: int = 1, out_lanes: int | None = None, banks: int | None = None,
                 deep: bool = False, soft: bool | int = False):
        self._MustUse__silence = True  # no UnusedElaboratable warning if a check fails
        owner = type(self).__name__
        self.deep = bool(deep)
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
        self._check_fold(owner, c, simd, in_lanes)
        if not isinstance(out_lanes, int) or out_lanes < 1 or pe % out_lanes:
            raise ValueError(f"{owner}: out_lanes must be a positive divisor of pe ({pe}), "
                             f"got {out_lanes!r}")
        self.weights, self.bias, self.shape = weights.astype(np.int64), bias.astype(np.int64), shape
        self.out_shape = (cout, h, w)
        self.in_width, self.in_signed, self.weight_bits = in_width, in_signed, weight_bits
        self.shift, self.out_bits = int(shift), out_bits
        self.out_signed, self.relu = out_signed, relu
        self.pe, self.simd, self.in_lanes, self.out_lanes = pe, simd, in_lanes, out_lanes
        self.soft = soft_rows(soft, pe, owner)      # PE rows with their products in logic
        self.nf, self.sf = cout // pe, n // simd
        self.banks = self._banks(owner, banks)
        self.acc_width = accumulator_width(weights, bias, in_width, in_signed)
        self._MustUse__silence = False
        super().__init__({
            "i": In(activation_signature(in_lanes, in_width, signed_data=in_signed)),
            "o": Out(activation_signature(out_lanes, out_bits, signed_data=out_signed))})
        #: observation only: the MVU's ``mac_active`` and ``weight_read_en`` (`MatrixVectorUnit`)
        self.mac_active, self.weight_read_en = Signal(), Signal()

    def _check_fold(self, owner: str, channels: int, simd, in_lanes) -> None:
        raise NotImplementedError

    def _banks(self, owner: str, banks) -> int:
        raise NotImplementedError

    def _mvu(self, m, matrix, chunks) -> None:
        """The MVU on the chunk stream ``chunks`` (vector order = ``matrix``'s columns), then the
        lane serialiser when ``out_lanes < pe``, to ``o``."""
        m.submodules.mvu = mvu = MatrixVectorUnit(
            matrix, self.bias, in_width=self.in_width, in_signed=self.in_signed,
            weight_bits=self.weight_bits, pe=self.pe, simd=self.simd, acc_width=self.acc_width,
            shift=self.shift, out_bits=self.out_bits, out_signed=self.out_signed, relu=self.relu,
            deep=self.deep, soft=self.soft)
        wiring.connect(m, chunks, mvu.i)
        m.d.comb += [self.mac_active.eq(mvu.mac_active),
                     self.weight_read_en.eq(mvu.weight_read_en)]
        if self.out_lanes == self.pe:
            wiring.connect(m, mvu.o, wiring.flipped(self.o))
        else:
            m.submodules.serialiser = ser = LaneSerialiser(
                self.pe, self.out_lanes, self.out_bits, self.out_signed)
            wiring.connect(m, mvu.o, ser.i)
            wiring.connect(m, ser.o, wiring.flipped(self.o))


class Conv2dStage(_ConvStage):
    """3x3 convolution, pad 1, stride 1, + bias, requantise (see module docstring).

    Ports: ``i``: In(activation stream, in_lanes x in_width, signed iff in_signed);
    ``o``: Out(activation stream, out_lanes x out_bits, signed iff out_signed).
    Arguments: see `_ConvStage`; ``banks``: of the window buffer (None: `window_buffer_banks`).
    """

    def _check_fold(self, owner, channels, simd, in_lanes):
        n = channels * KERNEL * KERNEL
        if not isinstance(simd, int) or simd < 1 or n % simd:
            raise ValueError(f"{owner}: simd must be a positive divisor of in_channels * 9 "
                             f"({n}), got {simd!r}")
        _check_lanes(owner, in_lanes, channels, "in_lanes")

    def _banks(self, owner, banks):
        if banks is None:
            banks = window_buffer_banks(self.shape, self.in_lanes, self.nf * self.sf)
        if not isinstance(banks, int) or banks < 2 or banks & (banks - 1):
            raise ValueError(f"{owner}: banks must be a power of two >= 2, got {banks!r}")
        return banks

    @property
    def cycles_per_sample(self) -> int:
        """Designed cycles per sample on a back-to-back stream (no back-pressure): the largest of
        compute (``NF*SF`` per pixel, plus the window's warm-up of ``(W+4)*G`` steps at a sample
        boundary beyond the ``banks`` pixels the buffer holds: none with `window_buffer_banks`), the window's ``(H+1)*(W+1)*G`` steps,
        the buffer's fill, and the output's ``Cout/out_lanes`` beats per pixel.

        Fill: the buffer writes one word a cycle, so a pixel takes ``max(SF, G)`` cycles, and the
        window's non-emitting steps (G at the start of each row, ``(W+2)*G`` across a sample
        boundary) stall it unless covered by the beats its staging register and the window's
        output register hold: ``2*(9*lanes - simd)/simd`` cycles of writes. (It matters when
        ``NF = 1``: writing then runs as fast as replaying.)"""
        c, h, w = self.shape
        groups = c // self.in_lanes
        fold = self.nf * self.sf
        compute = h * w * fold + max(0, (w + 4) * groups - self.banks * fold)
        beat = KERNEL * KERNEL * self.in_lanes
        hide = max(0, 2 * (beat - self.simd) // self.simd)
        fill = (h * w * max(self.sf, groups) + (h - 1) * max(0, groups - hide)
                + max(0, (w + 2) * groups - hide))
        return max(compute, (h + 1) * (w + 1) * groups, fill,
                   h * w * self.out_shape[0] // self.out_lanes)

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
        window (2; deep: + its skid buffer, 1), buffer (2 after the pixel's last word is
        written: `_fill_schedule`, the word written ``fill - (G - 1)`` cycles after the last beat
        would have been taken at one beat a cycle), one MVU pass of SF chunks and its pipeline
        (`mvu_latency`)."""
        c, h, w = self.shape
        groups = c // self.in_lanes
        return ((w + 3) * groups - 1 + 2 + int(self.deep) + 2 + self._fill_delay + self.sf
                + mvu_latency(self.simd, self.deep) - 1)

    @property
    def sample_edges(self) -> tuple[int, int]:
        """(input cycles, tail) of one sample in an idle pipeline: how long the block takes to
        accept the whole sample, and how long after its last input beat its last output beat
        leaves (`exitgate.compiler.perf.path_latency`, `level_holds`). The last output row is computed after the last input (it needs the
        padding row)."""
        c, h, w = self.shape
        g = c // self.in_lanes
        fold = self.nf * self.sf
        return (max((h + 1) * (w + 1) * g - (w + 2) * g, self.cycles_per_sample - w * fold),
                max((w + 2) * g, w * fold) + fold + mvu_latency(self.simd, self.deep) + 2
                + int(self.deep))

    @property
    def _fill_delay(self) -> int:
        """Cycles the buffer's gearbox adds to a pixel over taking one beat a cycle and
        releasing the bank on the next: its last word is written ``fill`` cycles after its
        first beat is taken (`_fill_schedule`), against ``G - 1`` cycles."""
        groups = self.shape[0] // self.in_lanes
        beat = KERNEL * KERNEL * self.in_lanes
        u = math.gcd(beat, self.simd)
        return _fill_schedule(groups, beat // u, self.simd // u) - (groups - 1)

    def elaborate(self, platform):
        m = Module()
        c, h, w = self.shape
        groups = c // self.in_lanes
        m.submodules.window = window = SlidingWindow(
            self.shape, kernel=KERNEL, lanes=self.in_lanes, width=self.in_width,
            signed_data=self.in_signed)
        m.submodules.buffer = buffer = _WindowBuffer(
            groups=groups, lanes=self.in_lanes, width=self.in_width,
            signed_data=self.in_signed, nf=self.nf, simd=self.simd, banks=self.banks)
        # Matrix columns in the buffer's vector order: g, ky, kx, lane.
        cout = self.out_shape[0]
        matrix = self.weights.reshape(cout, groups, self.in_lanes, KERNEL, KERNEL) \
            .transpose(0, 1, 3, 4, 2).reshape(cout, -1)
        wiring.connect(m, wiring.flipped(self.i), window.i)
        if self.deep:
            # deep: the window's beats reach the buffer through a skid buffer (Fmax: the
            # buffer's ready does not run into the window's step enable, whose fan-out covers
            # its column registers and line buffer); the ring form, so that the buffer's ready
            # (combinational: its gearbox count and bank flags) does not enable the window's
            # hundreds of payload bits either, only the ring's pointers
            m.submodules.window_skid = skid = SkidBuffer(window.o.signature, ring=True)
            wiring.connect(m, window.o, skid.i)
            wiring.connect(m, skid.o, buffer.i)
        else:
            wiring.connect(m, window.o, buffer.i)
        self._mvu(m, matrix, buffer.o)
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
