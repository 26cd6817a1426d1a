"""ExitMerge: Amaranth-simulator tests against `merge_model` (per-input order, nothing lost or
duplicated), starvation bound of the round-robin arbiter, throughput, parameters, lint."""

from __future__ import annotations

import gc
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from exitgate.hw.merge import ExitMerge, merge_model
from exitgate.hw.simstream import sink, source


def run_merge(dut, inputs, *, seed=0, idle=0.0, stall=0.0):
    rng = random.Random(seed)
    got, cycles = [], []
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for k, results in enumerate(inputs):
        sim.add_testbench(source(dut.i[k], results, random.Random(rng.random()), idle=idle))
    total = sum(len(r) for r in inputs)
    sim.add_testbench(sink(dut.o, total, got, random.Random(seed + 1), stall=stall, cycles=cycles))
    sim.run()
    out = [{"id": int(g.id), "exit_index": int(g.exit_index), "cls": int(g.cls),
            "confidence": int(g.confidence)} for g in got]
    return out, cycles


def by_input(out, n):
    return {k: [r for r in out if r["exit_index"] == k] for k in range(n)}


def random_results(rng, n, count):
    return [[{"id": rng.randrange(256), "cls": rng.randrange(16), "confidence": rng.randrange(512)}
             for _ in range(rng.randrange(count // 2, count))] for _ in range(n)]


@pytest.mark.parametrize("n,idle,stall,seed", [(2, 0.0, 0.0, 1), (3, 0.5, 0.3, 2),
                                               (4, 0.2, 0.6, 3), (5, 0.8, 0.1, 4)])
def test_matches_model(n, idle, stall, seed):
    rng = random.Random(seed)
    inputs = random_results(rng, n, 200)
    dut = ExitMerge(n, id_width=8, cls_width=4, confidence_width=9)
    out, _ = run_merge(dut, inputs, seed=seed, idle=idle, stall=stall)
    assert by_input(out, n) == merge_model(inputs)


def test_round_robin_no_starvation():
    """All inputs always valid: between two grants of one input, every other input gets exactly
    one (so no input waits more than n - 1 grants), under random back-pressure."""
    n = 4
    inputs = [[{"id": k, "cls": j % 16, "confidence": j} for j in range(100)] for k in range(n)]
    dut = ExitMerge(n, id_width=8, cls_width=4, confidence_width=9)
    out, cycles = run_merge(dut, inputs, seed=5, stall=0.4)
    assert by_input(out, n) == merge_model(inputs)
    order = [r["exit_index"] for r in out[: 4 * 90]]
    assert all(order[i] == order[i + n] for i in range(len(order) - n))
    assert all(sorted(order[i:i + n]) == list(range(n)) for i in range(len(order) - n))


def test_throughput_one_per_cycle():
    n = 3
    inputs = [[{"id": j, "cls": 0, "confidence": 0} for j in range(50)] for _ in range(n)]
    dut = ExitMerge(n, id_width=8, cls_width=4, confidence_width=9)
    out, cycles = run_merge(dut, inputs)
    assert (cycles[-1] - cycles[0]) / (len(cycles) - 1) == dut.initiation_interval == 1


def test_ready_is_the_registered_grant():
    """``i[k].ready`` does not follow, on the same cycle, another input's ``valid`` (Fmax: no
    ready chain through the arbiter): it is the registered grant (and the output register being
    free). A result offered is granted on the next edge, taken on the cycle after, and is on
    ``o`` after that edge (`latency` 1 from the acceptance)."""
    dut = ExitMerge(3, id_width=8, cls_width=4, confidence_width=9)
    seen = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for other_valid in (0, 1, 0):
            ctx.set(dut.i[1].valid, other_valid)
            seen.append(ctx.get(dut.i[0].ready))     # nothing granted yet
        ctx.set(dut.i[0].valid, 1)
        ctx.set(dut.i[0].payload, {"id": 7, "cls": 3, "confidence": 100})
        seen.append(ctx.get(dut.i[0].ready))         # not before the grant's edge
        await ctx.tick()                             # granted
        for other_valid in (1, 0):
            ctx.set(dut.i[1].valid, other_valid)
            seen.append(ctx.get(dut.i[0].ready))     # granted, whatever input 1 does
        await ctx.tick()                             # taken
        ctx.set(dut.i[0].valid, 0)
        assert ctx.get(dut.o.valid) == 1 and ctx.get(dut.o.payload.id) == 7
        assert ctx.get(dut.o.payload.exit_index) == 0
        seen.append(ctx.get(dut.i[0].ready))         # not granted again: nothing offered

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [0, 0, 0, 0, 1, 1, 0]


@pytest.mark.parametrize("kwargs,message", [
    (dict(n=1), "n must be an integer in 2..16, got 1"),
    (dict(id_width=0), "id_width must be an integer in 1..32, got 0"),
    (dict(cls_width=33), "cls_width must be an integer in 1..32, got 33"),
    (dict(confidence_width="8"), "confidence_width must be an integer in 1..32, got '8'"),
])
def test_parameter_errors(kwargs, message):
    args = dict(n=2, id_width=8, cls_width=4, confidence_width=9) | kwargs
    n = args.pop("n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError) as info:
            ExitMerge(n, **args)
        assert str(info.value) == message
        del info
        gc.collect()


def test_verilator_lint(lint):
    lint(ExitMerge(3, id_width=8, cls_width=4, confidence_width=9))
