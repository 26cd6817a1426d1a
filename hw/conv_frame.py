"""Streaming 3x3 convolution (pad 1, stride 1) that reads its operands from a frame memory: the
SIMD = 1, one-input-lane alternative to `exitgate.hw.conv.Conv2dStage` for small boards.

`FrameConv2dStage` = `_FrameBuffer` -> `MatrixVectorUnit` (-> `LaneSerialiser` when
``out_lanes < pe``).

At SIMD = 1 the MVU takes one value a cycle, so the sliding window's register columns and the
window buffer's regrouping registers (`Conv2dStage`) are not needed: the whole input map of a
small layer fits in one block RAM, and the MVU's operands can be read straight from it.

* `_FrameBuffer` writes the input stream (one value a beat, raster order of pixels, channels
  within a pixel) into one of two banks of a `Memory` (``2 * C*H*W`` words of ``in_width`` bits,
  synchronous read: block RAM), word ``(h*W + w)*C + c`` of the bank, and, for each output pixel
  (raster order), replays ``NF = Cout / pe`` passes of ``SF = 9 * C`` reads in the order
  ``ky, kx, c`` (vector index ``(ky*3 + kx)*C + c``), 0 for taps outside the map. Double
  buffering overlaps writing sample n+1 with computing sample n; a pixel's passes start as soon
  as the input up to its bottom-right neighbour has been written, so the first sample does not
  wait for its whole frame.
* The MVU holds the weights, reordered to that vector order, in a ROM of ``NF * SF`` words of
  ``pe`` weights (`MatrixVectorUnit`).

Fmax: the read address is one register that adds a constant per read (1 along the ``3*C``
contiguous words of a kernel row; at a loop's end the step to the next kernel row, back to the
pixel's first tap, to the next pixel or to the other bank's first tap), chosen by loop-end flags
that are registers themselves (`flagged_counter`): no multiplier, no compare chain, one adder.

Memory: ``2 * C*H*W * in_width`` bits (an iCE40 4-kbit block RAM holds both banks of a map of
256 values at 8 bits); the whole input map must fit, so this suits small late layers.

Cycles per sample (back-to-back stream, no back-pressure): ``H*W*NF*SF`` (compute; the input's
``C*H*W`` beats and the output's ``Cout/out_lanes`` beats per pixel can bound it only in
principle, see `FrameConv2dStage.cycles_per_sample`). Each unit advances on
``~o.valid | o.ready`` of its own output register; stalls propagate back through ``ready``
without losing or duplicating beats.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .conv import KERNEL, _ConvStage
from .counters import flagged_counter
from .mvu import chunk_signature, mvu_latency
from .ram import read_register, sdp_memory
from .stream import activation_signature

__all__ = ["FrameConv2dStage"]

#: banks of the frame memory (double buffering)
BANKS = 2


class _FrameBuffer(wiring.Component):
    """Frame memory of two banks of ``C*H*W`` words, written from a one-lane activation stream
    and replayed as the chunk stream (``simd = 1``) of a 3x3, pad 1 convolution (see module
    docstring).

    Write side: the input's beat k of a sample goes to word k of bank ``wb``, one beat a cycle
    while that bank is not full; after the sample's last word the bank is full and ``wb`` moves
    on. ``wcount`` counts the words written into ``wb``.

    Read side: tap ``c`` (counter), ``kx``, ``ky`` (one-hot), pass ``nf``, pixel ``ox``, ``oy``
    (counters); the loop ends are registered flags (`flagged_counter`), so the step logic is a few
    gates. The read address ``addr`` is one register that only adds a constant: 1 along a kernel
    row (its ``3*C`` words are contiguous), and at the end of a kernel row, of a pass, of a pixel
    and of the sample the constant that moves to the next kernel row (``+W*C`` from the row's
    start), back to the pixel's first tap, to the next pixel's (``+C``), to the other bank's
    first. Tap (0, 0, 0) of pixel (oy, ox) is word ``((oy-1)*W + ox-1)*C`` of the bank: out of
    range at the map's top and left edges, so addresses are taken modulo the address width, and
    a tap outside the map reads anything and is replaced by 0 (``pad``) on the output.

    A pixel's first read is issued when bank ``rb`` is full or holds at least ``need`` words
    (pixel p needs ``(p + W + 2) * C``: up to its bottom-right neighbour; no clamp, beyond
    ``C*H*W`` the bank's ``full`` bit decides). ``ahead`` is that compare (with ``wb == rb``)
    registered, so a cycle late, which is safe: ``wcount`` only grows while ``wb`` stays (and a
    bank the writer leaves is full); ``need`` grows on a pixel's first read, and the next
    pixel's first read is at least ``SF = 9*C >= 9`` reads later; after a sample's last read
    ``need`` (then ``(H*W + W + 2) * C``) exceeds any ``wcount``, so the late value across the
    bank change is 0. After the sample's last read the bank is released (``full`` cleared) and
    ``rb`` moves on.

    The read port (not transparent, enabled when the output register can move) is the output
    payload (masked by ``pad``); ``valid``, ``first``, ``last``, ``pad`` are registered beside it.

    Ports: ``i``: In(activation stream, 1 x width); ``o``: Out(chunk stream, 1 x width).
    """

    def __init__(self, shape, *, width: int, signed_data: bool, nf: int):
        self.shape, self.width, self.nf = shape, width, nf
        super().__init__({"i": In(activation_signature(1, width, signed_data=signed_data)),
                          "o": Out(chunk_signature(1, width, signed_data))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        c_max, h_max, w_max = self.shape
        frame = c_max * h_max * w_max
        m.submodules.frames = frames = sdp_memory(shape=unsigned(self.width),
                                                  depth=BANKS * frame)
        # the read port is enabled while bank rb fills, but its data is then not issued
        wr = frames.write_port()
        rd = read_register(m, frames, wr)
        full = Signal(BANKS)

        # Write: one beat a cycle into bank wb until it is full.
        wb = Signal(range(BANKS))
        wcount = Signal(range(frame))
        wlast = Signal(init=frame == 1)         # wcount == C*H*W - 1
        waddr = Signal(range(BANKS * frame))    # wb * CHW + wcount, as a counter of its own
        accept = Signal()
        m.d.comb += [i.ready.eq(~full.bit_select(wb, 1)),
                     accept.eq(i.valid & i.ready),
                     wr.addr.eq(waddr), wr.data.eq(i.payload.data[0]), wr.en.eq(accept)]
        with m.If(accept):
            m.d.sync += waddr.eq(Mux(waddr == BANKS * frame - 1, 0, waddr + 1))
            with m.If(wlast):
                m.d.sync += [wcount.eq(0), wlast.eq(frame == 1), wb.eq(~wb),
                             full.bit_select(wb, 1).eq(1)]
            with m.Else():
                m.d.sync += [wcount.eq(wcount + 1), wlast.eq(wcount == frame - 2)]

        # Read: the loops, innermost first c, kx, ky (tap), nf (pass), ox, oy (pixel).
        en, issue = Signal(), Signal()
        rb = Signal(range(BANKS))
        kx = Signal(KERNEL, init=1)             # one-hot
        ky = Signal(KERNEL, init=1)
        _, c_last, _ = flagged_counter(m, issue, c_max, "c")
        end_row = c_last & kx[-1]
        end_pass = end_row & ky[-1]
        _, nf_last, _ = flagged_counter(m, issue & end_pass, self.nf, "nf")
        end_pixel = end_pass & nf_last
        _, right, left = flagged_counter(m, issue & end_pixel, w_max, "ox")
        _, bottom, top = flagged_counter(m, issue & end_pixel & right, h_max, "oy")
        final = end_pixel & right & bottom
        pix_start = Signal(init=1)              # the pixel's first read (nf, ky, kx, c all 0)
        with m.If(issue):
            m.d.sync += pix_start.eq(end_pixel)
            with m.If(c_last):
                m.d.sync += kx.eq(kx.rotate_left(1))
            with m.If(end_row):
                m.d.sync += ky.eq(ky.rotate_left(1))

        # Address, modulo 2**bits: a valid tap's address is in range, padding taps are masked.
        bits = len(rd.addr)
        mod = 1 << bits
        starts = [(b * frame - (w_max + 1) * c_max) % mod for b in range(BANKS)]
        # tap (2, 2, C-1) of the sample's last pixel, in bank b
        ends = [s + (h_max * w_max + 2 * w_max + 2) * c_max - 1 for s in starts]
        addr = Signal(bits, init=starts[0])
        step = Mux(~end_row, 1,
                   Mux(~ky[-1], (1 + (w_max - 3) * c_max) % mod,           # next kernel row
                       Mux(~nf_last, (1 - (2 * w_max + 3) * c_max) % mod,  # the pixel's tap 0
                           Mux(~(right & bottom), (1 - (2 * w_max + 2) * c_max) % mod,
                               Mux(rb, (starts[0] - ends[1]) % mod,        # the other bank's
                                   (starts[1] - ends[0]) % mod)))))        # first tap

        # Early start: pixel p may start once bank rb holds (p + W + 2) * C words (or is full).
        need_first = (w_max + 2) * c_max
        need = Signal(range((h_max * w_max + w_max + 2) * c_max + 1), init=need_first)
        ahead = Signal()

        m.d.comb += [en.eq(~o.valid | o.ready),
                     issue.eq(en & (~pix_start | full.bit_select(rb, 1) | ahead))]
        m.d.sync += ahead.eq((wb == rb) & (wcount >= need))
        with m.If(issue):
            m.d.sync += addr.eq(addr + step)
            with m.If(pix_start):
                m.d.sync += need.eq(need + c_max)
            with m.If(final):
                # release the bank; the next one starts at pixel (0, 0)
                m.d.sync += [need.eq(need_first), full.bit_select(rb, 1).eq(0), rb.eq(~rb)]

        # Zero padding: kernel row 0 is outside the map on output row 0, row 2 on row H-1;
        # likewise the columns.
        row_ok = ~(ky[0] & top) & ~(ky[-1] & bottom)
        col_ok = ~(kx[0] & left) & ~(kx[-1] & right)
        pad, first, last = Signal(), Signal(), Signal()
        m.d.comb += [rd.addr.eq(addr), rd.en.eq(en),
                     o.payload.data.eq(Mux(pad, 0, rd.data)),
                     o.payload.first.eq(first), o.payload.last.eq(last)]
        with m.If(en):
            m.d.sync += [o.valid.eq(issue), pad.eq(~(row_ok & col_ok)),
                         first.eq(pix_start & left & top), last.eq(final)]
        return m


class FrameConv2dStage(_ConvStage):
    """3x3 convolution, pad 1, stride 1, + bias, requantise, at ``simd = 1`` and
    ``in_lanes = 1`` from a double-buffered frame memory (see module docstring). A drop-in for
    `Conv2dStage` there: same constructor, ports, attributes and golden model
    (`exitgate.hw.conv.conv2d_golden`); ``banks`` is accepted for that and ignored (the frame
    memory always has two banks).

    Ports: ``i``: In(activation stream, 1 x in_width, signed iff in_signed);
    ``o``: Out(activation stream, out_lanes x out_bits, signed iff out_signed).
    """

    def _check_fold(self, owner, channels, simd, in_lanes):
        if not isinstance(simd, int) or simd != 1:
            raise ValueError(f"{owner}: simd must be 1 (the frame memory gives one value a "
                             f"cycle; use Conv2dStage for simd > 1), got {simd!r}")
        if not isinstance(in_lanes, int) or in_lanes != 1:
            raise ValueError(f"{owner}: in_lanes must be 1 (the frame memory takes one value a "
                             f"cycle; use Conv2dStage for in_lanes > 1), got {in_lanes!r}")

    def _banks(self, owner, banks):
        return BANKS

    @property
    def cycles_per_sample(self) -> int:
        """Designed cycles per sample on a back-to-back stream (no back-pressure): the largest of
        compute (``NF*SF`` per pixel, one read a cycle, no gap between pixels, passes or
        samples: the next sample's bank is full by the time the current one is released), the
        input's ``C*H*W`` beats (never the largest: ``SF = 9*C``) and the output's
        ``Cout/out_lanes`` beats per pixel (larger than ``NF*SF`` only if
        ``pe/out_lanes > 9*C``)."""
        c, h, w = self.shape
        return max(h * w * self.nf * self.sf, c * h * w,
                   h * w * self.out_shape[0] // self.out_lanes)

    @property
    def initiation_interval(self) -> float:
        """Designed cycles per output pixel on a back-to-back stream: ``cycles_per_sample / (H*W)``;
        ``NF * SF`` unless the output serialiser sets the pace."""
        return self.cycles_per_sample / (self.shape[1] * self.shape[2])

    @property
    def latency(self) -> int:
        """Cycles from the cycle a sample's first input beat is accepted to the cycle its first
        output beat is valid (no stalls, idle pipeline, one beat a cycle): pixel (0, 0) starts
        once the bank holds ``(W+2)*C`` words (its bottom-right neighbour), one cycle after that
        for the registered compare (``(W+2)*C + 1``), or once the whole frame is written (bank
        full: ``C*H*W``) if that is earlier (``H = 1``, or 2 x 1 and 2 x 2 maps); then the read
        (1), one MVU pass of SF chunks and its pipeline (`mvu_latency`)."""
        c, h, w = self.shape
        return (min((w + 2) * c + 1, c * h * w) + 1 + self.sf - 1
                + mvu_latency(self.simd, self.deep))

    @property
    def sample_edges(self) -> tuple[int, int]:
        """(input cycles, tail) of one sample in an idle pipeline: how long the block takes to
        accept the whole sample, and how long after its last input beat its last output beat
        leaves (`exitgate.compiler.perf.path_latency`, `level_holds`). One beat a cycle into a free bank; outputs one pass (SF chunks) apart
        from `latency`."""
        c, h, w = self.shape
        last_out = self.latency + (h * w * self.nf - 1) * self.sf + self.pe // self.out_lanes - 1
        return c * h * w, max(1, last_out - (c * h * w - 1))

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buffer = _FrameBuffer(
            self.shape, width=self.in_width, signed_data=self.in_signed, nf=self.nf)
        # Matrix columns in the buffer's vector order: ky, kx, c.
        matrix = self.weights.transpose(0, 2, 3, 1).reshape(self.out_shape[0], -1)
        wiring.connect(m, wiring.flipped(self.i), buffer.i)
        self._mvu(m, matrix, buffer.o)
        return m
