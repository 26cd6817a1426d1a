import numpy as np
import pytest

from exitgate.hw.beats import beat_payloads
from exitgate.hw.window import SlidingWindow, sliding_window_golden

# (C, H, W, lanes, kernel, signed)
CONFIGS = [(4, 4, 5, 2, 3, False), (3, 3, 3, 1, 3, True), (2, 5, 4, 2, 3, False),
           (2, 5, 6, 1, 5, True),
           (2, 4, 1, 2, 3, False),     # one-word line: a padding step between write and read
           (2, 3, 1, 1, 3, True)]


def _expected(x, lanes, k):
    n, c, h, w = x.shape
    win = sliding_window_golden(x, k)  # (N, H, W, C, K, K)
    # beat g of a pixel: element (ky*K + kx)*lanes + l = channel g*lanes + l
    return win.reshape(n, h, w, c // lanes, lanes, k, k).transpose(0, 1, 2, 3, 5, 6, 4) \
        .reshape(-1, k * k * lanes)


@pytest.mark.parametrize("c,h,w,lanes,k,sgn", CONFIGS)
def test_window_matches_golden_under_backpressure(run_stream, c, h, w, lanes, k, sgn):
    rng = np.random.default_rng(c * 100 + h * 10 + w + k)
    lo, hi = (-128, 128) if sgn else (0, 256)
    x = rng.integers(lo, hi, (3, c, h, w))
    dut = SlidingWindow((c, h, w), kernel=k, lanes=lanes, width=8, signed_data=sgn)
    beats = h * w * c // lanes
    res = run_stream(dut, beat_payloads(x, lanes), 3 * beats, seed=k, idle=0.3, stall=0.3)
    assert (res.data == _expected(x, lanes, k)).all()
    res.check_markers(beats)


def test_window_golden_is_zero_padded():
    x = np.arange(9).reshape(1, 3, 3)
    win = sliding_window_golden(x, 3)
    assert win.shape == (3, 3, 1, 3, 3)
    assert (win[0, 0, 0] == [[0, 0, 0], [0, 0, 1], [0, 3, 4]]).all()
    assert (win[1, 1, 0] == x[0]).all()


def test_window_throughput(run_stream):
    c, h, w, lanes = 2, 4, 5, 1
    x = np.random.default_rng(1).integers(0, 256, (4, c, h, w))
    dut = SlidingWindow((c, h, w), lanes=lanes)
    beats = h * w * c // lanes
    res = run_stream(dut, beat_payloads(x, lanes), 4 * beats)
    per_sample = np.diff(res.cycles[::beats])
    assert (per_sample == dut.cycles_per_sample).all()
    assert dut.cycles_per_sample == (h + 1) * (w + 1) * c


@pytest.mark.parametrize("kwargs,message", [
    (dict(shape=(4, 4)), "SlidingWindow: shape must be a (C, H, W) tuple of positive integers, "
                         "got (4, 4)"),
    (dict(shape=(4, 4, 4), kernel=4), "SlidingWindow: kernel must be an odd integer >= 3, got 4"),
    (dict(shape=(4, 4, 4), lanes=3),
     "SlidingWindow: lanes must be a positive divisor of the channel count (4), got 3"),
    (dict(shape=(4, 4, 4), width=0), "SlidingWindow: width must be an integer in 1..32, got 0"),
])
def test_window_validation(kwargs, message):
    shape = kwargs.pop("shape")
    with pytest.raises(ValueError) as err:
        SlidingWindow(shape, **kwargs)
    assert str(err.value) == message


def test_window_verilog_lints(lint):
    lint(SlidingWindow((4, 5, 6), lanes=2, signed_data=True))
