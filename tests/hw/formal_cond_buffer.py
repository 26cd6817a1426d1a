"""Formal harness for ConditionalBuffer. Every beat carries its global index as data (sample =
tag // beats, beat = tag % beats); decisions and all handshakes are arbitrary under the stream
protocol. A reference pointer holds the tag the output must carry next: it steps over samples
decided exit and over each beat that leaves. Checks:

- every output beat is exactly the expected tag (nothing lost, duplicated or reordered), was
  accepted earlier, belongs to a sample decided continue, and has its own first/last flags;
- a decision is accepted only after its sample's first beat;
- the output holds while stalled;
- drain (bounded liveness): once the environment stops starting samples, answers every pending
  decision and keeps ``o.ready`` high, within ``drain_cycles`` every accepted sample has left
  (or been dropped) and nothing is left on the output.
"""

from __future__ import annotations

from amaranth.asserts import AnySeq
from amaranth.hdl import Array, Assert, Assume, Module, Mux, Signal

__all__ = ["cond_buffer_harness", "TAG_BITS"]

TAG_BITS = 4


def cond_buffer_harness(dut, drain_cycles: int | None = None):
    bps, depth = dut.beats_per_sample, dut.depth
    assert bps & (bps - 1) == 0, "harness splits tags with a power-of-two beats_per_sample"
    bb = (bps - 1).bit_length()
    n_samples = 1 << (TAG_BITS - bb)
    if drain_cycles is None:
        drain_cycles = depth * (bps + 1)

    def build():
        m = Module()
        m.submodules.dut = dut
        i, d, o = dut.i, dut.decision, dut.o

        # --- environment
        in_count = Signal(TAG_BITS)          # beats accepted so far = tag of the next beat
        in_beat = in_count[:bb] if bb else 0
        m.d.comb += [i.valid.eq(AnySeq(1)), d.valid.eq(AnySeq(1)),
                     d.payload.exit.eq(AnySeq(1)), o.ready.eq(AnySeq(1)),
                     i.payload.data[0].eq(in_count),
                     i.payload.first.eq(in_beat == 0), i.payload.last.eq(in_beat == bps - 1)]
        i_fire, d_fire, o_fire = i.valid & i.ready, d.valid & d.ready, o.valid & o.ready
        i_held, d_held, d_prev = Signal(), Signal(), Signal()
        m.d.sync += [i_held.eq(i.valid & ~i.ready), d_held.eq(d.valid & ~d.ready),
                     d_prev.eq(d.payload.exit)]
        with m.If(i_held):
            m.d.comb += Assume(i.valid)
        with m.If(d_held):
            m.d.comb += Assume(d.valid & (d.payload.exit == d_prev))
        with m.If(i_fire):
            m.d.sync += in_count.eq(in_count + 1)
        # never wrap the tags within the bound
        m.d.comb += Assume(in_count != (1 << TAG_BITS) - 1)

        # Decisions, as the harness saw them.
        dec_count = Signal(TAG_BITS - bb + 1)
        dec_exit = Array(Signal(name=f"dec_exit_{k}") for k in range(n_samples))
        with m.If(d_fire):
            m.d.sync += [dec_exit[dec_count[:TAG_BITS - bb]].eq(d.payload.exit),
                         dec_count.eq(dec_count + 1)]
        started = (in_count + (1 << bb) - 1) >> bb  # samples whose first beat was accepted
        with m.If(d_fire):
            m.d.comb += Assert(dec_count < started, "decision taken before its sample's first beat")

        # Drain phase: sticky once chosen, starts between samples.
        drain = Signal()
        drain_go = AnySeq(1)
        with m.If(drain_go & (in_beat == 0)):
            m.d.sync += drain.eq(1)
        drain_len = Signal(range(drain_cycles + 1))
        with m.If(drain & (drain_len != drain_cycles)):
            m.d.sync += drain_len.eq(drain_len + 1)
        with m.If(drain):
            m.d.comb += Assume(o.ready & (i.valid == (in_beat != 0)))
            with m.If(dec_count < started):
                m.d.comb += Assume(d.valid)

        # --- reference: the tag of the next beat the output must carry. It steps over the
        # samples whose decision is exit (combinationally, up to depth + 1 of them: no more can
        # be inside), and over each beat of a continuing sample as it leaves.
        exp_reg = Signal(TAG_BITS + 1)

        def decided_exit(t):
            s = t >> bb
            beat0 = (t[:bb] == 0) if bb else 1
            return beat0 & (t < in_count) & (s < dec_count) & dec_exit[s[:TAG_BITS - bb]]

        exp_tag = exp_reg
        for _ in range(depth + 1):
            exp_tag = Mux(decided_exit(exp_tag), exp_tag + bps, exp_tag)
        exp_sample = exp_tag >> bb
        exp_beat = exp_tag[:bb] if bb else 0
        exp_decided = exp_sample < dec_count
        exp_exit = dec_exit[exp_sample[:TAG_BITS - bb]]
        m.d.sync += exp_reg.eq(exp_tag + o_fire)
        with m.If(o.valid):
            m.d.comb += [
                Assert(o.payload.data[0] == exp_tag, "beat lost, duplicated or out of order"),
                Assert(exp_tag < in_count, "output beat never entered"),
                Assert(exp_decided & ~exp_exit, "beat of an undecided or exiting sample"),
                Assert((o.payload.first == (exp_beat == 0))
                       & (o.payload.last == (exp_beat == bps - 1)), "first/last flags corrupted"),
            ]
        o_held = Signal()
        o_prev = Signal.like(o.payload.as_value())
        m.d.sync += [o_held.eq(o.valid & ~o.ready), o_prev.eq(o.payload.as_value())]
        with m.If(o_held):
            m.d.comb += Assert(o.valid & (o.payload.as_value() == o_prev), "output not held")
        with m.If(drain_len == drain_cycles):
            m.d.comb += Assert(~o.valid & (exp_tag == in_count),
                               "accepted samples still inside after the drain")
        return m

    return build
