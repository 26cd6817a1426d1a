"""StreamFork, IdTagger, IdCounter, DecisionRouter against their models under random
back-pressure and idle cycles."""

import random

import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from exitgate.hw.plumbing import (SKID_LATENCY, DecisionRouter, IdCounter, IdTagger,
                                  SkidBuffer, StreamFork, fork_model, route_model, skid_model,
                                  tag_model)
from exitgate.hw.simstream import sink, source
from exitgate.hw.stream import activation_signature


def _as_dict(p, fields):
    return {f: (list(map(int, p.data)) if f == "data" else int(getattr(p, f))) for f in fields}


@pytest.mark.parametrize("seed", [0, 1])
def test_fork_copies_every_beat_to_every_output(seed):
    sig = activation_signature(2, 6)
    dut = StreamFork(sig, 3)
    rng = random.Random(seed)
    beats = [{"data": [rng.randrange(64), rng.randrange(64)], "first": k % 4 == 0,
              "last": k % 4 == 3} for k in range(40)]
    got = [[] for _ in range(3)]
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source(dut.i, beats, random.Random(seed), idle=0.3))
    for k in range(3):
        sim.add_testbench(sink(getattr(dut, f"o{k}"), 40, got[k], random.Random(seed + 10 + k),
                               stall=0.4))
    sim.run()
    want = fork_model([{"data": b["data"], "first": int(b["first"]), "last": int(b["last"])}
                       for b in beats], 3)
    for k in range(3):
        assert [_as_dict(p, ("data", "first", "last")) for p in got[k]] == want[k]


@pytest.mark.parametrize("ring", [False, True])
@pytest.mark.parametrize("seed,idle,stall", [(0, 0.3, 0.4), (1, 0.0, 0.6), (2, 0.5, 0.0)])
def test_skid_buffer_delivers_every_beat_once_in_order(seed, idle, stall, ring):
    dut = SkidBuffer(activation_signature(2, 6), ring=ring)
    rng = random.Random(seed)
    beats = [{"data": [rng.randrange(64), rng.randrange(64)], "first": k % 3 == 0,
              "last": k % 3 == 2} for k in range(60)]
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source(dut.i, beats, random.Random(seed), idle=idle))
    sim.add_testbench(sink(dut.o, 60, got, random.Random(seed + 5), stall=stall))
    sim.run()
    want = skid_model([{"data": b["data"], "first": int(b["first"]), "last": int(b["last"])}
                       for b in beats])
    assert [_as_dict(p, ("data", "first", "last")) for p in got] == want


@pytest.mark.parametrize("ring", [False, True])
def test_skid_buffer_full_throughput_latency_and_registered_ready(ring):
    """Back-to-back beats pass one a cycle after SKID_LATENCY; ready does not depend on o.ready
    within a cycle (it is a register)."""
    dut = SkidBuffer(activation_signature(1, 8), ring=ring)
    got, cycles = [], []
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source(dut.i, [{"data": [k], "first": 1, "last": 1} for k in range(20)]))
    sim.add_testbench(sink(dut.o, 20, got, cycles=cycles))
    sim.run()
    assert [int(p.data[0]) for p in got] == list(range(20))
    assert cycles == list(range(1 + SKID_LATENCY, 21 + SKID_LATENCY))

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 0)
        await ctx.tick()               # beat 0 into the output register
        await ctx.tick()               # beat 1 into the skid entry
        assert ctx.get(dut.i.ready) == 0
        ctx.set(dut.o.ready, 1)        # combinationally, ready must not follow o.ready
        assert ctx.get(dut.i.ready) == 0
        await ctx.tick()
        assert ctx.get(dut.i.ready) == 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_skid_buffer_ring_has_the_plain_handshake_cycle_for_cycle(seed):
    """The ring form (`SkidBuffer` ``ring=True``) and the plain form, driven by the same random
    ``i.valid`` / payload / ``o.ready`` on every cycle: ``i.ready``, ``o.valid`` and (while
    valid) ``o.payload`` agree on every cycle, so the compiler may use either without changing
    any stage's cycles."""
    from amaranth import Module
    from amaranth.lib import wiring

    sig = activation_signature(2, 6)

    class Pair(wiring.Component):
        def __init__(self):
            super().__init__({"i": wiring.In(sig), "o_ready": wiring.In(1),
                              "a": wiring.Out(sig), "b": wiring.Out(sig),
                              "a_i_ready": wiring.Out(1), "b_i_ready": wiring.Out(1)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.plain = plain = SkidBuffer(sig)
            m.submodules.ring = ring = SkidBuffer(sig, ring=True)
            for dut, out, i_ready in ((plain, self.a, self.a_i_ready),
                                      (ring, self.b, self.b_i_ready)):
                m.d.comb += [dut.i.valid.eq(self.i.valid), dut.i.payload.eq(self.i.payload),
                             dut.o.ready.eq(self.o_ready), i_ready.eq(dut.i.ready),
                             out.valid.eq(dut.o.valid), out.payload.eq(dut.o.payload)]
            return m

    top = Pair()
    rng = random.Random(seed)
    seen = {"beats": 0, "stalls": 0}

    async def bench(ctx):
        for _ in range(400):
            ctx.set(top.i.valid, rng.random() < 0.7)
            ctx.set(top.i.payload, {"data": [rng.randrange(64), rng.randrange(64)],
                                    "first": rng.randrange(2), "last": rng.randrange(2)})
            ready = rng.random() < 0.6
            ctx.set(top.o_ready, ready)
            a_ready, b_ready = ctx.get(top.a_i_ready), ctx.get(top.b_i_ready)
            a_valid, b_valid = ctx.get(top.a.valid), ctx.get(top.b.valid)
            assert (a_ready, a_valid) == (b_ready, b_valid)
            if a_valid:
                assert _as_dict(ctx.get(top.a.payload), ("data", "first", "last")) == \
                    _as_dict(ctx.get(top.b.payload), ("data", "first", "last"))
                seen["beats"] += ready
            seen["stalls"] += not a_ready
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen["beats"] > 100 and seen["stalls"] > 20      # both paths of the handshake ran


def test_fork_validates_n():
    with pytest.raises(ValueError, match=r"StreamFork: n must be an integer in 2..8, got 1"):
        StreamFork(activation_signature(1, 8), 1)


def test_tagger_with_counter_tags_samples_in_order():
    from amaranth import Module
    from amaranth.lib import wiring

    class Top(wiring.Component):
        def __init__(self):
            self.tag = IdTagger(activation_signature(1, 8), activation_signature(1, 8, id_width=4), 4)
            super().__init__({"i": wiring.In(activation_signature(1, 8)),
                              "o": wiring.Out(activation_signature(1, 8, id_width=4))})

        def elaborate(self, platform):
            m = Module()
            m.submodules.tag = self.tag
            m.submodules.cnt = cnt = IdCounter(4)
            wiring.connect(m, cnt.o, self.tag.ids)
            wiring.connect(m, wiring.flipped(self.i), self.tag.i)
            wiring.connect(m, self.tag.o, wiring.flipped(self.o))
            return m

    dut = Top()
    rng = random.Random(3)
    samples = [[{"data": [rng.randrange(256)], "first": int(b == 0), "last": int(b == 2)}
                for b in range(3)] for _ in range(20)]
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source(dut.i, [b for s in samples for b in s], rng, idle=0.3))
    sim.add_testbench(sink(dut.o, 60, got, random.Random(4), stall=0.3))
    sim.run()
    want = tag_model(samples, [k % 16 for k in range(20)])
    assert [_as_dict(p, ("data", "first", "last", "id")) for p in got] == want


@pytest.mark.parametrize("final", [False, True])
def test_router_sends_each_decision_where_it_belongs(final):
    layout = data.StructLayout({"id": 5, "cls": 4, "exit": 1, "confidence": 17})
    dut = DecisionRouter(layout, 5, final=final)
    rng = random.Random(5)
    decisions = [{"id": k, "cls": rng.randrange(10), "exit": rng.randrange(2),
                  "confidence": rng.randrange(1 << 17)} for k in range(30)]
    buffer, results, ids = route_model(decisions, final)
    got_b, got_r, got_i = [], [], []
    from amaranth import ClockDomain, Module
    top = Module()
    top.submodules.dut = dut
    top.domains.sync = ClockDomain()  # the final router is purely combinational
    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(source(dut.i, decisions, rng, idle=0.3))
    sim.add_testbench(sink(dut.result, len(results), got_r, random.Random(6), stall=0.4))
    if not final:
        sim.add_testbench(sink(dut.buffer, len(buffer), got_b, random.Random(7), stall=0.4))
        sim.add_testbench(sink(dut.ids, len(ids), got_i, random.Random(8), stall=0.4))
    sim.run()
    assert [_as_dict(p, ("id", "cls", "exit", "confidence")) for p in got_r] == results
    assert [{"exit": int(p.exit)} for p in got_b] == buffer
    assert [int(p) for p in got_i] == ids


def test_plumbing_lints(lint):
    lint(StreamFork(activation_signature(2, 8), 2))
    lint(DecisionRouter(data.StructLayout({"id": 5, "cls": 4, "exit": 1, "confidence": 17}), 5))
