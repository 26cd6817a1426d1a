import numpy as np
import pytest

from exitgate.hw.beats import beat_payloads
from exitgate.hw.linear import LinearStage, linear_acc, linear_golden
from exitgate.numerics import requantise


def _make(rng, shape, cout, *, weight_bits=4, in_signed=False, **kwargs):
    lim = (1 << (weight_bits - 1)) - 1
    n = int(np.prod(shape))
    weights = rng.integers(-lim, lim + 1, (cout, n))
    bias = rng.integers(-300, 301, cout)
    dut = LinearStage(weights, bias, shape, in_signed=in_signed, weight_bits=weight_bits,
                      **kwargs)
    return dut, weights, bias


def _inputs(rng, n, shape, in_signed):
    return rng.integers(-128, 128, (n, *shape)) if in_signed else rng.integers(0, 256, (n, *shape))


# (shape, cout, pe, simd, in_lanes, out_lanes, in_signed, shift, out_signed, relu)
CONFIGS = [
    ((4, 2, 3), 6, 2, 4, 2, None, False, 5, True, True),
    ((2, 3, 3), 10, 2, 3, 1, None, False, None, False, False),   # logits, one per beat
    ((8, 1, 1), 4, 4, 8, 4, 2, True, 4, True, False),
    ((3, 2, 2), 5, 1, 3, 3, None, True, None, False, False),     # logits, pe = 1
    ((2, 3, 2), 4, 4, 12, 2, 1, False, -1, False, True),
]


@pytest.mark.parametrize("cfg,deep,soft", [(cfg, False, False) for cfg in CONFIGS]
                         + [(CONFIGS[1], True, False), (CONFIGS[4], True, False),
                            (CONFIGS[0], False, True), (CONFIGS[3], True, True)],
                         ids=[f"cfg{i}" for i in range(len(CONFIGS))]
                         + ["cfg1-deep", "cfg4-deep", "cfg0-soft", "cfg3-deep-soft"])
def test_linear_matches_golden_under_backpressure(run_stream, cfg, deep, soft):
    shape, cout, pe, simd, in_lanes, out_lanes, in_signed, shift, out_signed, relu = cfg
    rng = np.random.default_rng(cout * 10 + pe + simd)
    dut, weights, bias = _make(rng, shape, cout, in_signed=in_signed, shift=shift,
                               out_signed=out_signed, relu=relu, pe=pe, simd=simd,
                               in_lanes=in_lanes, out_lanes=out_lanes, deep=deep, soft=soft)
    x = _inputs(rng, 4, shape, in_signed)
    beats = cout // dut.out_lanes
    res = run_stream(dut, beat_payloads(x, in_lanes), 4 * beats, seed=simd, idle=0.3, stall=0.3)
    expected = linear_golden(x, weights, bias, shift, 8, out_signed, relu)
    assert (res.data.reshape(4, cout) == expected).all()
    res.check_markers(beats)
    if shift is None:
        assert dut.o.payload.shape().size == dut.acc_width + 2  # one signed logit, first, last


# compute-bound (NF*SF), input-bound (N/in_lanes), output-bound (Cout/out_lanes)
THROUGHPUT = [
    dict(shape=(2, 2, 2), cout=8, pe=2, simd=2, in_lanes=2, shift=3),
    dict(shape=(4, 3, 3), cout=2, pe=2, simd=12, in_lanes=2, shift=3),
    dict(shape=(2, 2, 2), cout=10, pe=5, simd=8, in_lanes=2, shift=None),
    dict(shape=(2, 2, 2), cout=10, pe=5, simd=8, in_lanes=2, shift=None, deep=True),
    dict(shape=(2, 2, 2), cout=10, pe=5, simd=8, in_lanes=2, shift=None, deep=True, soft=True),
]


@pytest.mark.parametrize("p", THROUGHPUT, ids=["compute", "input", "output", "output-deep",
                                               "output-deep-soft"])
def test_linear_throughput_and_latency(run_stream, p):
    rng = np.random.default_rng(4)
    dut, _, _ = _make(rng, p["shape"], p["cout"], shift=p["shift"], pe=p["pe"], simd=p["simd"],
                      in_lanes=p["in_lanes"], deep=p.get("deep", False),
                      soft=p.get("soft", False))
    samples = 8
    x = _inputs(rng, samples, p["shape"], False)
    beats = p["cout"] // dut.out_lanes
    res = run_stream(dut, beat_payloads(x, p["in_lanes"]), samples * beats)
    firsts = res.cycles[::beats]
    measured = (firsts[-1] - firsts[1]) / (samples - 2)
    assert measured == pytest.approx(dut.initiation_interval, rel=0.03)
    # the sample's last input beat is accepted in cycle N/in_lanes - 1
    assert res.cycles[0] - 1 - (np.prod(p["shape"]) // p["in_lanes"] - 1) == dut.latency


def test_linear_golden_uses_pytorch_flatten_order():
    rng = np.random.default_rng(1)
    x = rng.integers(-9, 10, (3, 2, 3, 4))
    w = rng.integers(-5, 6, (5, 24))
    b = rng.integers(-5, 6, 5)
    ref = np.zeros((3, 5), dtype=np.int64)
    for n in range(3):
        for o in range(5):
            for c in range(2):
                for h in range(3):
                    for wi in range(4):
                        ref[n, o] += w[o, c * 12 + h * 4 + wi] * x[n, c, h, wi]
    ref += b
    assert (linear_acc(x, w, b) == ref).all()
    assert (linear_golden(x, w, b) == ref).all()
    assert (linear_golden(x, w, b, 3, 4, True, True) == requantise(ref, 3, 4, True, True)).all()


def _ok():
    return np.zeros((4, 12), dtype=np.int64), np.zeros(4, dtype=np.int64), (2, 2, 3)


@pytest.mark.parametrize("change,message", [
    (dict(weights=np.zeros((4, 10), dtype=int)),
     "LinearStage: weights must be an integer array of shape (Cout, 12), got int64 (4, 10)"),
    (dict(bias=np.zeros((4, 1), dtype=int)),
     "LinearStage: bias must be an integer array of shape (4,), got int64 (4, 1)"),
    (dict(weights=np.full((4, 12), -9)),
     "LinearStage: weights must lie in [-8, 7] (4-bit signed), got [-9, -9]"),
    (dict(pe=3), "LinearStage: pe must be a positive divisor of the output count (4), got 3"),
    (dict(in_lanes=2, simd=3),
     "LinearStage: simd must be a multiple of in_lanes (2) that divides C*H*W (12), got 3"),
    (dict(simd=5),
     "LinearStage: simd must be a multiple of in_lanes (1) that divides C*H*W (12), got 5"),
    (dict(in_lanes=4), "LinearStage: in_lanes must be a positive divisor of the channel count "
                       "(2), got 4"),
    (dict(shift=None, pe=2, out_lanes=2),
     "LinearStage: out_lanes must be 1 for raw logits (shift=None), got 2"),
    (dict(pe=2, out_lanes=4), "LinearStage: out_lanes must be a positive divisor of pe (2), "
                              "got 4"),
    (dict(shift=1.5), "LinearStage: shift must be an integer in -32..48, got 1.5"),
])
def test_linear_validation(change, message):
    weights, bias, shape = _ok()
    args = dict(weights=weights, bias=bias, shape=shape, weight_bits=4)
    args.update(change)
    with pytest.raises(ValueError) as err:
        LinearStage(args.pop("weights"), args.pop("bias"), args.pop("shape"), **args)
    assert str(err.value) == message


@pytest.mark.parametrize("shift", [3, None], ids=["hidden", "logits"])
def test_linear_verilog_lints(lint, shift):
    dut, _, _ = _make(np.random.default_rng(0), (4, 2, 3), 10, shift=shift, pe=2, simd=4,
                      in_lanes=2, in_signed=True)
    lint(dut)
