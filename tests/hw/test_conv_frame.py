import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from exitgate.hw.beats import beat_payloads, lanes_to_map
from exitgate.hw.conv import conv2d_golden
from exitgate.hw.conv_frame import FrameConv2dStage
from exitgate.hw.mvu import mvu_latency

sys.path.insert(0, str(Path(__file__).parent))
from conv_cases import conv_inputs, make_conv  # noqa: E402

_make = partial(make_conv, FrameConv2dStage)
_inputs = conv_inputs


# (C, H, W, Cout, pe, out_lanes, in_signed, weight_bits, shift, out_bits, out_signed, relu)
CONFIGS = [
    (1, 4, 5, 2, 1, 1, False, 4, 6, 8, True, False),    # C = 1, non-square
    (3, 3, 4, 4, 2, 1, True, 8, 9, 8, True, True),      # out_lanes < pe, signed input
    (2, 5, 3, 4, 4, 2, False, 3, 3, 4, False, True),    # pe 4, relu
    (4, 2, 3, 4, 4, 4, True, 5, 5, 8, True, False),
    (2, 1, 4, 2, 1, 1, False, 4, 4, 8, True, False),    # one row: every kernel row but 1 pads
    (3, 4, 1, 2, 2, 2, True, 4, 4, 8, True, True),      # one column
    (1, 1, 1, 2, 2, 1, False, 4, 2, 8, False, False),   # one pixel: only the centre tap
]


@pytest.mark.parametrize("cfg,deep", [(cfg, False) for cfg in CONFIGS] + [(CONFIGS[1], True)],
                         ids=[f"cfg{i}" for i in range(len(CONFIGS))] + ["cfg1-deep"])
def test_frame_conv_matches_golden_under_backpressure(run_stream, cfg, deep):
    (c, h, w, cout, pe, out_lanes, in_signed, weight_bits, shift, out_bits, out_signed,
     relu) = cfg
    rng = np.random.default_rng(sum(cfg[:6]))
    dut, weights, bias = _make(rng, c, h, w, cout, weight_bits=weight_bits, in_signed=in_signed,
                               shift=shift, out_bits=out_bits, out_signed=out_signed, relu=relu,
                               pe=pe, out_lanes=out_lanes, deep=deep)
    x = _inputs(rng, 3, (c, h, w), in_signed)
    beats = h * w * cout // out_lanes
    res = run_stream(dut, beat_payloads(x, 1), 3 * beats, seed=pe + c, idle=0.3, stall=0.3)
    expected = conv2d_golden(x, weights, bias, shift, out_bits, out_signed, relu)
    assert (lanes_to_map(res.data, dut.out_shape) == expected).all()
    res.check_markers(beats)


@pytest.mark.parametrize("shape,idle,stall", [((2, 4, 5), 0.9, 0.0), ((1, 5, 3), 0.9, 0.0),
                                               ((3, 3, 2), 0.8, 0.3), ((2, 4, 5), 0.0, 0.9)],
                         ids=["slow-in", "slow-in-c1", "slow-in-w2", "slow-out"])
def test_frame_conv_slow_input_and_output(run_stream, shape, idle, stall):
    """The read side catches up with the write side (a pixel waits for its bottom-right
    neighbour: slow input), or the write side runs a frame ahead and waits for a bank (slow
    output)."""
    rng = np.random.default_rng(5)
    c, h, w = shape
    dut, weights, bias = _make(rng, c, h, w, 2, weight_bits=4, in_signed=False, shift=4,
                               pe=2, out_lanes=1)
    x = _inputs(rng, 4, shape, False)
    beats = h * w * 2
    res = run_stream(dut, beat_payloads(x, 1), 4 * beats, seed=3, idle=idle, stall=stall)
    expected = conv2d_golden(x, weights, bias, 4, 8, False)
    assert (lanes_to_map(res.data, dut.out_shape) == expected).all()
    res.check_markers(beats)


# compute-bound (H*W*NF*SF), serialiser-bound (pe/out_lanes > 9*C), and the latency's two
# cases: early start ((W+2)*C words written) and whole frame (one row, 2 x 2)
THROUGHPUT = [
    dict(c=2, h=3, w=4, cout=4, pe=2, out_lanes=2),
    dict(c=4, h=4, w=3, cout=2, pe=1, out_lanes=1),
    dict(c=1, h=3, w=3, cout=16, pe=16, out_lanes=1),
    dict(c=3, h=1, w=4, cout=2, pe=2, out_lanes=1),
    dict(c=2, h=2, w=2, cout=2, pe=1, out_lanes=1),
    dict(c=2, h=3, w=4, cout=4, pe=2, out_lanes=2, deep=True),
]


@pytest.mark.parametrize("p", THROUGHPUT, ids=["compute", "compute-pe1", "serialiser",
                                               "one-row", "2x2", "compute-deep"])
def test_frame_conv_throughput_and_latency(run_stream, p):
    rng = np.random.default_rng(7)
    deep = p.get("deep", False)
    dut, _, _ = _make(rng, p["c"], p["h"], p["w"], p["cout"], weight_bits=4, in_signed=False,
                      shift=4, pe=p["pe"], out_lanes=p["out_lanes"], deep=deep)
    c, h, w = dut.shape
    compute = h * w * dut.nf * dut.sf
    serial = h * w * p["cout"] // p["out_lanes"]
    assert dut.cycles_per_sample == max(compute, serial)
    assert mvu_latency(1, deep) == 6 + 6 * deep      # SIMD 1: no adder tree
    assert dut.latency == (min((w + 2) * c + 1, c * h * w) + dut.sf + mvu_latency(1, deep))
    samples = 5
    x = _inputs(rng, samples, dut.shape, False)
    beats = serial
    res = run_stream(dut, beat_payloads(x, 1), samples * beats)
    firsts = res.cycles[::beats]
    assert set(np.diff(firsts[1:])) == {dut.cycles_per_sample}    # exact, every sample
    assert (firsts[-1] - firsts[1]) / ((samples - 2) * h * w) == dut.initiation_interval
    assert res.cycles[0] - 1 == dut.latency  # first input beat is accepted in cycle 0


def test_frame_conv_attributes():
    rng = np.random.default_rng(1)
    dut, _, _ = _make(rng, 16, 4, 4, 32, weight_bits=8, in_signed=False, shift=8, banks=8)
    dut._MustUse__silence = True  # not elaborated here
    assert (dut.out_shape, dut.nf, dut.sf, dut.pe, dut.simd, dut.in_lanes, dut.out_lanes,
            dut.banks) == ((32, 4, 4), 32, 144, 1, 1, 1, 1, 2)
    assert dut.cycles_per_sample == 16 * 32 * 144
    assert dut.initiation_interval == 32 * 144
    assert dut.latency == 6 * 16 + 1 + 144 + 6


def _ok_args():
    return (np.zeros((4, 2, 3, 3), dtype=np.int64), np.zeros(4, dtype=np.int64), (2, 4, 4))


@pytest.mark.parametrize("change,message", [
    (dict(simd=2), "FrameConv2dStage: simd must be 1 (the frame memory gives one value a "
                   "cycle; use Conv2dStage for simd > 1), got 2"),
    (dict(simd=18), "FrameConv2dStage: simd must be 1 (the frame memory gives one value a "
                    "cycle; use Conv2dStage for simd > 1), got 18"),
    (dict(in_lanes=2), "FrameConv2dStage: in_lanes must be 1 (the frame memory takes one value "
                       "a cycle; use Conv2dStage for in_lanes > 1), got 2"),
    (dict(weights=np.zeros((4, 3, 3, 3), dtype=int)),
     "FrameConv2dStage: weights must be an integer array of shape (Cout, 2, 3, 3), got int64 "
     "(4, 3, 3, 3)"),
    (dict(bias=np.zeros(3, dtype=int)),
     "FrameConv2dStage: bias must be an integer array of shape (4,), got int64 (3,)"),
    (dict(pe=3), "FrameConv2dStage: pe must be a positive divisor of the output channel count "
                 "(4), got 3"),
    (dict(pe=4, out_lanes=3), "FrameConv2dStage: out_lanes must be a positive divisor of pe "
                              "(4), got 3"),
    (dict(weights=np.full((4, 2, 3, 3), 8)),
     "FrameConv2dStage: weights must lie in [-8, 7] (4-bit signed), got [8, 8]"),
    (dict(shape=(2, 4)), "FrameConv2dStage: shape must be a (C, H, W) tuple of positive "
                         "integers, got (2, 4)"),
])
def test_frame_conv_validation(change, message):
    weights, bias, shape = _ok_args()
    args = dict(weights=weights, bias=bias, shape=shape, weight_bits=4)
    args.update(change)
    with pytest.raises(ValueError) as err:
        FrameConv2dStage(args.pop("weights"), args.pop("bias"), args.pop("shape"), **args)
    assert str(err.value) == message


def test_frame_conv_verilog_lints(lint):
    rng = np.random.default_rng(0)
    dut, _, _ = _make(rng, 3, 5, 6, 4, weight_bits=4, in_signed=True, shift=5, out_signed=True,
                      relu=True, pe=2, out_lanes=1)
    lint(dut)
