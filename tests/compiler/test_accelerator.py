"""The generated accelerator, end to end in the Amaranth simulator: real digits samples in,
every result equal to the integer reference (class, exit, confidence), under back-pressure,
with a runtime threshold/mode write."""

import random

import pytest
from amaranth.sim import Simulator

from exitgate.compiler.codegen import Accelerator, decision_unit, logit_ram
from exitgate.compiler.graph import Fold, lower
from exitgate.compiler.perf import path_latency
from exitgate.numerics import MODE_NEVER
from exitgate.quant.ir import load_ir
from exitgate.sim.scoreboard import Scoreboard, expected_results

FOLDS = {"s0": Fold(4, 9), "s2": Fold(2, 16), "s3": Fold(4, 16), "s5": Fold(2, 16)}  # out_lanes 1


def _simulate(acc, x, writes=(), idle=0.0, stall=0.0, seed=0):
    """Drive x's pixels; `writes` = [(before_sample, exit, t, mode)]: the write is made once
    every earlier sample has produced its result (a write applies to the samples whose first
    logit reaches the decision unit after it); returns result dicts."""
    rng = random.Random(seed)
    got = []
    sim = Simulator(acc)
    sim.add_clock(1e-6)

    async def source(ctx):
        for i in range(len(x)):
            for (before, k, t, mode) in writes:
                if before == i:
                    ctx.set(acc.pixels.valid, 0)
                    while len(got) < i:
                        await ctx.tick()
                    ctx.set(acc.ctrl, {"we": 1, "exit": k, "threshold": t, "mode": mode})
                    await ctx.tick()
                    ctx.set(acc.ctrl, {"we": 0, "exit": 0, "threshold": 0, "mode": 0})
            px = x[i, 0].reshape(-1)
            for j, p in enumerate(px):
                while idle and rng.random() < idle:
                    ctx.set(acc.pixels.valid, 0)
                    await ctx.tick()
                ctx.set(acc.pixels.payload, {"data": [int(p)], "first": j == 0,
                                             "last": j == len(px) - 1})
                ctx.set(acc.pixels.valid, 1)
                await ctx.tick().until(acc.pixels.ready)
        ctx.set(acc.pixels.valid, 0)

    async def sink(ctx):
        cycle = 0
        while len(got) < len(x):
            ready = not (stall and rng.random() < stall)
            ctx.set(acc.results.ready, ready)
            _, _, valid, p = await ctx.tick().sample(acc.results.valid, acc.results.payload)
            cycle += 1
            if valid and ready:
                got.append({"id": int(p.id), "exit": int(p.exit), "cls": int(p.cls),
                            "confidence": int(p.confidence), "cycle": cycle})
            assert cycle < 400_000, f"only {len(got)} of {len(x)} results"

    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return got


@pytest.fixture(scope="module")
def design(trained_run):
    out, _ = trained_run
    ir, weights = load_ir(out)
    return ir, weights, lower(ir, weights).with_folds(FOLDS)


@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.3, 0.5)])
def test_accelerator_matches_reference(design, digits, idle, stall):
    ir, weights, graph = design
    T = 0.9
    acc = Accelerator(graph, weights, [ir.exits[0].decision.threshold_register(T)],
                      buffer_depth=2, id_width=4)
    x = digits.x_test[:18]      # the 4-bit sample ids wrap after 16
    expected = expected_results(ir, weights, x, [T])
    assert {e["exit"] for e in expected} == {0, 1}, "both exits must be exercised"
    sb = Scoreboard(expected, id_width=4)
    for r in _simulate(acc, x, idle=idle, stall=stall):
        sb.add(r)
    assert sb.finish() == []


def test_runtime_mode_write_sends_everything_to_the_final_exit(design, digits):
    ir, weights, graph = design
    spec = ir.exits[0].decision
    acc = Accelerator(graph, weights, [spec.threshold_register(0.5)], buffer_depth=2)
    x = digits.x_test[:8]
    results = _simulate(acc, x, writes=[(4, 0, spec.threshold_register(0.5), MODE_NEVER)])
    expected = expected_results(ir, weights, x, [0.5])
    late = expected_results(ir, weights, x, [0.5], modes=[MODE_NEVER, 0])
    sb = Scoreboard(expected[:4] + late[4:], id_width=8)
    for r in results:
        sb.add(r)
    assert sb.finish() == []
    assert all(r["exit"] == 1 for r in results if r["id"] >= 4)


def test_area_folding_uses_frame_convs_and_spram_decisions(trained_run, digits):
    """At SIMD 1 (small boards) both convs are `FrameConv2dStage`s and, with logits produced
    slower than one per two cycles, both decision units keep a single logit store, here in
    SPRAM ("ram") as on the iCE40UP5K; no skid buffers but the decision units': the whole
    accelerator still matches the integer reference sample by sample, under back-pressure,
    and its unloaded latency is the model's."""
    from exitgate.hw.conv_frame import FrameConv2dStage
    out, _ = trained_run
    ir, weights = load_ir(out)
    graph = lower(ir, weights).with_folds(
        {"s0": Fold(16, 1), "s2": Fold(1, 16), "s3": Fold(16, 1), "s5": Fold(1, 8)}
    ).with_skids(False).with_spram(4).with_decision_skids(True)   # as compile builds it
    # for the iCEBreaker (skid buffers do not fit, those after the decision units do)
    T = 0.9
    acc = Accelerator(graph, weights, [ir.exits[0].decision.threshold_register(T)],
                      buffer_depth=2, id_width=4)
    assert isinstance(acc.blocks["s0"], FrameConv2dStage)
    assert isinstance(acc.blocks["s3"], FrameConv2dStage)
    x = digits.x_test[:10]
    expected = expected_results(ir, weights, x, [T])
    assert {e["exit"] for e in expected} == {0, 1}, "both exits must be exercised"
    sb = Scoreboard(expected, id_width=4)
    results = _simulate(acc, x, idle=0.2, stall=0.3)
    for r in results:
        sb.add(r)
    assert sb.finish() == []
    # an idle pipeline: the first sample's latency is what the performance model predicts
    (first,) = _simulate(acc, x[:1])
    predicted = path_latency(graph, weights, first["exit"])
    assert abs(predicted / first["cycle"] - 1) < 0.05, (predicted, first)
    for d in (s for s in graph.stages if s.kind == "decision"):   # what Accelerator builds
        assert logit_ram(graph, [acc.blocks[s.src].acc_width for s in graph.stages
                                 if s.kind == "decision"])
        unit = decision_unit(d, acc.blocks[d.src], id_width=4, threshold=1, mode=0, ram=True)
        unit._MustUse__silence = True
        assert unit.store == "ram"
