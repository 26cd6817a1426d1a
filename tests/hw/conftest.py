"""Shared fixtures for the stream-block tests: run a one-input, one-output stream component in
the Amaranth simulator (`exitgate.hw.simstream` source/sink), and lint its Verilog."""

import random
import subprocess
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

# Patterns of Amaranth's Verilog backend (yosys write_verilog), not of the designs:
# WIDTHEXPAND/WIDTHTRUNC  minimal-width constants in compares, `x == 0` as `!x`, `word_select` as
#                         a 32-bit shift (Verilog sizing makes these exact);
# PROCASSINIT             `reg r = init;` then assigned in `always @(posedge clk)`;
# UNUSEDSIGNAL            a debug wire per payload field (`i__payload.first`) and temporaries
#                         whose high bits the assignment drops;
# DECLFILENAME            all submodules (`top.mvu`, ...) are written to one file.
LINT_WAIVERS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-PROCASSINIT", "-Wno-UNUSEDSIGNAL",
                "-Wno-DECLFILENAME")


@dataclass
class StreamResult:
    data: np.ndarray    # (beats, lanes) int64
    first: np.ndarray   # (beats,) 0/1
    last: np.ndarray    # (beats,) 0/1
    cycles: np.ndarray  # (beats,) sink cycle in which each beat was accepted (1 = first tick)

    def check_markers(self, beats_per_sample: int):
        k = np.arange(len(self.first))
        assert (self.first == (k % beats_per_sample == 0)).all(), "first markers"
        assert (self.last == (k % beats_per_sample == beats_per_sample - 1)).all(), "last markers"


def _run_stream(dut, payloads, count, *, seed=0, idle=0.0, stall=0.0):
    from exitgate.hw.simstream import sink, source
    got, cycles = [], []
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source(dut.i, payloads, random.Random(seed), idle=idle))
    sim.add_testbench(sink(dut.o, count, got, random.Random(seed + 1), stall=stall,
                           cycles=cycles, timeout=200_000))
    sim.run()
    return StreamResult(data=np.array([[int(v) for v in p.data] for p in got], dtype=np.int64),
                        first=np.array([int(p.first) for p in got]),
                        last=np.array([int(p.last) for p in got]),
                        cycles=np.array(cycles))


def _lint(component, tmp_path):
    from exitgate.sim.tools import require_simulator, tool_env
    path = tmp_path / "top.v"
    path.write_text(verilog.convert(component, name="top"))
    result = subprocess.run([require_simulator("verilator"), "--lint-only", "-Wall",
                             *LINT_WAIVERS, str(path)],
                            env=tool_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def run_stream():
    """``run_stream(dut, payloads, count, seed=0, idle=0.0, stall=0.0) -> StreamResult``."""
    return _run_stream


@pytest.fixture
def lint(tmp_path):
    """``lint(component)``: its Verilog passes ``verilator --lint-only -Wall`` (+ LINT_WAIVERS)."""
    return lambda component: _lint(component, tmp_path)
