"""Design-space exploration: choose every stage's folding to maximise throughput in a budget.

Exit-aware (as ATHEENA): a level-k stage only sees the fraction f_k of samples that continued past
the earlier exits, so its cost in the objective is f_k * cycles. The search is greedy on the
bottleneck (as FINN's folding search): start from the smallest folding; repeatedly take the stage
with the largest f_k * cycles and apply the change of folding with the best throughput gain per
added multiplier (or, for a pool or buffer limited by its input lanes, a change of the conv feeding
it) that keeps the whole design's estimated resources inside the budget; when the best change
overflows, the next best that fits and raises the throughput is taken; stop when no change fits.
With ``soft`` (``exitgate compile --soft-multipliers``), a change that overflows only the DSPs is
tried once more with as many of that stage's PE rows' products in logic as the DSPs fall short
(`Fold.soft`: LUTs and carry chains, same cycles): a board whose DSPs are spent long before its
LUTs (the ECP5-85F: 156 DSPs, 84k LUTs) keeps folding out where the bottleneck is instead of
stopping. Then the search gives back what buys no speed (``trim``): a step can relieve the
bottleneck stage without raising the throughput (the next stage in line sets the pace at once),
and its products stay unused; while some stage has a smaller folding that leaves every level's
server time as it is, the one freeing the most products is taken. (On the ECP5-85F the digits
baseline spent all 156 DSPs, 8 for nothing, and that netlist did not route; trimmed, 148 did.)
The trim trusts the model, which takes a level's pace from its slowest stage alone: stages in
series within a few per cent of it stall each other in the hardware, which the model does not
see (the MNIST baseline's trim brought a conv level with the slowest one and measured 8 % below
the untrimmed folding; README, Current figures).
The no-exit baseline is the same search with every fraction 1 on the baseline graph,
under the same budget.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from .codegen import build_blocks
from .graph import Fold, HwGraph, Stage
from .perf import (StageTiming, level_fractions, level_times, stage_timings,
                   stream_throughput)

__all__ = ["divisors", "fold_candidates", "explore", "Exploration"]


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def fold_candidates(stage: Stage) -> list[Fold]:
    """Every folding the stage's block accepts in principle (lanes are checked on building)."""
    if stage.kind == "conv":
        cout, cin = stage.out_shape[0], stage.in_shape[0]
        return [Fold(pe, simd, lanes) for pe in divisors(cout) for simd in divisors(cin * 9)
                for lanes in divisors(pe)]
    if stage.kind == "linear":
        n = 1
        for d in stage.in_shape:
            n *= d
        raw = stage.params.get("shift") is None
        return [Fold(pe, simd, lanes) for pe in divisors(stage.out_shape[0])
                for simd in divisors(n) for lanes in ([1] if raw else divisors(pe))]
    return []


@dataclass
class Exploration:
    graph: HwGraph
    timings: list[StageTiming]
    resources: dict
    steps: int
    limited_by: str          # why the search stopped
    samples_per_cycle: float  # stream model on the exit sequence
    trimmed: int = 0          # products given back after the search (`_trim`)


def _cap(cap: float | dict, key: str) -> float:
    return cap[key] if isinstance(cap, dict) else cap


def _overflows(res: dict, budget: dict, cap: float | dict) -> list[str]:
    """The resources `res` uses beyond the usable part of `budget`."""
    return [key for key in ("lut", "ff", "dsp", "bram", "cells")
            if key in budget and res.get(key, 0) > budget[key] * _cap(cap, key)]


def _fits(res: dict, budget: dict, cap: float | dict) -> str | None:
    """The first resource that overflows, or None."""
    return next(iter(_overflows(res, budget, cap)), None)


def _mults(g: HwGraph) -> int:
    return sum(s.fold.pe * s.fold.simd for s in g.stages if s.kind in ("conv", "linear"))


def _repair(g: HwGraph) -> HwGraph:
    """Make every linear stage's SIMD a multiple of its input lanes (its block requires it)."""
    lanes = {None: 1}
    fixes = {}
    for st in g.stages:
        if st.kind == "decision":
            continue
        inl = lanes[st.src]
        f = fixes.get(st.name, st.fold)
        if st.kind == "linear" and f.simd % inl:
            n = 1
            for d in st.in_shape:
                n *= d
            simd = min(d for d in divisors(n) if d % inl == 0 and d >= f.simd)
            f = replace(f, simd=simd)
            fixes[st.name] = f
        lanes[st.name] = inl if st.kind == "pool" else (
            1 if st.params.get("shift") is None else f.out_lanes)
    return g.with_folds(fixes) if fixes else g


def _next_folds(stage: Stage, limit: int = 12) -> list[Fold]:
    """The few cheapest foldings with more parallelism than the current one."""
    cur = stage.fold
    up = [f for f in fold_candidates(stage) if f.pe * f.simd > cur.pe * cur.simd]
    up.sort(key=lambda f: (f.pe * f.simd, -f.out_lanes))
    sizes = sorted({f.pe * f.simd for f in up})[:2]
    return [f for f in up if f.pe * f.simd in sizes][:limit]


def _soften(trial: HwGraph, name: str, res: dict, budget: dict, cap, estimate):
    """``trial`` with the fewest of stage ``name``'s PE rows in logic (`Fold.soft`) that bring
    its DSPs inside the budget: from the DSPs it overflows by (one per product of a row) up;
    (graph, resources, overflowing resources) of the first that fits the DSPs, or of all rows
    in logic."""
    f = trial.stage(name).fold
    excess = res["dsp"] - int(budget["dsp"] * _cap(cap, "dsp"))
    k = min(f.pe, max(f.soft + 1, -(-excess // f.simd)))
    while True:
        g = trial.with_folds({name: replace(f, soft=k)})
        r = estimate(g)
        over = _overflows(r, budget, cap)
        if "dsp" not in over or k == f.pe:
            return g, r, over
        k += 1


def _trim(g: HwGraph, weights: dict, timings: list[StageTiming], res: dict, levels: int,
          estimate, budget: dict, cap) -> tuple[HwGraph, dict]:
    """Give back what buys no speed: while some stage has a smaller folding that leaves every
    level's server time as it is, take the one that frees the most multipliers (of each stage,
    its cheapest such folding). The greedy search may take a step that relieves the bottleneck
    stage without raising the throughput, and the next bottleneck then decides it; the
    products such a step added stay unused. (graph, resources)."""
    times = level_times(timings, levels)
    while True:
        best, mults = None, _mults(g)
        for st in g.stages:
            if st.kind not in ("conv", "linear") or st.fold.soft:
                continue
            size = st.fold.pe * st.fold.simd
            for f in sorted((f for f in fold_candidates(st) if f.pe * f.simd < size),
                            key=lambda f: (f.pe * f.simd, -f.out_lanes)):
                if st.macs // (f.pe * f.simd) > times[st.level]:
                    continue            # no block does more products a cycle than it has
                trial = _repair(g.with_folds({st.name: f}))
                freed = mults - _mults(trial)
                if best and freed <= best[0]:
                    break               # the rest are larger still
                if freed <= 0:
                    continue
                try:
                    t2 = stage_timings(trial, weights)     # (builds the blocks)
                except ValueError:
                    continue            # a folding its block does not take
                if all(a <= b for a, b in zip(level_times(t2, levels), times)):
                    r2 = estimate(trial)
                    if not _overflows(r2, budget, cap):
                        best = (freed, trial, r2)
                        break
        if best is None:
            return g, res
        _, g, res = best


def explore(graph: HwGraph, weights: dict, exit_seq, budget: dict,
            estimate: Callable[[HwGraph], dict], cap: float | dict = 0.85, depth: int = 4,
            max_steps: int = 400, soft: bool = False, trim: bool = True) -> Exploration:
    """Greedy search (see module docstring). `exit_seq`: exit index per calibration sample
    (all 0 for a one-exit baseline); `estimate(graph) -> {lut, ff, dsp, bram}`; ``cap``: the
    usable fraction of the budget, one number or one per resource
    (`exitgate.boards.profiles.Budget.caps`); ``soft``: a step that overflows only the DSPs may
    take its stage's products into logic (`Fold.soft`); ``trim``: give back the products that
    buy no speed after the search (`_trim`). Raises ValueError naming the resource
    if even the smallest folding does not fit."""
    folds = {s.name: Fold(1, 1, 1) for s in graph.stages if s.kind in ("conv", "linear")}
    g = graph.with_folds(folds)
    res = estimate(g)
    over = _overflows(res, budget, cap)
    if over:
        what = {"cells": "logic cells (LUT + unpaired FF, estimated)"}
        raise ValueError("the smallest folding needs " + "; and ".join(
            f"{res[key]} {what.get(key, key.upper())}, more than {_cap(cap, key):.0%} of the "
            f"board's {budget[key]}" for key in over))
    levels = graph.exits
    fractions = level_fractions(exit_seq, levels)

    def evaluate(trial):
        t = stage_timings(trial, weights)
        return t, stream_throughput(level_times(t, levels), exit_seq, depth)

    timings, tput = evaluate(g)
    steps, why = 0, "max_steps"
    while steps < max_steps:
        cost = {t.name: fractions[t.level] * t.cycles for t in timings}
        worst = max(cost, key=cost.get)
        candidates = []
        for st in g.stages:
            for f in _next_folds(st):
                trial = _repair(g.with_folds({st.name: f}))
                try:
                    build_blocks(trial, weights, analysis=True)
                except ValueError:
                    continue
                t2, tp2 = evaluate(trial)
                c2 = {t.name: fractions[t.level] * t.cycles for t in t2}
                gain = tp2 - tput
                relieves = c2[worst] < cost[worst] and max(c2.values()) <= max(cost.values())
                if gain <= 1e-12 and not relieves:
                    continue
                extra = max(1, _mults(trial) - _mults(g))
                candidates.append(((gain / extra, -c2[worst] / extra), trial, t2, tp2,
                                   st.name))
        if not candidates:
            why = f"no folding change makes {worst} or the whole design faster"
            break
        # the best step that fits; when the best does not, a cheaper one may still (using the
        # budget's remainder instead of stopping at the first step that overflows)
        candidates.sort(key=lambda c: c[0], reverse=True)     # stable: ties keep stage order
        taken, first_over = None, None
        for rank, (_, trial, t2, tp2, name) in enumerate(candidates):
            if rank and tp2 <= tput + 1e-12:
                continue            # a fallback must raise the throughput itself
            r2 = estimate(trial)
            over = _overflows(r2, budget, cap)
            if over == ["dsp"] and soft:
                # the board's DSPs are spent: the same folding with as many of the stage's PE
                # rows in logic as the DSPs fall short (same cycles), if the LUTs allow
                trial, r2, over = _soften(trial, name, r2, budget, cap, estimate)
            if not over:
                taken = (trial, t2, tp2, r2)
                break
            first_over = first_over or over[0]
        if taken is None:
            why = f"budget: {first_over.upper()}"
            break
        g, timings, tput, res = taken
        steps += 1
    trimmed = 0
    if trim:
        before = _mults(g)
        g, res = _trim(g, weights, timings, res, levels, estimate, budget, cap)
        trimmed = before - _mults(g)
        if trimmed:
            timings, tput = evaluate(g)
    return Exploration(graph=g, timings=timings, resources=res, steps=steps, limited_by=why,
                       samples_per_cycle=tput, trimmed=trimmed)
