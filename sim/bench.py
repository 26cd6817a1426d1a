"""cocotb bench for a generated accelerator (run inside the simulator by `exitgate.sim.system`).

The Python side writes a JSON file named by ``EXITGATE_SIM_JSON``:

    beats      packed ``pixels__payload`` words, every sample's pixels back to back
               (data | first << bits | last << bits + 1)
    firsts     number of beats per sample (a sample's first beat is every firsts-th)
    results    number of results to wait for
    ctrl       packed ``ctrl`` words written (one cycle each, ``we`` set) after reset
    taps       names of the observation ports to monitor (``logits0``, ...)
    activity   names of the activity counter ports (``activity__s0__mac``, ...), read once, one
               cycle after the last result (so the last handshakes are counted)
    idle, stall, burst, burst_len, seed
               back-pressure: probability of an idle input cycle between beats, of
               ``results__ready`` low on a cycle, and of a long stall (``results__ready`` low for
               1..burst_len cycles) starting on a cycle
    timeout    cycles without progress before the bench gives up
    out        where to write what it saw

The bench knows nothing about payload layouts: it moves packed integers and records, per cycle
number, which beats and results moved; `exitgate.sim.system` unpacks and scores them.

Timing: one loop iteration per clock cycle in which something can move. Inputs change on the
falling edge; after ReadOnly the settled valid/ready values say what moves at the next rising edge
(cycle ``n`` = the n-th rising edge after the ctrl writes, from the simulation time). When nothing
can move (the presented pixel is not ready, or all pixels are in, and no result or tapped logit is
valid) the loop sleeps until ``pixels__ready`` or one of those ``valid`` signals rises, instead of
polling every cycle. Signals are read and written through the raw GPI handles (ints, no
LogicArray), the fastest path in cocotb 2.
"""

from __future__ import annotations

import json
import os
import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, First, ReadOnly, RisingEdge, Timer

_DEPOSIT = 0


def _reader(handle):
    """A zero-argument function returning the handle's value as a non-negative int
    (X/Z read as 0)."""
    raw, width = handle._handle, len(handle)
    if width <= 32:
        get, mask = raw.get_signal_val_long, (1 << width) - 1
        return lambda: get() & mask

    def read():
        s = raw.get_signal_val_binstr()
        try:
            return int(s, 2)
        except ValueError:
            return int(s.translate(str.maketrans("xXzZuUwW-", "000000000")), 2)
    return read


def _writer(handle):
    """A one-argument function depositing a non-negative int into the handle."""
    raw, width = handle._handle, len(handle)
    if width <= 32:
        put = raw.set_signal_val_int
        return lambda v: put(_DEPOSIT, v)
    put = raw.set_signal_val_binstr
    return lambda v: put(_DEPOSIT, format(v, f"0{width}b"))


class SystemBench:
    """Clock, reset, ctrl writes, pixel driver with idle cycles, result monitor with
    back-pressure, logit taps; all in one per-cycle loop."""

    def __init__(self, dut, cfg):
        self.dut, self.cfg = dut, cfg
        self.rng = random.Random(cfg.get("seed", 0))

    async def reset(self):
        dut, fe = self.dut, FallingEdge(self.dut.clk)
        dut.pixels__valid.value = 0
        dut.pixels__payload.value = 0
        dut.results__ready.value = 0
        dut.ctrl.value = 0
        dut.rst.value = 1
        for _ in range(3):
            await fe
        dut.rst.value = 0
        for word in self.cfg["ctrl"]:
            await fe
            dut.ctrl.value = word
        await fe
        dut.ctrl.value = 0

    async def run(self):
        dut, cfg = self.dut, self.cfg
        fe, ro = FallingEdge(dut.clk), ReadOnly()
        beats, per_sample = cfg["beats"], cfg["firsts"]
        nbeats, want, timeout = len(beats), cfg["results"], cfg["timeout"]
        idle, stall, rnd = cfg["idle"], cfg["stall"], self.rng.random
        burst, burst_len, stall_until = cfg.get("burst", 0.0), cfg.get("burst_len", 1), 0
        put_px, put_valid = _writer(dut.pixels__payload), _writer(dut.pixels__valid)
        put_ready = _writer(dut.results__ready)
        px_ready, res_valid = _reader(dut.pixels__ready), _reader(dut.results__valid)
        res_payload = _reader(dut.results__payload)
        tap_ports = [(getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__ready"),
                      getattr(dut, f"{name}__payload")) for name in cfg["taps"]]
        taps = [(k, _reader(v), _reader(r), _reader(p)) for k, (v, r, p) in enumerate(tap_ports)]
        wake_px = RisingEdge(dut.pixels__ready)
        wake_other = [RisingEdge(dut.results__valid)] + [RisingEdge(v) for v, _, _ in tap_ports]
        tap_beats = [[] for _ in taps]
        firsts, results, bursts = [], [], []
        idx, presented, valid_now, ready_now = 0, False, 0, 1
        put_ready(1)
        await fe
        t1 = get_sim_time()
        await fe
        t0 = get_sim_time()  # the falling edge before cycle 1
        period = t0 - t1
        last_progress, skipped, cycle = 0, 0, 0
        w0 = time.perf_counter()
        while len(results) < want:
            await fe
            cycle = (get_sim_time() - t0) // period
            if not presented:  # a presented beat is held until accepted
                if idx < nbeats and not (idle and rnd() < idle):
                    put_px(beats[idx])
                    presented = True
                    if not valid_now:
                        put_valid(1)
                        valid_now = 1
                elif valid_now:
                    put_valid(0)
                    valid_now = 0
            if stall or burst:
                if burst and cycle >= stall_until and rnd() < burst:
                    stall_until = cycle + 1 + int(rnd() * burst_len)
                    bursts.append((cycle, stall_until - cycle))
                r = 0 if cycle < stall_until or (stall and rnd() < stall) else 1
                if r != ready_now:
                    put_ready(r)
                    ready_now = r
            await ro
            moved = False
            if presented and px_ready():
                if idx % per_sample == 0:
                    firsts.append(cycle)
                idx += 1
                moved = True
                presented = False
            rv = res_valid()
            if rv and ready_now:
                results.append((cycle, res_payload()))
                moved = True
            busy = rv
            for (k, tv, tr, tp) in taps:
                if tv():
                    busy = True
                    if tr():
                        tap_beats[k].append((cycle, tp()))
            if moved:
                last_progress = cycle
            elif cycle - last_progress > timeout:
                dut._log.error("no progress for %d cycles: %d of %d beats sent, %d of %d results",
                               timeout, idx, nbeats, len(results), want)
                break
            elif not busy and (presented or idx == nbeats):
                # nothing can move until the input becomes ready or an output becomes valid:
                # sleep until one of those edges instead of polling every cycle
                wake = wake_other + [wake_px] if presented else wake_other
                await First(*wake, Timer(timeout * period, "step"))
                skipped += 1
        wall = time.perf_counter() - w0
        activity = {}
        if cfg.get("activity"):
            await RisingEdge(dut.clk)
            await ro
            activity = {name: _reader(getattr(dut, name))() for name in cfg["activity"]}
        return {"firsts": firsts, "results": results, "taps": tap_beats, "cycles": cycle,
                "beats_sent": idx, "wall_s": wall, "sleeps": skipped,
                "stalls": bursts, "activity": activity}


@cocotb.test()
async def system_matches_reference(dut):
    """Stream every sample, collect every result; the scoring happens on the Python side."""
    with open(os.environ["EXITGATE_SIM_JSON"]) as f:
        cfg = json.load(f)
    Clock(dut.clk, 10, unit="ns").start()
    bench = SystemBench(dut, cfg)
    await bench.reset()
    seen = await bench.run()
    with open(cfg["out"], "w") as f:
        json.dump(seen, f)
    dut._log.info("%d results in %d cycles (%.2f s, %.0f cycles/s)", len(seen["results"]),
                  seen["cycles"], seen["wall_s"], seen["cycles"] / max(seen["wall_s"], 1e-9))
