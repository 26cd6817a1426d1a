import numpy as np
import pytest

from exitgate.compiler.codegen import analysis_block, build_block, build_blocks
from exitgate.compiler.dse import explore, fold_candidates
from exitgate.compiler.graph import Fold, baseline, lower
from exitgate.compiler.perf import (analytic_throughput, level_times, stage_timings,
                                    stream_throughput)
from exitgate.quant.ir import load_ir


@pytest.fixture(scope="module")
def graph(trained_run):
    ir, weights = load_ir(trained_run[0])
    return lower(ir, weights), weights


def _mults(g):
    return {"dsp": sum(s.fold.pe * s.fold.simd for s in g.stages if s.kind in ("conv", "linear"))}


def test_timings_come_from_the_blocks(graph):
    g, w = graph
    g = g.with_folds({"s0": Fold(4, 9, 2), "s2": Fold(1, 2, 1)})
    blocks, _ = build_blocks(g, w, analysis=True)
    t = {x.name: x for x in stage_timings(g, w)}
    assert t["s0"].cycles == blocks["s0"].cycles_per_sample
    assert t["s0"].latency == blocks["s0"].latency
    assert t["cbuf0"].level == 1 and t["cbuf0"].cycles == 16 * 4 * 4 // 2 + 1  # beats + 1


def test_analysis_blocks_are_shared_and_match_fresh_ones(graph):
    """The folding search's block memo (`analysis_block`): one block per stage, folding and
    input format, with a fresh block's figures; other weight arrays or another folding get
    their own block, and a folding the block refuses is refused on every ask."""
    g, w = graph
    st = g.with_folds({"s0": Fold(4, 9, 4)}).stage("s0")
    a = analysis_block(st, w, 1, g.input_bits, False)
    assert analysis_block(st, w, 1, g.input_bits, False) is a
    fresh = build_block(st, w, 1, g.input_bits, False)
    fresh._MustUse__silence = True
    assert (a.cycles_per_sample, a.latency, a.acc_width) == \
        (fresh.cycles_per_sample, fresh.latency, fresh.acc_width)
    other = g.with_folds({"s0": Fold(8, 9, 8)}).stage("s0")
    assert analysis_block(other, w, 1, g.input_bits, False).cycles_per_sample \
        == a.cycles_per_sample / 2
    w2 = dict(w)
    w2[st.params["weight"]] = w[st.params["weight"]].copy()
    b = analysis_block(st, w2, 1, g.input_bits, False)
    assert b is not a
    w2[st.params["weight"]] = w[st.params["weight"]].copy()    # the same dict, another array
    assert analysis_block(st, w2, 1, g.input_bits, False) is not b
    bad = g.with_folds({"s0": Fold(3, 9, 3)}).stage("s0")       # 3 does not divide 16 channels
    for _ in range(2):
        with pytest.raises(ValueError):
            analysis_block(bad, w, 1, g.input_bits, False)


def test_stream_model_limits():
    times = [100, 1000]
    assert stream_throughput([100], np.zeros(500, int), 4) == pytest.approx(1 / 100, rel=0.01)
    rng = np.random.default_rng(0)
    seq = (rng.random(4000) < 0.05).astype(int)       # 5% continue: analytic bound 1/100
    bound = analytic_throughput(times, [1.0, 0.05])
    shallow, deep = (stream_throughput(times, seq, d) for d in (1, 64))
    assert shallow < deep <= bound * 1.01
    assert deep > 0.9 * bound


def test_exploration_respects_budget_and_beats_smallest_folding(graph):
    g, w = graph
    rng = np.random.default_rng(1)
    seq = (rng.random(300) < 0.1).astype(int)
    ee = explore(g, w, seq, {"dsp": 24}, _mults, cap=1.0)
    assert _mults(ee.graph)["dsp"] <= 24 and ee.steps > 0
    smallest = stream_throughput(level_times(stage_timings(g, w), 2), seq, 4)
    assert ee.samples_per_cycle > 2 * smallest
    bl = explore(baseline(g), w, np.zeros(300, int), {"dsp": 24}, _mults, cap=1.0)
    assert bl.graph.exits == 1 and _mults(bl.graph)["dsp"] <= 24
    assert ee.samples_per_cycle > bl.samples_per_cycle   # exits pay off at equal budget
    for s in ee.graph.stages:
        if s.kind in ("conv", "linear"):
            assert s.fold in fold_candidates(s) or s.fold == Fold(1, 1, 1)


def test_exploration_refuses_what_cannot_fit(graph):
    g, w = graph
    with pytest.raises(ValueError, match=r"smallest folding needs 4 DSP, more than 100% of the "
                                         r"board's 3"):
        explore(g, w, np.zeros(10, int), {"dsp": 3}, _mults, cap=1.0)


def test_exploration_caps_each_resource(graph):
    g, w = graph
    caps = {"lut": 0.85, "ff": 0.85, "dsp": 0.5, "bram": 1.0}
    ee = explore(g, w, np.zeros(50, int), {"dsp": 24}, _mults, cap=caps)
    assert 4 < _mults(ee.graph)["dsp"] <= 12 and ee.limited_by == "budget: DSP"
    with pytest.raises(ValueError, match=r"smallest folding needs 4 DSP, more than 50% of the "
                                         r"board's 6"):
        explore(g, w, np.zeros(10, int), {"dsp": 6}, _mults, cap=caps)


def _dsp_or_lut(g):
    """A DSP a product, 30 LUTs a product of a soft row (`Fold.soft` rows of each stage)."""
    f = [s.fold for s in g.stages if s.kind in ("conv", "linear")]
    return {"dsp": sum((x.pe - x.soft) * x.simd for x in f),
            "lut": 30 * sum(x.soft * x.simd for x in f)}


def test_exploration_moves_products_into_logic_when_the_dsps_run_out(graph):
    g, w = graph
    rng = np.random.default_rng(1)
    seq = (rng.random(300) < 0.1).astype(int)
    budget = {"dsp": 8, "lut": 30 * 40}
    with_soft = explore(g, w, seq, budget, _dsp_or_lut, cap=1.0, soft=True)
    dsp_only = explore(g, w, seq, budget, _dsp_or_lut, cap=1.0)      # the default
    soft = [s.name for s in with_soft.graph.stages if s.fold.soft]
    assert soft and not any(s.fold.soft for s in dsp_only.graph.stages)
    res = _dsp_or_lut(with_soft.graph)
    assert res["dsp"] <= 8 and res["lut"] <= 30 * 40
    # rows go into logic only as far as the DSPs fall short: the DSPs stay (nearly) all used
    assert res["dsp"] > 8 - max(with_soft.graph.stage(n).fold.simd for n in soft)
    assert with_soft.samples_per_cycle > 1.2 * dsp_only.samples_per_cycle
    # the soft folding is a folding the block takes, with its products in logic
    blocks, _ = build_blocks(with_soft.graph, w, analysis=True)
    assert all(blocks[name].soft for name in soft)
    # no LUTs to spare: DSPs only, as before
    tight = explore(g, w, seq, {"dsp": 8, "lut": 0}, _dsp_or_lut, cap=1.0, soft=True)
    assert not any(s.fold.soft for s in tight.graph.stages)
    assert tight.samples_per_cycle == pytest.approx(dsp_only.samples_per_cycle)


def test_exploration_gives_back_products_that_buy_no_speed(graph):
    g, w = graph
    rng = np.random.default_rng(1)
    seq = (rng.random(300) < 0.1).astype(int)
    trimmed_any = False
    # (at 12 DSPs the greedy search leaves the baseline 2 products that buy nothing)
    for graph_, s, dsp in ((g, seq, 24), (baseline(g), np.zeros(300, int), 12)):
        full = explore(graph_, w, s, {"dsp": dsp}, _mults, cap=1.0, trim=False)
        lean = explore(graph_, w, s, {"dsp": dsp}, _mults, cap=1.0)     # the default
        assert full.trimmed == 0
        assert _mults(lean.graph)["dsp"] == _mults(full.graph)["dsp"] - lean.trimmed
        trimmed_any |= lean.trimmed > 0
        # no level is slower: the same throughput for fewer products
        levels = graph_.exits
        t_full, t_lean = (level_times(stage_timings(x.graph, w), levels) for x in (full, lean))
        assert all(a <= b for a, b in zip(t_lean, t_full))
        assert lean.samples_per_cycle == full.samples_per_cycle
        assert lean.timings == stage_timings(lean.graph, w)
        # and nothing more to give back: every smaller folding of a stage slows some level
        for st in lean.graph.stages:
            if st.kind not in ("conv", "linear"):
                continue
            for f in fold_candidates(st):
                if f.pe * f.simd >= st.fold.pe * st.fold.simd:
                    continue
                trial = lean.graph.with_folds({st.name: f})
                try:
                    t = level_times(stage_timings(trial, w), levels)
                except ValueError:
                    continue                    # a folding its block does not take
                assert any(a > b for a, b in zip(t, t_lean)), (dsp, st.name, f)
    assert trimmed_any
