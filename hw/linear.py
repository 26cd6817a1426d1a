"""Streaming fully connected layer over a flattened (C, H, W) map, PE x SIMD folded, and its
golden model.

`LinearStage` = `_VectorBuffer` -> `MatrixVectorUnit` (-> `LaneSerialiser`).

* Flatten order is PyTorch's (``f = c*H*W + h*W + w``) but the map arrives in stream order
  (pixels in raster order, channels as lanes: element ``e = (h*W + w)*C + c``). The *weight ROM*
  is reordered to stream order; the data is never reordered.
* `_VectorBuffer` packs ``simd / in_lanes`` input beats per word into one of two banks of a
  `Memory` (``2 * N / simd`` words, double-buffered) and replays the other bank ``NF = Cout / pe``
  times as ``SF = N / simd`` chunks, one per cycle.
* Output, hidden layer (``shift`` an int): requantised activations, a (Cout, 1, 1) map on a stream
  of ``out_lanes`` lanes of ``out_bits``.
  Output, exit head (``shift=None``): the raw integer logits, one per beat, class order
  ``0 .. Cout-1``, signed, ``acc_width`` bits (``data`` has one lane), ``first`` on class 0 and
  ``last`` on class Cout-1 of each sample.

Throughput (cycles per sample, steady state): ``max(NF * SF, N / in_lanes, Cout / out_lanes)``.
Latency: the first output beat is valid ``SF + 4`` cycles after the sample's last input beat is
accepted (idle pipeline). Back-pressure as in `exitgate.hw.mvu`; the buffer's replay register
advances only when empty or accepted, and its filler only into a free bank.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..numerics import requantise
from .conv import _check_common
from .counters import step_replay
from .mvu import (LaneSerialiser, MatrixVectorUnit, accumulator_width, chunk_signature,
                  mvu_latency, soft_rows)
from .ram import read_register, sdp_memory
from .stream import activation_signature
from .window import _check_lanes, _check_shape

__all__ = ["LinearStage", "linear_acc", "linear_golden"]


def linear_acc(x, weights, bias):
    """Integer accumulators of a fully connected layer: x (N, ...) flattened in PyTorch order,
    weights (Cout, F), bias (Cout,) -> (N, Cout) int64."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(weights, dtype=np.int64)
    return x.reshape(len(x), -1) @ w.T + np.asarray(bias, dtype=np.int64)


def linear_golden(x, weights, bias, shift: int | None = None, out_bits: int = 8,
                  out_signed: bool = False, relu: bool = False):
    """The bit-exact model of `LinearStage`: raw logits if ``shift`` is None, otherwise
    `exitgate.numerics.requantise` of the accumulators. Shape (N, Cout)."""
    acc = linear_acc(x, weights, bias)
    return acc if shift is None else requantise(acc, shift, out_bits, out_signed, relu)


class _VectorBuffer(wiring.Component):
    """Double-buffered vector store: ``n`` values in, ``nf`` replays of ``n / simd`` chunks out.

    Ports: ``i``: In(activation stream, lanes x width); ``o``: Out(chunk stream, simd x width).
    """

    def __init__(self, *, n: int, lanes: int, width: int, signed_data: bool, nf: int, simd: int):
        self.n, self.lanes, self.width, self.nf, self.simd = n, lanes, width, nf, simd
        self.sf = n // simd
        super().__init__({
            "i": In(activation_signature(lanes, width, signed_data=signed_data)),
            "o": Out(chunk_signature(simd, width, signed_data))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        sf_max, nf_max = self.sf, self.nf
        beat_bits = self.lanes * self.width
        per_word = self.simd // self.lanes
        m.submodules.store = store = sdp_memory(shape=unsigned(self.simd * self.width),
                                                depth=2 * sf_max)
        # the read port is enabled while bank rb fills, but its data is then not issued
        wr = store.write_port()
        rd = read_register(m, store, wr)
        full, bank_first, bank_last = Signal(2), Signal(2), Signal(2)

        # Fill: per_word beats -> one word of bank wb.
        wb = Signal()
        widx = Signal(range(sf_max))
        k = Signal(range(per_word))
        held = Signal((per_word - 1) * beat_bits)
        fill_first = Signal()
        accept = i.valid & i.ready
        m.d.comb += [i.ready.eq(~full.bit_select(wb, 1)),
                     wr.addr.eq(Mux(wb, sf_max + widx, widx)),
                     wr.data.eq(Cat(held, i.payload.data)),
                     wr.en.eq(accept & (k == per_word - 1))]
        with m.If(accept):
            with m.If((k == 0) & (widx == 0)):
                m.d.sync += fill_first.eq(i.payload.first)
            if per_word > 1:
                for j in range(per_word - 1):
                    with m.If(k == j):
                        m.d.sync += [held.word_select(j, beat_bits).eq(i.payload.data),
                                     k.eq(j + 1)]
                with m.If(k == per_word - 1):
                    m.d.sync += k.eq(0)
            with m.If(k == per_word - 1):
                with m.If(widx == sf_max - 1):
                    m.d.sync += [widx.eq(0), wb.eq(~wb), full.bit_select(wb, 1).eq(1),
                                 bank_first.bit_select(wb, 1).eq(
                                     Mux((k == 0) & (widx == 0), i.payload.first, fill_first)),
                                 bank_last.bit_select(wb, 1).eq(i.payload.last)]
                with m.Else():
                    m.d.sync += widx.eq(widx + 1)

        # Replay: NF passes over bank rb; the read port's data is the output payload.
        rb = Signal()
        nf = Signal(range(nf_max))
        sf = Signal(range(sf_max))
        en = Signal()
        issue = Signal()
        first, last = Signal(), Signal()
        final = (nf == nf_max - 1) & (sf == sf_max - 1)
        m.d.comb += [en.eq(~o.valid | o.ready), issue.eq(en & full.bit_select(rb, 1)),
                     rd.addr.eq(Mux(rb, sf_max + sf, sf)), rd.en.eq(en),
                     o.payload.data.eq(rd.data), o.payload.first.eq(first),
                     o.payload.last.eq(last)]
        with m.If(en):
            m.d.sync += o.valid.eq(issue)
        step_replay(m, issue, full, rb, nf, sf, nf_max, sf_max)
        with m.If(issue):
            m.d.sync += [first.eq(bank_first.bit_select(rb, 1) & (nf == 0) & (sf == 0)),
                         last.eq(bank_last.bit_select(rb, 1) & final)]
        return m


class LinearStage(wiring.Component):
    """Fully connected layer + bias, requantised or raw logits (see module docstring).

    Ports: ``i``: In(activation stream, in_lanes x in_width, signed iff in_signed);
    ``o``: Out(activation stream): ``out_lanes`` x ``out_bits`` (signed iff out_signed), or with
    ``shift=None`` one signed ``acc_width``-bit logit per beat.
    ``deep``: the MVU's deeper pipeline (`MatrixVectorUnit`; latency grows, cycles do not).
    ``soft``: the MVU's products (True) or its first ``soft`` PE rows' in logic, not DSPs
    (`MatrixVectorUnit`; same values and cycles); the attribute holds the number of rows.
    """

    def __init__(self, weights, bias, shape, *, in_width: int = 8, in_signed: bool = False,
                 weight_bits: int = 8, shift: int | None = 0, out_bits: int = 8,
                 out_signed: bool = False, relu: bool = False, pe: int = 1, simd: int = 1,
                 in_lanes: int = 1, out_lanes: int | None = None, deep: bool = False,
                 soft: bool | int = False):
        self._MustUse__silence = True  # no UnusedElaboratable warning if a check fails
        owner = "LinearStage"
        self.deep = bool(deep)
        _check_shape(owner, shape)
        c, h, w = shape
        n = c * h * w
        weights = np.asarray(weights)
        bias = np.asarray(bias)
        if not np.issubdtype(weights.dtype, np.integer) or weights.ndim != 2 \
                or weights.shape[1] != n:
            raise ValueError(f"{owner}: weights must be an integer array of shape (Cout, {n}), "
                             f"got {weights.dtype} {weights.shape}")
        cout = weights.shape[0]
        if not np.issubdtype(bias.dtype, np.integer) or bias.shape != (cout,):
            raise ValueError(f"{owner}: bias must be an integer array of shape ({cout},), "
                             f"got {bias.dtype} {bias.shape}")
        _check_common(owner, weights, in_width, weight_bits, shift, out_bits, allow_none=True)
        if not isinstance(pe, int) or pe < 1 or cout % pe:
            raise ValueError(f"{owner}: pe must be a positive divisor of the output count "
                             f"({cout}), got {pe!r}")
        _check_lanes(owner, in_lanes, c, "in_lanes")
        if not isinstance(simd, int) or simd < 1 or simd % in_lanes or n % simd:
            raise ValueError(f"{owner}: simd must be a multiple of in_lanes ({in_lanes}) that "
                             f"divides C*H*W ({n}), got {simd!r}")
        if out_lanes is None:
            out_lanes = 1 if shift is None else pe
        if shift is None and out_lanes != 1:
            raise ValueError(f"{owner}: out_lanes must be 1 for raw logits (shift=None), "
                             f"got {out_lanes!r}")
        if not isinstance(out_lanes, int) or out_lanes < 1 or pe % out_lanes:
            raise ValueError(f"{owner}: out_lanes must be a positive divisor of pe ({pe}), "
                             f"got {out_lanes!r}")
        self.weights, self.bias, self.shape = weights.astype(np.int64), bias.astype(np.int64), shape
        self.outputs = cout
        self.in_width, self.in_signed, self.weight_bits = in_width, in_signed, weight_bits
        self.shift = None if shift is None else int(shift)
        self.out_bits, self.out_signed, self.relu = out_bits, out_signed, relu
        self.pe, self.simd, self.in_lanes, self.out_lanes = pe, simd, in_lanes, out_lanes
        self.soft = soft_rows(soft, pe, owner)      # PE rows with their products in logic
        self.nf, self.sf = cout // pe, n // simd
        self.acc_width = accumulator_width(weights, bias, in_width, in_signed)
        if shift is None:
            out = activation_signature(1, self.acc_width, signed_data=True)
        else:
            out = activation_signature(out_lanes, out_bits, signed_data=out_signed)
        self._MustUse__silence = False
        super().__init__({
            "i": In(activation_signature(in_lanes, in_width, signed_data=in_signed)),
            "o": Out(out)})
        #: observation only: the MVU's ``mac_active`` and ``weight_read_en`` (`MatrixVectorUnit`)
        self.mac_active, self.weight_read_en = Signal(), Signal()

    @property
    def cycles_per_sample(self) -> int:
        """Designed cycles per sample in steady state (no back-pressure)."""
        c, h, w = self.shape
        return max(self.nf * self.sf, c * h * w // self.in_lanes, self.outputs // self.out_lanes)

    @property
    def initiation_interval(self) -> int:
        """Cycles per output vector (= per sample): `cycles_per_sample`."""
        return self.cycles_per_sample

    @property
    def latency(self) -> int:
        """Cycles from accepting a sample's last input beat to its first output beat being valid
        (idle pipeline): buffer (2), one MVU pass of SF chunks, the MVU pipeline
        (`mvu_latency` - 1 after the pass's last chunk is taken)."""
        return self.sf + 1 + mvu_latency(self.simd, self.deep, self.shift is not None)

    @property
    def sample_edges(self) -> tuple[int, int]:
        """(input cycles, tail) of one sample in an idle pipeline: how long the block takes to
        accept the whole sample, and how long after its last input beat its last output beat
        leaves (`exitgate.compiler.perf.path_latency`, `level_holds`)."""
        c, h, w = self.shape
        return c * h * w // self.in_lanes, self.nf * self.sf + 4 + self.outputs // self.out_lanes

    def elaborate(self, platform):
        m = Module()
        c, h, w = self.shape
        n = c * h * w
        m.submodules.buffer = buffer = _VectorBuffer(
            n=n, lanes=self.in_lanes, width=self.in_width, signed_data=self.in_signed,
            nf=self.nf, simd=self.simd)
        # Matrix columns in stream order (h, w, c) instead of PyTorch's (c, h, w).
        matrix = self.weights.reshape(self.outputs, c, h, w).transpose(0, 2, 3, 1) \
            .reshape(self.outputs, n)
        m.submodules.mvu = mvu = MatrixVectorUnit(
            matrix, self.bias, in_width=self.in_width, in_signed=self.in_signed,
            weight_bits=self.weight_bits, pe=self.pe, simd=self.simd, acc_width=self.acc_width,
            shift=self.shift, out_bits=self.out_bits, out_signed=self.out_signed, relu=self.relu,
            deep=self.deep, soft=self.soft)
        wiring.connect(m, wiring.flipped(self.i), buffer.i)
        wiring.connect(m, buffer.o, mvu.i)
        m.d.comb += [self.mac_active.eq(mvu.mac_active),
                     self.weight_read_en.eq(mvu.weight_read_en)]
        if self.out_lanes == self.pe:
            wiring.connect(m, mvu.o, wiring.flipped(self.o))
        else:
            width = self.acc_width if self.shift is None else self.out_bits
            m.submodules.serialiser = ser = LaneSerialiser(
                self.pe, self.out_lanes, width, self.shift is None or self.out_signed)
            wiring.connect(m, mvu.o, ser.i)
            wiring.connect(m, ser.o, wiring.flipped(self.o))
        return m
