"""Streaming 2x2 max pooling, stride 2, and its golden model.

Input: a (C, H, W) map on an activation stream of ``lanes`` lanes (``G = C / lanes`` beats per
pixel). Output: the (C, H // 2, W // 2) map on a stream with the same lanes and width (odd H or W:
the last row / column is dropped, like ``torch.nn.MaxPool2d(2)``).

One input beat per cycle: even columns are held in a `Memory` ``evens`` (depth ``G``, a word of
lanes x width per group; a register if ``G == 1``); on odd columns the horizontal max of even rows
goes to a line buffer `Memory` ``line`` (depth ``(W//2)*G``); on odd rows the vertical max with the
buffered value is emitted. Both memories are read from the input beat's counters when the step
stage advances (data valid in step 1) and written in step 1, their read ports transparent for
their write ports. Latency: an output beat is valid 2 cycles after the input beat that completes
it is accepted. Back-pressure: the output register takes a new beat when empty or accepted; the
step stage moves on unless it holds a result for a blocked output.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .counters import step_raster
from .mvu import elements
from .stream import activation_signature
from .window import _check_lanes, _check_shape, _check_width

__all__ = ["MaxPool2x2", "maxpool2x2_golden"]


def maxpool2x2_golden(x):
    """2x2 max pooling, stride 2, floor: (N, C, H, W) or (C, H, W) -> (..., H//2, W//2) int64."""
    x = np.asarray(x, dtype=np.int64)
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return x.reshape(*x.shape[:-2], h // 2, 2, w // 2, 2).max(axis=(-3, -1))


class MaxPool2x2(wiring.Component):
    """2x2 max pooling, stride 2 (see module docstring).

    Ports: ``i``: In(activation stream, lanes x width); ``o``: Out(same signature).
    """

    def __init__(self, shape, *, lanes: int = 1, width: int = 8, signed_data: bool = False):
        self._MustUse__silence = True  # no UnusedElaboratable warning if a check fails
        _check_shape("MaxPool2x2", shape)
        if shape[1] < 2 or shape[2] < 2:
            raise ValueError(f"MaxPool2x2: H and W must be >= 2, got {shape!r}")
        _check_lanes("MaxPool2x2", lanes, shape[0])
        _check_width("MaxPool2x2", width)
        self.shape, self.lanes, self.width, self.signed_data = shape, lanes, width, signed_data
        self.out_shape = (shape[0], shape[1] // 2, shape[2] // 2)
        sig = activation_signature(lanes, width, signed_data=signed_data)
        self._MustUse__silence = False
        super().__init__({"i": In(sig), "o": Out(sig)})

    @property
    def cycles_per_sample(self) -> int:
        c, h, w = self.shape
        return h * w * (c // self.lanes)

    @property
    def initiation_interval(self) -> float:
        """Designed cycles per output pixel in steady state (one input beat per cycle)."""
        return self.cycles_per_sample / (self.out_shape[1] * self.out_shape[2])

    @property
    def latency(self) -> int:
        """Cycles from accepting the input beat that completes an output beat to it being valid."""
        return 2

    @property
    def sample_edges(self) -> tuple[int, int]:
        """(input cycles, tail) of one sample in an idle pipeline: how long the block takes to
        accept the whole sample, and how long after its last input beat its last output beat
        leaves (`exitgate.compiler.perf.path_latency`, `level_holds`)."""
        return self.cycles_per_sample, self.latency

    def elaborate(self, platform):
        m = Module()
        c, h_max, w_max = self.shape
        groups = c // self.lanes
        wo = w_max // 2
        bits = self.lanes * self.width
        i, o = self.i, self.o

        m.submodules.line = line = Memory(shape=unsigned(bits), depth=wo * groups, init=[])
        wr = line.write_port()
        rd = line.read_port(transparent_for=(wr,))

        en_o, en_1 = Signal(), Signal()
        s1_valid, s1_emit = Signal(), Signal()
        m.d.comb += [en_o.eq(~o.valid | o.ready), en_1.eq(~s1_valid | ~s1_emit | en_o),
                     i.ready.eq(en_1)]
        fire = Signal()
        m.d.comb += fire.eq(en_1 & i.valid)

        h = Signal(range(h_max))
        w = Signal(range(w_max))
        g = Signal(range(groups))
        m.d.comb += [rd.addr.eq((w >> 1) * groups + g), rd.en.eq(en_1)]
        with m.If(fire):
            step_raster(m, [(g, groups), (w, w_max), (h, h_max)])

        s1_h, s1_w, s1_g = Signal.like(h), Signal.like(w), Signal.like(g)
        s1_x = Signal(bits)
        with m.If(en_1):
            m.d.sync += [s1_valid.eq(fire), s1_h.eq(h), s1_w.eq(w), s1_g.eq(g),
                         s1_x.eq(i.payload.data)]

        def lanemax(a, b):
            ea = elements(a, self.lanes, self.width, self.signed_data)
            eb = elements(b, self.lanes, self.width, self.signed_data)
            return Cat(*[Mux(x > y, x, y)[:self.width] for x, y in zip(ea, eb)])

        inside = (s1_h < 2 * (h_max // 2)) & (s1_w < 2 * wo)
        odd_w, odd_h = s1_w[0], s1_h[0]

        # The even column of the current pair, per group, `held` in step 1. groups > 1: a Memory
        # read and written like `line`. The odd pixel's read (as it enters step 1) comes G - 1 >= 1
        # advances after its even pixel's write (as that leaves step 1) and before the group's
        # next write, so the transparency (kept, as for `line`) never acts on a needed word.
        # groups == 1: a register, written as the even pixel leaves step 1 and read while the
        # odd one is in it (a depth-1 memory would add a read-data register to the word).
        even_we = en_1 & s1_valid & ~odd_w
        if groups > 1:
            m.submodules.evens = evens = Memory(shape=unsigned(bits), depth=groups, init=[])
            ev_wr = evens.write_port()
            ev_rd = evens.read_port(transparent_for=(ev_wr,))
            m.d.comb += [ev_rd.addr.eq(g), ev_rd.en.eq(en_1),
                         ev_wr.addr.eq(s1_g), ev_wr.data.eq(s1_x), ev_wr.en.eq(even_we)]
            held = ev_rd.data
        else:
            held = Signal(bits, name="evens")
            with m.If(even_we):
                m.d.sync += held.eq(s1_x)

        def lanemax3(a, b, c):
            """lanemax(a, lanemax(b, c)) with the three compares side by side, one mux after
            them (Fmax: one carry chain between the registers and the output, not two)."""
            out = []
            for x, y, z in zip(*(elements(v, self.lanes, self.width, self.signed_data)
                                 for v in (a, b, c))):
                out.append(Mux((x > y) & (x > z), x, Mux(y > z, y, z))[:self.width])
            return Cat(*out)

        hmax = lanemax(held, s1_x)
        m.d.comb += [s1_emit.eq(inside & odd_w & odd_h),
                     wr.addr.eq((s1_w >> 1) * groups + s1_g), wr.data.eq(hmax),
                     wr.en.eq(en_1 & s1_valid & inside & odd_w & ~odd_h)]

        with m.If(en_o):
            m.d.sync += [
                o.valid.eq(s1_valid & s1_emit),
                o.payload.data.eq(lanemax3(rd.data, held, s1_x)),
                o.payload.first.eq((s1_h == 1) & (s1_w == 1) & (s1_g == 0)),
                o.payload.last.eq((s1_h == 2 * (h_max // 2) - 1) & (s1_w == 2 * wo - 1)
                                  & (s1_g == groups - 1)),
            ]
        return m
