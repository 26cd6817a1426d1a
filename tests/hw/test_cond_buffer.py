"""ConditionalBuffer: Amaranth-simulator tests against `cond_buffer_model`, decisions early and
late, random back-pressure; throughput; parameter checks; Verilator lint."""

from __future__ import annotations

import gc
import random
import warnings

import pytest
from amaranth.hdl import Fragment, UnusedElaboratable
from amaranth.sim import Simulator

from exitgate.hw.cond_buffer import ConditionalBuffer, cond_buffer_model
from exitgate.hw.simstream import sink
from exitgate.hw.stream import activation_signature


def make_samples(rng, n, bps, lanes=2, width=8):
    samples = []
    for k in range(n):
        samples.append([{"data": [rng.randrange(1 << width) for _ in range(lanes)],
                         "first": b == 0, "last": b == bps - 1, "id": k % 16}
                        for b in range(bps)])
    return samples


def run_buffer(dut, samples, exits, *, seed=0, idle=0.0, stall=0.0, dec_idle=0.0,
               late=False):
    """Drive samples and decisions; ``late``: each decision is offered only after its sample's
    last beat has been accepted. Returns (output beats as dicts, output cycles)."""
    rng = random.Random(seed)
    accepted = []  # cycle each sample's last beat was accepted
    starts = []    # cycle each sample's first beat was accepted
    state = {"cycle": 0}

    async def data_in(ctx):
        for sample in samples:
            for b, beat in enumerate(sample):
                while idle and rng.random() < idle:
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i.payload, beat)
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
                if b == 0:
                    starts.append(state["cycle"])
                if b == len(sample) - 1:
                    accepted.append(state["cycle"])
        ctx.set(dut.i.valid, 0)

    async def clock_count(ctx):
        while True:
            await ctx.tick()
            state["cycle"] += 1

    async def decisions(ctx):
        drng = random.Random(seed + 7)
        for k, ex in enumerate(exits):
            while late and len(accepted) <= k:
                ctx.set(dut.decision.valid, 0)
                await ctx.tick()
            while dec_idle and drng.random() < dec_idle:
                ctx.set(dut.decision.valid, 0)
                await ctx.tick()
            ctx.set(dut.decision.payload, {"exit": ex})
            ctx.set(dut.decision.valid, 1)
            await ctx.tick().until(dut.decision.ready)
            # The contract: a decision is taken only after its sample's first beat has entered.
            assert len(starts) > k
        ctx.set(dut.decision.valid, 0)

    expected = cond_buffer_model(samples, exits)
    got, cycles = [], []
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(clock_count)
    sim.add_testbench(data_in)
    sim.add_testbench(decisions)
    sim.add_testbench(sink(dut.o, len(expected), got, random.Random(seed + 3), stall=stall,
                           cycles=cycles, timeout=200_000))

    async def drained(ctx):  # nothing more comes out once the expected beats have
        while len(got) < len(expected) or len(accepted) < len(samples):
            await ctx.tick()
        for _ in range(3 * dut.beats_per_sample + 10):
            assert not ctx.get(dut.o.valid), "extra beat after the expected output"
            await ctx.tick()
    sim.add_testbench(drained)
    sim.run()
    return [{"data": [int(x) for x in g.data], "first": bool(g.first), "last": bool(g.last),
             "id": int(g.id)} for g in got], expected, cycles


SIG = activation_signature(2, 8, id_width=4)


@pytest.mark.parametrize("depth,bps,late,idle,stall,dec_idle,seed", [
    (1, 1, False, 0.0, 0.0, 0.0, 1),
    (1, 5, True, 0.3, 0.3, 0.5, 2),
    (2, 4, False, 0.2, 0.5, 0.8, 3),
    (3, 7, True, 0.0, 0.2, 0.2, 4),
    (4, 3, False, 0.5, 0.5, 0.0, 5),
    (4, 2, True, 0.1, 0.7, 0.9, 6),
])
@pytest.mark.parametrize("out_reg", [False, True])
def test_matches_model(depth, bps, late, idle, stall, dec_idle, seed, out_reg):
    rng = random.Random(seed)
    n = 150
    samples = make_samples(rng, n, bps)
    exits = [rng.random() < 0.5 for _ in range(n)]
    exits[:3] = [False, True, True]
    dut = ConditionalBuffer(SIG, beats_per_sample=bps, depth=depth, out_reg=out_reg)
    got, expected, _ = run_buffer(dut, samples, exits, seed=seed, idle=idle, stall=stall,
                                  dec_idle=dec_idle, late=late)
    assert got == expected


@pytest.mark.parametrize("depth,bps,columns", [
    (4, 130, [18, 18, 18, 14]),     # 520 words: 1024 x 18 block RAMs
    (2, 100, [36, 32]),             # 200 words: 512 x 36
    (8, 200, [9] * 7 + [5]),        # 1600 words: 2048 x 9
])
def test_out_reg_stores_wide_payloads_in_columns_one_block_ram_deep(depth, bps, columns):
    """With ``out_reg`` a wide payload (8 lanes of 8 bits, id and flags: 68 bits) is stored in
    columns each as deep as the buffer and no wider than the block RAM shape that holds that
    many words, so no read data goes through a mux of RAMs; the beats still match the model
    (the columns are written and read as one)."""
    sig = activation_signature(8, 8, id_width=2)
    rng = random.Random(depth + bps)
    n = 3 * depth + 2
    samples = make_samples(rng, n, bps, lanes=8)
    for s in samples:
        for beat in s:
            beat["id"] %= 4
    exits = [rng.random() < 0.4 for _ in range(n)]
    dut = ConditionalBuffer(sig, beats_per_sample=bps, depth=depth, out_reg=True)
    assert dut.columns == columns
    names = {name for _, name, _ in Fragment.get(dut, None).subfragments}
    assert {f"mem{k}" for k in range(len(columns))} <= names
    got, expected, _ = run_buffer(dut, samples, exits, seed=depth, stall=0.3, idle=0.1)
    assert got == expected


@pytest.mark.parametrize("exits", ["none", "all"])
def test_all_continue_or_all_exit(exits):
    rng = random.Random(9)
    samples = make_samples(rng, 40, 3)
    ex = [exits == "all"] * 40
    dut = ConditionalBuffer(SIG, beats_per_sample=3, depth=2)
    got, expected, _ = run_buffer(dut, samples, ex, seed=9, idle=0.2, stall=0.2)
    assert got == expected


@pytest.mark.parametrize("out_reg", [False, True])
def test_throughput_one_beat_per_cycle(out_reg):
    rng = random.Random(4)
    bps, n = 6, 60
    samples = make_samples(rng, n, bps)
    dut = ConditionalBuffer(SIG, beats_per_sample=bps, depth=2, out_reg=out_reg)
    got, expected, cycles = run_buffer(dut, samples, [False] * n)
    assert got == expected
    measured = (cycles[-1] - cycles[0]) / (len(cycles) - 1)
    assert measured == dut.initiation_interval == 1


@pytest.mark.parametrize("kwargs,exc,message", [
    (dict(signature=3), TypeError, "signature must be an amaranth.lib.stream.Signature, got 3"),
    (dict(beats_per_sample=0), ValueError,
     "beats_per_sample must be an integer in 1..1048576, got 0"),
    (dict(depth=0), ValueError, "depth must be an integer in 1..256 (samples), got 0"),
    (dict(depth=2.0), ValueError, "depth must be an integer in 1..256 (samples), got 2.0"),
])
def test_parameter_errors(kwargs, exc, message):
    args = dict(signature=SIG, beats_per_sample=4, depth=2) | kwargs
    sig = args.pop("signature")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(exc) as info:
            ConditionalBuffer(sig, **args)
        assert str(info.value) == message
        del info
        gc.collect()


def test_model_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one decision per sample: 2 samples, 1 decisions"):
        cond_buffer_model([[1], [2]], [True])


def test_verilator_lint(lint):
    lint(ConditionalBuffer(SIG, beats_per_sample=5, depth=3))


@pytest.mark.parametrize("out_reg", [False, True])
def test_cut_through_each_beat_leaves_latency_cycles_after_it_entered(out_reg):
    """Decisions known early, output never stalled, input with random gaps: every beat of a
    continuing sample, including those of a sample still arriving, is valid on ``o`` exactly
    ``latency`` cycles after it was accepted (a first beat one more), or the cycle after the
    beat before it if that is later: the buffer does not wait for a sample to complete, nor
    read a beat before it is written."""
    rng = random.Random(11)
    bps, n = 5, 12
    samples = make_samples(rng, n, bps)
    dut = ConditionalBuffer(SIG, beats_per_sample=bps, depth=4, out_reg=out_reg)
    beats = [b for s in samples for b in s]
    in_cycles, got, out_cycles = [], [], []

    async def data_in(ctx):
        cycle = 0
        for beat in beats:
            while rng.random() < 0.4:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
                cycle += 1
            ctx.set(dut.i.payload, beat)
            ctx.set(dut.i.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                cycle += 1
                if ready:
                    in_cycles.append(cycle)
                    break
        ctx.set(dut.i.valid, 0)

    async def decisions(ctx):
        for _ in range(n):
            ctx.set(dut.decision.payload, {"exit": 0})
            ctx.set(dut.decision.valid, 1)
            await ctx.tick().until(dut.decision.ready)
        ctx.set(dut.decision.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(data_in)
    sim.add_testbench(decisions)
    sim.add_testbench(sink(dut.o, len(beats), got, cycles=out_cycles, timeout=10_000))
    sim.run()
    assert [int(g.data[0]) for g in got] == [b["data"][0] for b in beats]
    # a decision is taken at the earliest the cycle after its sample's first beat (the
    # contract), so a first beat waits one cycle more for it; and one beat leaves a cycle
    expected = []
    for i, b in zip(in_cycles, beats):
        expected.append(max(i + dut.latency + int(b["first"]),
                            expected[-1] + 1 if expected else 0))
    assert out_cycles == expected
