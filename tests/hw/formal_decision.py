"""Formal harness for ExitDecision: the decision rule of `exitgate.numerics`, written as a
combinational Amaranth model (no pipeline, no sequential divider: `//` and a max/argmax chain),
fed the same arbitrary inputs as the design; every result the design emits must equal the
specification's result for the logits, threshold and mode that sample saw."""

from __future__ import annotations

from amaranth.asserts import AnySeq
from amaranth.hdl import Array, Assert, Assume, Const, Module, Mux, Signal, signed

from exitgate.numerics import MODE_ALWAYS, MODE_NEVER, MODE_THRESHOLD

__all__ = ["spec_result", "decision_harness"]


def spec_result(m: Module, spec, logits, t, mode):
    """Combinational model of numerics.decide for one sample: returns (cls, exit, confidence)."""
    C = spec.classes
    zmax = logits[0]
    for z in logits[1:]:
        zmax = Mux(z > zmax, z, zmax)
    cls = Const(C - 1)
    for j in reversed(range(C)):  # lowest index attaining the max
        cls = Mux(logits[j] == zmax, j, cls)
    lut = Array(Const(v, spec.exp_bits + 1) for v in spec.lut)
    s = 0
    for z in logits:
        d = Signal(signed(len(z) + 2))
        m.d.comb += d.eq(zmax - z)
        sh = spec.index_shift
        k = (d + (1 << (sh - 1))) >> sh if sh > 0 else d << -sh
        k = Mux(k > spec.lut_size - 1, spec.lut_size - 1, k)
        s = s + lut[k]
    total = Signal(spec.sum_bits + 1)
    m.d.comb += total.eq(s)
    full = 1 << (spec.exp_bits + spec.threshold_bits)
    exit_ = Mux(mode == MODE_THRESHOLD, t * total <= full,
                Mux(mode == MODE_NEVER, 0, Mux(mode == MODE_ALWAYS, 1, 0)))
    conf = Const(full, spec.exp_bits + spec.threshold_bits + 1) // total
    return cls, exit_, conf


def decision_harness(dut, *, input_always_valid: bool = False, queue_depth: int = 4):
    """Returns a builder for `formal_tools.run_sby`: the DUT, arbitrary inputs under the stream
    protocol (``input_always_valid``: logits back to back, to reach more samples in the same
    bound), the specification's expected-result queue and the checks."""
    spec = dut.spec
    C, W, B = spec.classes, dut.logit_width, spec.threshold_bits

    def build():
        m = Module()
        m.submodules.dut = dut
        i, o = dut.i, dut.o
        # Arbitrary inputs every cycle.
        for sig in (i.valid, i.payload.as_value(), o.ready, dut.threshold, dut.threshold_we,
                    dut.mode, dut.mode_we):
            m.d.comb += sig.eq(AnySeq(len(sig)))
        if input_always_valid:
            m.d.comb += Assume(i.valid)
        # Input protocol: a beat offered and not taken is offered again, unchanged.
        held = Signal()
        held_payload = Signal.like(i.payload.as_value())
        m.d.sync += [held.eq(i.valid & ~i.ready), held_payload.eq(i.payload.as_value())]
        with m.If(held):
            m.d.comb += Assume(i.valid & (i.payload.as_value() == held_payload))

        # Specification of the registers: a write applies to samples whose first logit is
        # accepted on a later cycle; mode 3 is ignored.
        t_reg = Signal(B + 1, init=dut.threshold_init)
        mode_reg = Signal(2, init=dut.mode_init)
        with m.If(dut.threshold_we):
            m.d.sync += t_reg.eq(dut.threshold)
        with m.If(dut.mode_we & (dut.mode != 3)):
            m.d.sync += mode_reg.eq(dut.mode)

        # Record each sample's logits as they are accepted.
        fire = i.valid & i.ready
        cnt = Signal(range(C))
        z = [Signal(signed(W), name=f"rec_{j}") for j in range(C - 1)]
        sid, st, smode = Signal(dut.id_width), Signal(B + 1), Signal(2)
        with m.If(fire):
            m.d.sync += cnt.eq(Mux(cnt == C - 1, 0, cnt + 1))
            for j in range(C - 1):
                with m.If(cnt == j):
                    m.d.sync += z[j].eq(i.payload.data[0])
            with m.If(cnt == 0):
                m.d.sync += [sid.eq(i.payload.id), st.eq(t_reg), smode.eq(mode_reg)]
        done = fire & (cnt == C - 1)
        cls, ex, conf = spec_result(m, spec, z + [i.payload.data[0]], st, smode)

        # Queue of expected results, in sample order.
        width = len(o.payload.as_value())
        queue = Array(Signal(width, name=f"exp_{n}") for n in range(queue_depth))
        head = Signal(range(queue_depth))
        tail = Signal(range(queue_depth))
        count = Signal(range(queue_depth + 1))
        expected = Signal.like(o.payload)
        m.d.comb += [expected.id.eq(sid), expected.cls.eq(cls), expected.exit.eq(ex),
                     expected.confidence.eq(conf)]
        pop = o.valid & o.ready
        with m.If(done):
            m.d.sync += [queue[tail].eq(expected.as_value()),
                         tail.eq(Mux(tail == queue_depth - 1, 0, tail + 1))]
        with m.If(pop):
            m.d.sync += head.eq(Mux(head == queue_depth - 1, 0, head + 1))
        m.d.sync += count.eq(count + done - pop)

        # Checks.
        m.d.comb += Assert(~done | (count < queue_depth) | pop, "more results in flight than modelled")
        with m.If(o.valid):
            m.d.comb += Assert(count > 0, "result without a sample")
            m.d.comb += Assert(o.payload.as_value() == queue[head], "result differs from the spec")
        o_held = Signal()
        o_prev = Signal.like(o.payload.as_value())
        m.d.sync += [o_held.eq(o.valid & ~o.ready), o_prev.eq(o.payload.as_value())]
        with m.If(o_held):
            m.d.comb += Assert(o.valid & (o.payload.as_value() == o_prev), "output not held")
        return m

    return build
