import numpy as np
import pytest

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


def test_pool_golden_matches_loops():
    x = np.random.default_rng(0).integers(-50, 50, (2, 3, 5, 7))
    ref = np.zeros((2, 3, 2, 3), dtype=np.int64)
    for i in range(2):
        for j in range(3):
            ref[..., i, j] = x[..., 2 * i:2 * i + 2, 2 * j:2 * j + 2].max(axis=(-2, -1))
    assert (maxpool2x2_golden(x) == ref).all()
    assert (maxpool2x2_golden(x[0]) == ref[0]).all()


@pytest.mark.parametrize("c,h,w,lanes", [(4, 6, 6, 2), (2, 5, 7, 1)])
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


def test_pool_verilog_lints(lint):
    lint(MaxPool2x2((4, 6, 6), lanes=2, signed_data=True))
