"""The observation signals behind the activity counters: ``mac_active`` of Conv2dStage and
LinearStage is high on exactly NF x SF cycles per output vector (so MAC cycles x PE x SIMD is the
analytic MAC count), whatever the idle cycles and back-pressure; ``weight_read_en`` is high on
exactly those cycles (the MVU's pipeline never stalls, so the weight ROM is read only for a
chunk; it was read on idle cycles too before the shallow MVU took credits)."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from exitgate.hw.beats import beat_payloads
from exitgate.hw.conv import Conv2dStage
from exitgate.hw.linear import LinearStage
from exitgate.hw.simstream import sink, source


def _count(dut, payloads, out_beats, idle, stall):
    counts = {"mac": 0, "wrom_en": 0, "cycles": 0}
    got = []

    async def monitor(ctx):
        async for _, _, mac, ren in ctx.tick().sample(dut.mac_active, dut.weight_read_en):
            counts["mac"] += mac
            counts["wrom_en"] += ren
            counts["cycles"] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source(dut.i, payloads, random.Random(1), idle=idle))
    sim.add_testbench(sink(dut.o, out_beats, got, random.Random(2), stall=stall))
    sim.add_testbench(monitor, background=True)
    sim.run()
    return counts, len(got)


def _macs(cout, cin_total, pixels):
    return cout * cin_total * pixels


@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.4, 0.5)])
def test_conv_mac_cycles_equal_analytic_macs(idle, stall):
    rng = np.random.default_rng(0)
    shape, cout, pe, simd, n = (2, 4, 3), 4, 2, 6, 3
    w = rng.integers(-7, 8, (cout, shape[0], 3, 3))
    dut = Conv2dStage(w, rng.integers(-50, 50, cout), shape, weight_bits=4, shift=4, pe=pe,
                      simd=simd)
    x = rng.integers(0, 256, (n, *shape))
    pixels = shape[1] * shape[2]
    counts, beats = _count(dut, beat_payloads(x, 1), n * pixels * cout // pe, idle, stall)
    assert beats == n * pixels * cout // pe
    assert counts["mac"] == n * dut.nf * dut.sf * pixels
    assert counts["mac"] * pe * simd == n * _macs(cout, shape[0] * 9, pixels)
    assert counts["wrom_en"] == counts["mac"] < counts["cycles"]


@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.3, 0.6)])
def test_linear_mac_cycles_equal_analytic_macs(idle, stall):
    rng = np.random.default_rng(1)
    shape, cout, pe, simd, n = (4, 2, 2), 6, 3, 4, 4
    w = rng.integers(-7, 8, (cout, int(np.prod(shape))))
    dut = LinearStage(w, rng.integers(-50, 50, cout), shape, weight_bits=4, shift=None, pe=pe,
                      simd=simd, in_lanes=2)
    x = rng.integers(0, 256, (n, *shape))
    counts, beats = _count(dut, beat_payloads(x, 2), n * cout, idle, stall)
    assert beats == n * cout
    assert counts["mac"] == n * dut.nf * dut.sf
    assert counts["mac"] * pe * simd == n * cout * int(np.prod(shape))
    assert counts["wrom_en"] == counts["mac"] < counts["cycles"]
