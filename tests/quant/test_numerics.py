import math
import random

import numpy as np
import pytest
import torch

from exitgate.numerics import (MODE_ALWAYS, MODE_NEVER, MODE_THRESHOLD, DecisionSpec,
                               bits_for_range, decide, float_confidence, int_range, lut_index,
                               requantise, shift_round)


def test_shift_round_is_torch_round_half_even():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(-2**20, 2**20, 20000), np.arange(-64, 65)])
    for s in range(0, 9):
        want = torch.round(torch.tensor(x, dtype=torch.float64) / 2**s).long().numpy()
        np.testing.assert_array_equal(shift_round(x, s), want, err_msg=f"shift {s}")


def test_shift_round_ties_go_to_even():
    assert shift_round([2, 6, 10, -2, -6], 2).tolist() == [0, 2, 2, 0, -2]  # 0.5 1.5 2.5 -.5 -1.5
    assert shift_round([3], -2).tolist() == [12]


def test_requantise_clamps_and_relus():
    assert requantise([-100, 5, 1000], 0, 8, False, relu=True).tolist() == [0, 5, 255]
    assert requantise([-1000, 1000], 1, 4, True).tolist() == [-8, 7]


def test_bits_for_range():
    assert bits_for_range(0, 255) == 8
    assert bits_for_range(-128, 127) == 8
    assert bits_for_range(-129, 0) == 9
    assert bits_for_range(-1, 128) == 9
    for lo, hi in [(-5, 3), (-1000, 70000), (0, 1)]:
        b = bits_for_range(lo, hi)
        l2, h2 = int_range(b, lo < 0)
        assert l2 <= lo and hi <= h2


def test_lut_is_monotone_and_ends_in_zero():
    spec = DecisionSpec(classes=10, logit_frac_bits=8)
    lut = spec.lut
    assert lut[0] == 2**spec.exp_bits and lut[-1] == 0
    assert all(a >= b for a, b in zip(lut, lut[1:]))
    assert lut[1] == round(math.exp(-1 / 16) * 4096)


def test_decide_matches_integer_spec_by_brute_force():
    rng = random.Random(0)
    for f in (2, 4, 9):
        spec = DecisionSpec(classes=5, logit_frac_bits=f)
        z = np.array([[rng.randint(-300, 300) for _ in range(5)] for _ in range(500)])
        t = spec.threshold_register(0.8)
        d = decide(spec, z, t)
        for row, ex, s, c in zip(z, d.exit, d.sum_exp, d.cls):
            m = max(row)
            total = 0
            for v in row:
                diff = m - v
                sh = f - spec.lut_frac_bits
                k = (diff + (1 << (sh - 1))) >> sh if sh > 0 else diff << -sh
                total += spec.lut[min(k, spec.lut_size - 1)]
            assert s == total
            assert ex == (t * total <= 2 ** (spec.exp_bits + spec.threshold_bits))
            assert c == list(row).index(m)


def test_decide_tracks_float_softmax():
    rng = np.random.default_rng(1)
    spec = DecisionSpec(classes=10, logit_frac_bits=10)
    z = rng.integers(-6000, 6000, (5000, 10))
    conf = float_confidence(z, 10)
    for T in (0.5, 0.8, 0.9, 0.99):
        d = decide(spec, z, spec.threshold_register(T))
        disagree = (d.exit != (conf >= T)).mean()
        assert disagree < 0.02, (T, disagree)
        # fixed-point confidence approximates the float one
        assert np.abs(d.confidence / 2**16 - conf).max() < 0.06


def test_modes_and_threshold_validation():
    spec = DecisionSpec(classes=3, logit_frac_bits=4)
    z = np.array([[0, 0, 0], [100, 0, 0]])
    assert decide(spec, z, 1, MODE_NEVER).exit.tolist() == [False, False]
    assert decide(spec, z, 2**16, MODE_ALWAYS).exit.tolist() == [True, True]
    assert decide(spec, z, spec.threshold_register(0.9), MODE_THRESHOLD).exit.tolist() == [False, True]
    for bad in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
            spec.threshold_register(bad)
    with pytest.raises(ValueError, match="classes must be >= 2"):
        DecisionSpec(classes=1, logit_frac_bits=0)
    assert lut_index(spec, [10**9]).tolist() == [spec.lut_size - 1]
