import itertools
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from exitgate.hw.beats import beat_payloads, lanes_to_map, map_to_lanes, pack_beat
from exitgate.hw.conv import Conv2dStage, _WindowBuffer, conv2d_acc, conv2d_golden
from exitgate.hw.mvu import accumulator_width, requantise_split, requantise_value
from exitgate.numerics import bits_for_range, int_range, requantise

sys.path.insert(0, str(Path(__file__).parent))
from conv_cases import conv_inputs, make_conv  # noqa: E402

_make = partial(make_conv, Conv2dStage)
_inputs = conv_inputs


# (C, H, W, Cout, pe, simd, in_lanes, out_lanes, in_signed, weight_bits, shift, out_bits,
#  out_signed, relu)
CONFIGS = [
    (2, 4, 5, 4, 1, 3, 1, 1, False, 4, 6, 8, True, False),
    (4, 5, 4, 6, 3, 12, 2, 1, True, 8, 9, 8, True, True),
    (3, 3, 3, 2, 2, 27, 3, 2, False, 2, -1, 6, True, False),
    (4, 6, 6, 4, 4, 4, 4, 2, False, 4, 3, 4, False, True),
    (2, 5, 3, 2, 1, 18, 2, 1, True, 3, 0, 8, True, True),
    (3, 3, 4, 2, 1, 1, 1, 1, False, 8, 7, 8, False, True),   # one value a word: 9 per beat
    (4, 3, 4, 4, 2, 36, 1, 2, True, 5, 5, 8, True, False),   # four beats a word
]


@pytest.mark.parametrize("cfg,deep,soft", [(cfg, False, False) for cfg in CONFIGS]
                         + [(CONFIGS[1], True, False), (CONFIGS[2], True, False),
                            (CONFIGS[3], False, True), (CONFIGS[1], True, True),
                            (CONFIGS[3], True, 3)],
                         ids=[f"cfg{i}" for i in range(len(CONFIGS))]
                         + ["cfg1-deep", "cfg2-deep", "cfg3-soft", "cfg1-deep-soft",
                            "cfg3-deep-3-of-4-rows-soft"])
def test_conv_matches_golden_under_backpressure(run_stream, cfg, deep, soft):
    (c, h, w, cout, pe, simd, in_lanes, out_lanes, in_signed, weight_bits, shift, out_bits,
     out_signed, relu) = cfg
    rng = np.random.default_rng(sum(cfg[:8]))
    dut, weights, bias = _make(rng, c, h, w, cout, weight_bits=weight_bits, in_signed=in_signed,
                               shift=shift, out_bits=out_bits, out_signed=out_signed, relu=relu,
                               pe=pe, simd=simd, in_lanes=in_lanes, out_lanes=out_lanes,
                               deep=deep, soft=soft)
    x = _inputs(rng, 3, (c, h, w), in_signed)
    beats = h * w * cout // out_lanes
    res = run_stream(dut, beat_payloads(x, in_lanes), 3 * beats, seed=pe + simd, idle=0.3,
                     stall=0.3)
    expected = conv2d_golden(x, weights, bias, shift, out_bits, out_signed, relu)
    assert (lanes_to_map(res.data, dut.out_shape) == expected).all()
    res.check_markers(beats)


# compute-bound (NF*SF), window-bound ((H+1)(W+1)G/HW), serialiser-bound (Cout/out_lanes)
THROUGHPUT = [
    dict(c=2, h=6, w=6, cout=4, pe=2, simd=6, in_lanes=1, out_lanes=2),
    dict(c=2, h=5, w=6, cout=2, pe=2, simd=18, in_lanes=2, out_lanes=2),
    dict(c=2, h=4, w=4, cout=6, pe=3, simd=9, in_lanes=1, out_lanes=1),
    # fill-bound (NF = 1, beats split into several words): the buffer's writes and the window's
    # non-emitting steps, not the replay, set the pace
    dict(c=6, h=3, w=4, cout=3, pe=3, simd=6, in_lanes=1, out_lanes=3),
    dict(c=4, h=4, w=4, cout=1, pe=1, simd=1, in_lanes=1, out_lanes=1),
    # compute-bound with a short fold (the digits model's first conv on a large board): two
    # banks leave the window's warm-up at each sample boundary exposed, the default bank count
    # (window_buffer_banks: 8 here) hides it, so the II is exactly NF*SF
    dict(c=1, h=8, w=8, cout=16, pe=8, simd=9, in_lanes=1, out_lanes=8, banks=2),
    dict(c=1, h=8, w=8, cout=16, pe=8, simd=9, in_lanes=1, out_lanes=8),
    # the deep pipeline: 7 more cycles of latency (SIMD 9), the same cycles per sample
    dict(c=1, h=8, w=8, cout=16, pe=8, simd=9, in_lanes=1, out_lanes=8, deep=True),
]


@pytest.mark.parametrize("p", THROUGHPUT, ids=["compute", "window", "serialiser", "fill",
                                               "fill-simd1", "warmup-2banks", "warmup-hidden",
                                               "warmup-hidden-deep"])
def test_conv_throughput_and_latency(run_stream, p):
    rng = np.random.default_rng(7)
    dut, _, _ = _make(rng, p["c"], p["h"], p["w"], p["cout"], weight_bits=4, in_signed=False,
                      shift=4, pe=p["pe"], simd=p["simd"], in_lanes=p["in_lanes"],
                      out_lanes=p["out_lanes"], banks=p.get("banks"), deep=p.get("deep", False))
    if p.get("deep"):
        shallow, _, _ = _make(np.random.default_rng(7), p["c"], p["h"], p["w"], p["cout"],
                              weight_bits=4, in_signed=False, shift=4, pe=p["pe"],
                              simd=p["simd"], in_lanes=p["in_lanes"], out_lanes=p["out_lanes"])
        shallow._MustUse__silence = True          # only its latency is read
        # input skid buffer, the ROM-output and second operand registers, the products'
        # landing register, tree registers at 4 levels instead of 2, the result's register
        # after the requantiser (both have its first stage), the output FIFO's buffered read
        # (two cycles instead of the output register's one), the skid buffer between window
        # and buffer
        assert dut.latency == shallow.latency + 1 + 2 + 1 + 4 - 2 + 1 + 1 + 1
        assert dut.initiation_interval == shallow.initiation_interval
    if "banks" not in p and p["c"] == 1:
        assert dut.banks == 8 and dut.initiation_interval == dut.nf * dut.sf
    samples = 6
    x = _inputs(rng, samples, dut.shape, False)
    beats = p["h"] * p["w"] * p["cout"] // p["out_lanes"]
    res = run_stream(dut, beat_payloads(x, p["in_lanes"]), samples * beats)
    firsts = res.cycles[::beats]
    measured = (firsts[-1] - firsts[1]) / ((samples - 2) * p["h"] * p["w"])
    assert measured == pytest.approx(dut.initiation_interval, rel=0.03)
    assert res.cycles[0] - 1 == dut.latency  # first input beat is accepted in cycle 0


@pytest.mark.parametrize("groups,lanes,simd,nf,banks", [(2, 1, 3, 2, 2), (1, 2, 6, 1, 4),
                                                         (4, 1, 12, 3, 2), (2, 2, 36, 2, 2)])
def test_window_buffer_registered_flags_match_their_definitions(groups, lanes, simd, nf, banks):
    """The window buffer's ``emit``, ``i.ready`` and slice loads are registers computed a cycle
    ahead (Fmax); on every cycle of random traffic they equal what they stand for:
    emit = count >= wu and the fill bank not full, ready = what is left after the emit < wu, and
    the load one-hot at that slice while ready. Also every word comes out (traffic is real)."""
    import random

    from exitgate.hw.simstream import sink, source
    dut = _WindowBuffer(groups=groups, lanes=lanes, width=4, signed_data=False, nf=nf, simd=simd,
                        banks=banks)
    rng = random.Random(groups * 100 + simd)
    beat = 9 * lanes
    beats = [{"data": [rng.randrange(16) for _ in range(beat)], "first": k % groups == 0,
              "last": False} for k in range(groups * 12)]
    words = 12 * nf * dut.sf
    got, checked, bad = [], [0], []
    sim = Simulator(dut)
    st = dut.fill_state
    wu = dut.word_units

    async def check(ctx):
        while len(got) < words:
            count, full, wb = ctx.get(st["count"]), ctx.get(st["full"]), ctx.get(st["wb"])
            emit = count >= wu and not (full >> wb) & 1
            left = count - wu if emit else count
            want = {"emit": int(emit), "ready": int(left < wu),
                    "load": (1 << left) if left < wu else 0}
            bad.extend((checked[0], k, ctx.get(st[k]), v) for k, v in want.items()
                       if ctx.get(st[k]) != v)
            checked[0] += 1
            await ctx.tick()

    sim.add_clock(1e-6)
    sim.add_testbench(source(dut.i, beats, random.Random(1), idle=0.3))
    sim.add_testbench(sink(dut.o, words, got, random.Random(2), stall=0.4))
    sim.add_testbench(check, background=True)
    sim.run()
    assert bad == [], f"(cycle, flag, register, definition): {bad[:5]}"
    assert len(got) == words and checked[0] > words


def test_conv_golden_matches_loops():
    rng = np.random.default_rng(3)
    x = rng.integers(-20, 20, (2, 3, 4, 5))
    w = rng.integers(-5, 6, (2, 3, 3, 3))
    b = rng.integers(-9, 10, 2)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros((2, 2, 4, 5), dtype=np.int64)
    for n, o, i, j in itertools.product(range(2), range(2), range(4), range(5)):
        ref[n, o, i, j] = (xp[n, :, i:i + 3, j:j + 3] * w[o]).sum() + b[o]
    assert (conv2d_acc(x, w, b) == ref).all()
    assert (conv2d_acc(x[1], w, b) == ref[1]).all()
    assert (conv2d_golden(x, w, b, 2, 4, True, True) == requantise(ref, 2, 4, True, True)).all()


def test_accumulator_width_from_bounds():
    w = np.array([[3, -4], [1, 1]])
    b = np.array([5, -2])
    # row 0: (3 + 4) * 255 + 5 = 1790
    assert accumulator_width(w, b, 8, False) == bits_for_range(-1790, 1790)
    # signed input: max |x| = 128
    assert accumulator_width(w, b, 8, True) == bits_for_range(-(7 * 128 + 5), 7 * 128 + 5)


@pytest.mark.parametrize("split", [False, True], ids=["one-stage", "split"])
@pytest.mark.parametrize("shift,bits,out_signed,relu", [
    (3, 8, True, False), (4, 4, False, True), (1, 8, True, True), (0, 6, True, False),
    (-2, 8, True, False), (6, 3, True, False)])
def test_requantiser_logic_matches_numerics(shift, bits, out_signed, relu, split):
    width = 14
    acc = Signal(signed(width))
    out = Signal(signed(bits + 1))
    m = Module()
    if split:       # the deep MVU's two stages (`requantise_split`), registers as wires here
        first, second = requantise_split(acc, shift, bits, out_signed, relu)
        regs = [Signal(v.shape()) for v in first]
        m.d.comb += [r.eq(v) for r, v in zip(regs, first)]
        m.d.comb += out.eq(second(regs))
    else:
        m.d.comb += out.eq(requantise_value(acc, shift, bits, out_signed, relu))
    rng = np.random.default_rng(shift + 10)
    values = list(rng.integers(-(1 << (width - 1)), 1 << (width - 1), 300))
    if shift > 0:  # exact ties, both parities, both signs
        values += [s * ((k << shift) + (1 << (shift - 1))) for k in range(6) for s in (1, -1)]
    # every remainder of the quotients next to the clamp bounds (where rounding up crosses one)
    lo, hi = int_range(bits, out_signed)
    lo = max(lo, 0) if relu else lo
    s = max(shift, 0)
    values += [(q << s) + r for q in (lo - 2, lo - 1, lo, hi - 1, hi, hi + 1)
               for r in range(1 << s) if -(1 << (width - 1)) <= (q << s) + r < 1 << (width - 1)]
    values += [-(1 << (width - 1)), (1 << (width - 1)) - 1, 0, -1]
    got = []

    async def bench(ctx):
        for v in values:
            ctx.set(acc, int(v))
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == list(requantise(np.array(values), shift, bits, out_signed, relu))


def _ok_args():
    return (np.zeros((4, 2, 3, 3), dtype=np.int64), np.zeros(4, dtype=np.int64), (2, 4, 4))


@pytest.mark.parametrize("change,message", [
    (dict(weights=np.zeros((4, 3, 3, 3), dtype=int)),
     "Conv2dStage: weights must be an integer array of shape (Cout, 2, 3, 3), got int64 "
     "(4, 3, 3, 3)"),
    (dict(weights=np.zeros((4, 2, 3, 3))),
     "Conv2dStage: weights must be an integer array of shape (Cout, 2, 3, 3), got float64 "
     "(4, 2, 3, 3)"),
    (dict(bias=np.zeros(3, dtype=int)),
     "Conv2dStage: bias must be an integer array of shape (4,), got int64 (3,)"),
    (dict(weights=np.full((4, 2, 3, 3), 8)),
     "Conv2dStage: weights must lie in [-8, 7] (4-bit signed), got [8, 8]"),
    (dict(pe=3), "Conv2dStage: pe must be a positive divisor of the output channel count (4), "
                 "got 3"),
    (dict(simd=4), "Conv2dStage: simd must be a positive divisor of in_channels * 9 (18), got 4"),
    (dict(in_lanes=3), "Conv2dStage: in_lanes must be a positive divisor of the channel count "
                       "(2), got 3"),
    (dict(pe=4, out_lanes=3), "Conv2dStage: out_lanes must be a positive divisor of pe (4), "
                              "got 3"),
    (dict(shift=None), "Conv2dStage: shift must be an integer in -32..48, got None"),
    (dict(out_bits=0), "Conv2dStage: out_bits must be an integer in 1..32, got 0"),
    (dict(weight_bits=1), "Conv2dStage: weight_bits must be an integer in 2..16, got 1"),
    (dict(in_width=33), "Conv2dStage: in_width must be an integer in 1..32, got 33"),
    (dict(shape=(2, 4)), "Conv2dStage: shape must be a (C, H, W) tuple of positive integers, "
                         "got (2, 4)"),
    (dict(banks=3), "Conv2dStage: banks must be a power of two >= 2, got 3"),
    (dict(banks=1), "Conv2dStage: banks must be a power of two >= 2, got 1"),
])
def test_conv_validation(change, message):
    weights, bias, shape = _ok_args()
    args = dict(weights=weights, bias=bias, shape=shape, weight_bits=4)
    args.update(change)
    with pytest.raises(ValueError) as err:
        Conv2dStage(args.pop("weights"), args.pop("bias"), args.pop("shape"), **args)
    assert str(err.value) == message


def test_conv_verilog_lints(lint):
    rng = np.random.default_rng(0)
    dut, _, _ = _make(rng, 4, 5, 6, 4, weight_bits=4, in_signed=True, shift=5, out_signed=True,
                      relu=True, pe=2, simd=6, in_lanes=2, out_lanes=1)
    lint(dut)


def test_conv_cocotb_verilator(tmp_path, tmp_path_factory, request):
    """One conv stage through cocotb on Verilator: golden outputs under back-pressure, and
    measured cycles per pixel against the designed II without it (tests/hw/cocotb_conv.py)."""
    from amaranth.back import verilog

    from exitgate.sim.runner import run_cocotb

    rng = np.random.default_rng(11)
    c, h, w, cout, in_lanes, out_lanes = 4, 5, 6, 4, 2, 2
    dut, weights, bias = _make(rng, c, h, w, cout, weight_bits=4, in_signed=True, shift=5,
                               out_signed=True, relu=False, pe=2, simd=6, in_lanes=in_lanes,
                               out_lanes=out_lanes)
    x = _inputs(rng, 4, (c, h, w), True)
    expected = conv2d_golden(x, weights, bias, 5, 8, True, False)

    def packed(beats, per_sample, width):
        return [pack_beat(b, k % per_sample == 0, k % per_sample == per_sample - 1, width)
                for k, b in enumerate(beats)]

    data = {
        "inputs": packed(map_to_lanes(x, in_lanes), h * w * c // in_lanes, 8),
        "expected": packed(map_to_lanes(expected, out_lanes), h * w * cout // out_lanes, 8),
        "pixels_per_sample": h * w,
        "beats_per_sample": h * w * cout // out_lanes,
        "initiation_interval": dut.initiation_interval,
        "idle": 0.3, "stall": 0.3, "seed": 5,
    }
    bench_json = tmp_path / "bench.json"
    bench_json.write_text(json.dumps(data))
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    root = cache.mkdir("exitgate-cocotb") if cache else tmp_path_factory.mktemp("exitgate-cocotb")
    build = root / "conv_c4h5w6_pe2_simd6"
    build.mkdir(parents=True, exist_ok=True)
    top = build / "top.v"
    top.write_text(verilog.convert(dut, name="top"))
    run_cocotb(top, "top", "cocotb_conv", build, test_dir=tmp_path,
               extra_env={"EXITGATE_BENCH_JSON": str(bench_json)},
               python_search=[request.path.parent])
