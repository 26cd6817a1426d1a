"""cocotb bench for one `Conv2dStage` on Verilator (run by
test_conv.py::test_conv_cocotb_verilator).

The pytest side writes a JSON file (named by ``EXITGATE_BENCH_JSON``) with the packed input beats,
the golden model's packed output beats, the designed initiation interval and the back-pressure
settings. Ports (Amaranth naming): clk, rst, i__payload/i__valid/i__ready, o__payload/o__valid/
o__ready. Signals are driven and sampled at the falling edge (settled with ReadOnly), so a beat
moves at the next rising edge iff valid and ready were both high.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly


class ConvBench:
    """Clock, reset, driver (random idle cycles), monitor (random back-pressure), in-order
    scoreboard against the golden outputs."""

    def __init__(self, dut, data, *, idle, stall, seed):
        self.dut, self.data = dut, data
        self.idle, self.stall = idle, stall
        self.rng = random.Random(seed)
        self.got, self.got_cycles = [], []
        self.cycle = 0

    async def reset(self):
        dut = self.dut
        dut.i__valid.value = 0
        dut.i__payload.value = 0
        dut.o__ready.value = 0
        dut.rst.value = 1
        for _ in range(3):
            await FallingEdge(dut.clk)
        dut.rst.value = 0

    async def drive(self):
        dut, inputs = self.dut, self.data["inputs"]
        k, holding = 0, False
        while k < len(inputs):
            await FallingEdge(dut.clk)
            if not holding and self.idle and self.rng.random() < self.idle:
                dut.i__valid.value = 0  # idle only between beats: a presented beat is held
                continue
            dut.i__payload.value = inputs[k]
            dut.i__valid.value = 1
            await ReadOnly()
            holding = not int(dut.i__ready.value)
            k += not holding
        await FallingEdge(dut.clk)
        dut.i__valid.value = 0

    async def monitor(self, count):
        dut = self.dut
        while len(self.got) < count:
            await FallingEdge(dut.clk)
            ready = not (self.stall and self.rng.random() < self.stall)
            dut.o__ready.value = int(ready)
            await ReadOnly()
            self.cycle += 1
            if ready and int(dut.o__valid.value):
                self.got.append(int(dut.o__payload.value))
                self.got_cycles.append(self.cycle)

    def check(self):
        expected = self.data["expected"]
        assert len(self.got) == len(expected)
        for n, (got, exp) in enumerate(zip(self.got, expected)):
            assert got == exp, f"beat {n}: got {got:#x}, expected {exp:#x}"


def _load():
    with open(os.environ["EXITGATE_BENCH_JSON"]) as f:
        return json.load(f)


async def _run(dut, idle, stall, seed):
    data = _load()
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    bench = ConvBench(dut, data, idle=idle, stall=stall, seed=seed)
    await bench.reset()
    cocotb.start_soon(bench.drive())
    await bench.monitor(len(data["expected"]))
    bench.check()
    return bench, data


@cocotb.test()
async def conv_matches_golden_under_backpressure(dut):
    data = _load()
    await _run(dut, data["idle"], data["stall"], data["seed"])


@cocotb.test()
async def conv_throughput_matches_design(dut):
    bench, data = await _run(dut, 0.0, 0.0, 0)
    samples = len(data["expected"]) // data["beats_per_sample"]
    firsts = bench.got_cycles[::data["beats_per_sample"]]
    measured = (firsts[-1] - firsts[1]) / ((samples - 2) * data["pixels_per_sample"])
    designed = data["initiation_interval"]
    assert abs(measured / designed - 1) < 0.03, f"measured {measured}, designed {designed}"
