import re

import numpy as np
import pytest
from amaranth.back import verilog

from exitgate.hw.beats import beat_payloads, lanes_to_map
from exitgate.hw.pool import MaxPool2x2, maxpool2x2_golden

# (C, H, W, lanes, signed)
CONFIGS = [(4, 5, 6, 2, True), (2, 4, 4, 1, False), (3, 7, 5, 3, True), (2, 2, 2, 1, False)]


@pytest.mark.parametrize("c,h,w,lanes,sgn", CONFIGS)
def test_pool_matches_golden_under_backpressure(run_stream, c, h, w, lanes, sgn):
    rng = np.random.default_rng(c * 100 + h * 10 + w)
    lo, hi = (-128, 128) if sgn else (0, 256)
    x = rng.integers(lo, hi, (3, c, h, w))
    dut = MaxPool2x2((c, h, w), lanes=lanes, signed_data=sgn)
    beats = (h // 2) * (w // 2) * c // lanes
    res = run_stream(dut, beat_payloads(x, lanes), 3 * beats, seed=h, idle=0.3, stall=0.3)
    assert (lanes_to_map(res.data, dut.out_shape) == maxpool2x2_golden(x)).all()
    res.check_markers(beats)


# (C, H, W, lanes): G = C / lanes groups of `evens` words: many (32, 16), a few (4, 2), one (the
# register; the odd pixel of a pair directly follows its even pixel), with odd H and / or W
GROUP_CONFIGS = [(32, 4, 4, 1), (16, 8, 8, 4), (4, 6, 6, 4), (4, 5, 7, 2), (16, 5, 3, 1),
                 (6, 3, 5, 6), (2, 2, 3, 1)]


def _pool_input(rng, shape, signed):
    """Random (samples, C, H, W) data with the extremes, zero and ties over-represented."""
    lo, hi = (-128, 127) if signed else (0, 255)
    x = rng.integers(lo, hi + 1, shape)
    special = np.array([lo, hi, 0, lo + 1, hi - 1])
    mask = rng.random(shape) < 0.25
    x[mask] = rng.choice(special, mask.sum())
    return x


@pytest.mark.parametrize("c,h,w,lanes", GROUP_CONFIGS)
@pytest.mark.parametrize("sgn", [False, True])
@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.3, 0.3), (0.6, 0.1), (0.1, 0.6)])
def test_pool_groups_under_backpressure(run_stream, c, h, w, lanes, sgn, idle, stall):
    samples = 4
    rng = np.random.default_rng([c, h, w, lanes, sgn, int(idle * 10), int(stall * 10)])
    x = _pool_input(rng, (samples, c, h, w), sgn)
    dut = MaxPool2x2((c, h, w), lanes=lanes, signed_data=sgn)
    beats = (h // 2) * (w // 2) * c // lanes
    res = run_stream(dut, beat_payloads(x, lanes), samples * beats, seed=c + h + w,
                     idle=idle, stall=stall)
    assert (lanes_to_map(res.data, dut.out_shape) == maxpool2x2_golden(x)).all()
    res.check_markers(beats)


@pytest.mark.parametrize("c,h,w,lanes", GROUP_CONFIGS)
def test_pool_evens_storage(c, h, w, lanes):
    """The even column is one lanes x width word per group: a memory of depth G (a register for
    G == 1), not G words of flip-flops behind a decoder and a mux."""
    groups, bits = c // lanes, lanes * 8
    text = verilog.convert(MaxPool2x2((c, h, w), lanes=lanes), name="top")
    declared = re.findall(r"^\s*reg (?:\[(\d+):0\] )?evens\b(.*)$", text, re.M)
    assert len(declared) == 1
    msb, rest = declared[0]
    assert int(msb or 0) == bits - 1
    if groups > 1:
        assert rest.strip() == f"[{groups - 1}:0];"
    else:
        assert not rest.strip().startswith("[")


def test_pool_golden_matches_loops():
    x = np.random.default_rng(0).integers(-50, 50, (2, 3, 5, 7))
    ref = np.zeros((2, 3, 2, 3), dtype=np.int64)
    for i in range(2):
        for j in range(3):
            ref[..., i, j] = x[..., 2 * i:2 * i + 2, 2 * j:2 * j + 2].max(axis=(-2, -1))
    assert (maxpool2x2_golden(x) == ref).all()
    assert (maxpool2x2_golden(x[0]) == ref[0]).all()


@pytest.mark.parametrize("c,h,w,lanes", [(4, 6, 6, 2), (2, 5, 7, 1), (32, 4, 4, 1), (4, 6, 6, 4)])
def test_pool_throughput(run_stream, c, h, w, lanes):
    x = np.random.default_rng(2).integers(0, 256, (4, c, h, w))
    dut = MaxPool2x2((c, h, w), lanes=lanes)
    beats = (h // 2) * (w // 2) * c // lanes
    res = run_stream(dut, beat_payloads(x, lanes), 4 * beats)
    measured = np.diff(res.cycles[::beats]) / (dut.out_shape[1] * dut.out_shape[2])
    assert np.allclose(measured, dut.initiation_interval)
    # the first output completes with input beat (W + 1) * G: pixel (1, 1), group 0
    assert res.cycles[0] - 1 == (w + 1) * (c // lanes) + dut.latency


@pytest.mark.parametrize("kwargs,message", [
    (dict(shape=(4, 1, 4)), "MaxPool2x2: H and W must be >= 2, got (4, 1, 4)"),
    (dict(shape=(4, 4, 4), lanes=3),
     "MaxPool2x2: lanes must be a positive divisor of the channel count (4), got 3"),
    (dict(shape=(4, 4, 4), width=40), "MaxPool2x2: width must be an integer in 1..32, got 40"),
])
def test_pool_validation(kwargs, message):
    shape = kwargs.pop("shape")
    with pytest.raises(ValueError) as err:
        MaxPool2x2(shape, **kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize("c,h,w,lanes", [(4, 6, 6, 2), (32, 5, 4, 1)])
def test_pool_verilog_lints(lint, c, h, w, lanes):
    lint(MaxPool2x2((c, h, w), lanes=lanes, signed_data=True))
