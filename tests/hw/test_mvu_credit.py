"""The MVU's credit-based issue: its pipeline never stalls, results wait in an output FIFO (deep)
or in the output register and the spare registers behind it (shallow), and a pass's last chunk is
taken only while an entry is free for it.

What the design relies on, each checked here: with the consumer stalled, exactly
`mvu_fifo_depth` passes complete and nothing is lost or reordered when it resumes; the chunk
stream's ``ready`` never depends on the consumer's ``ready`` within a cycle; no DSP clock enable
(it is tied high); and with the consumer always ready, one pass every ``SF`` cycles (the credits
never throttle)."""

import random

import numpy as np
import pytest
from amaranth.hdl import Const, Fragment, Instance
from amaranth.sim import Simulator

from exitgate.hw.mvu import MatrixVectorUnit, accumulator_width, mvu_fifo_depth, mvu_latency
from exitgate.hw.simstream import sink, source
from exitgate.numerics import requantise

SHIFT, OUT_BITS = 5, 8


def _mvu(pe, simd, rows, n, seed=0, deep=True):
    rng = np.random.default_rng(seed)
    w = rng.integers(-8, 8, size=(rows, n))
    b = rng.integers(-300, 300, size=rows)
    acc = accumulator_width(w, b, 8, False)
    dut = MatrixVectorUnit(w, b, in_width=8, in_signed=False, weight_bits=4, pe=pe, simd=simd,
                           acc_width=acc, shift=SHIFT, out_bits=OUT_BITS, relu=True, deep=deep)
    return dut, w, b


def _chunks(dut, vectors):
    """The chunk stream of ``vectors``: each vector replayed NF times, SF chunks a pass."""
    out = []
    for x in vectors:
        for _ in range(dut.nf):
            for sf in range(dut.sf):
                out.append({"data": [int(v) for v in x[sf * dut.simd:(sf + 1) * dut.simd]],
                            "first": sf == 0, "last": sf == dut.sf - 1})
    return out


def _golden(dut, w, b, vectors):
    y = requantise(np.asarray(vectors) @ w.T + b, SHIFT, OUT_BITS, False, relu=True)
    return y.reshape(len(vectors) * dut.nf, dut.pe)


@pytest.mark.parametrize("deep", [True, False], ids=["deep", "shallow"])
@pytest.mark.parametrize("pe,simd,rows,n", [(4, 9, 8, 9), (2, 4, 6, 12), (1, 2, 3, 10)],
                         ids=["sf1", "sf3", "sf5"])
def test_stalled_consumer_fills_exactly_the_fifo(pe, simd, rows, n, deep):
    dut, w, b = _mvu(pe, simd, rows, n, deep=deep)
    depth = mvu_fifo_depth(simd, n // simd, deep)
    # chunks waiting in front of the pipeline: the deep MVU's input skid buffer holds two
    waiting = 2 if deep else 0
    vectors = np.random.default_rng(1).integers(0, 256, size=(depth + 3, n))
    chunks = _chunks(dut, vectors)
    passes = len(vectors) * dut.nf
    hold = 300                  # cycles the consumer is stalled first
    taken, got = [], []

    async def driver(ctx):
        for k, chunk in enumerate(chunks):
            ctx.set(dut.i.payload, chunk)
            ctx.set(dut.i.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                if ready:
                    taken.append(k)
                    break
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 0)
        await ctx.tick().repeat(hold)
        # during the stall: the chunk stream is held (deep: the input skid buffer is full, its
        # two chunks wait), and exactly `depth` passes' last chunks went into the pipeline
        assert not ctx.get(dut.i.ready) and ctx.get(dut.o.valid)
        issued = [k for k in taken[:len(taken) - waiting] if chunks[k]["last"]]
        assert len(issued) == depth, (len(issued), depth)
        await sink(dut.o, passes, got, random.Random(3), stall=0.3)(ctx)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(driver)
    sim.add_testbench(consumer)
    sim.run()
    data = np.array([[int(v) for v in beat.data] for beat in got])
    np.testing.assert_array_equal(data, _golden(dut, w, b, vectors))


def test_chunk_ready_does_not_follow_consumer_ready():
    """Within a cycle, flipping ``o.ready`` leaves ``i.ready`` as it was, in every state of a run
    with random stalls, deep or shallow (the shallow MVU's ``ready`` was its pipeline enable, and
    followed, before it took credits too)."""
    for deep, follows in ((True, False), (False, False)):
        dut, w, b = _mvu(2, 4, 6, 12, deep=deep)
        vectors = np.random.default_rng(2).integers(0, 256, size=(12, 12))
        flips = []

        async def probe(ctx):
            rng = random.Random(4)
            for _ in range(400):
                ready = rng.random() < 0.4
                ctx.set(dut.o.ready, not ready)
                other = ctx.get(dut.i.ready)
                ctx.set(dut.o.ready, ready)
                flips.append(other != ctx.get(dut.i.ready))
                await ctx.tick()

        sim = Simulator(dut)
        sim.add_clock(1e-6)
        sim.add_testbench(source(dut.i, _chunks(dut, vectors), random.Random(5), idle=0.1))
        sim.add_testbench(probe)
        sim.run()
        assert any(flips) == follows, deep


@pytest.mark.parametrize("deep", [True, False], ids=["deep", "shallow"])
@pytest.mark.parametrize("pe,simd,rows,n", [(8, 9, 16, 9), (2, 4, 6, 12)], ids=["sf1", "sf3"])
def test_credits_do_not_throttle_a_ready_consumer(pe, simd, rows, n, deep):
    dut, w, b = _mvu(pe, simd, rows, n, deep=deep)
    vectors = np.random.default_rng(6).integers(0, 256, size=(40, n))
    got, cycles = [], []
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source(dut.i, _chunks(dut, vectors)))
    sim.add_testbench(sink(dut.o, len(vectors) * dut.nf, got, cycles=cycles))
    sim.run()
    sf = n // simd
    assert cycles[0] == mvu_latency(simd, deep) + sf - 1 + 1
    assert np.all(np.diff(cycles) == sf)             # one pass every SF cycles
    data = np.array([[int(v) for v in beat.data] for beat in got])
    np.testing.assert_array_equal(data, _golden(dut, w, b, vectors))


def test_ecp5_dsp_clock_enables_tied_high():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    dut, _, _ = _mvu(2, 4, 6, 12)

    def walk(fragment):
        for sub, name, *_ in fragment.subfragments:
            if isinstance(sub, Instance):
                yield sub
            yield from walk(sub)
    dsps = list(walk(Fragment.get(dut, ULX3S_85F_Platform())))
    assert len(dsps) == 2 * 4
    for inst in dsps:
        ce, _ = inst.ports["CE0"]
        assert repr(ce) == repr(Const(1, 1))
