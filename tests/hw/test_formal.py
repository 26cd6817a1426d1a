"""SymbiYosys proofs (smtbmc + z3, bounded model checking) of the decision unit and the
conditional buffer, each with a deliberately broken variant that the same proof must reject.

Bounds: ExitDecision (classes=3, 5-bit logits, 8-entry LUT, B=E=4) reaches its first result after
12 cycles (11 with the single logit store); with arbitrary input idles and back-pressure the proof
covers 16 cycles (the first sample under every input timing with up to 4 idle/stall cycles, every
logit vector, threshold and mode, and run-time writes), and with logits back to back 24 cycles
(three results out, so all three pipeline stages hold different samples). Both logit stores
("double", "single") are proved with the same bounds (both have an initiation interval of 6 cycles
here).
ConditionalBuffer (depth 2, 2 beats per sample) is covered for 11 cycles: enough for 3 samples
to pass, and for the drain check (every accepted sample out within 6 cycles once the environment
lets it) to start with the buffer full.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from exitgate.hw.cond_buffer import ConditionalBuffer
from exitgate.hw.decision import STORES, ExitDecision
from exitgate.hw.stream import activation_signature
from exitgate.numerics import DecisionSpec

sys.path.insert(0, str(Path(__file__).parent))
from formal_cond_buffer import TAG_BITS, cond_buffer_harness  # noqa: E402
from formal_decision import decision_harness  # noqa: E402
from formal_tools import run_sby  # noqa: E402

pytestmark = pytest.mark.formal

SPEC = DecisionSpec(classes=3, logit_frac_bits=2, lut_frac_bits=1, exp_bits=4, threshold_bits=4)


class _ExitOnStrictLess(ExitDecision):
    """Broken: exits only if t < floor(2**(E+B) / S) (the rule, t*S <= 2**(E+B), is t <= it)."""

    def _exit_rule(self, t, q):
        return t < q


class _ReadsAheadOfWrites(ConditionalBuffer):
    """Broken: forwards a beat of a still-arriving sample one cycle before it is written."""

    def _readable(self, rd_beat, wr_beat, rd_complete, caught):
        return rd_complete | (rd_beat <= wr_beat)


def _decision(cls=ExitDecision, store="double"):
    return cls(SPEC, logit_width=5, id_width=2, threshold=9, store=store)


def _buffer(cls=ConditionalBuffer):
    return cls(activation_signature(1, TAG_BITS), beats_per_sample=2, depth=2)


@pytest.mark.parametrize("store", STORES)
def test_decision_matches_spec_any_timing(tmp_path, store):
    passed, seconds, log = run_sby(decision_harness(_decision(store=store)), "decision",
                                   tmp_path, depth=19)
    assert passed, log[-3000:]


@pytest.mark.parametrize("store", STORES)
def test_decision_matches_spec_back_to_back(tmp_path, store):
    passed, seconds, log = run_sby(decision_harness(_decision(store=store),
                                                    input_always_valid=True),
                                   "decision_b2b", tmp_path, depth=27)
    assert passed, log[-3000:]


@pytest.mark.parametrize("store", STORES)
def test_decision_proof_rejects_broken_rule(tmp_path, store):
    passed, _, log = run_sby(decision_harness(_decision(_ExitOnStrictLess, store)),
                             "decision_bad", tmp_path, depth=17)
    assert not passed
    assert "failed assertion" in log


def test_cond_buffer_every_sample_once_in_order(tmp_path):
    passed, seconds, log = run_sby(cond_buffer_harness(_buffer(), drain_cycles=6), "cbuf",
                                   tmp_path, depth=11)
    assert passed, log[-3000:]


def test_cond_buffer_out_reg_every_sample_once_in_order(tmp_path):
    """The variant with a register after the read data (deep boards): the same proof, one
    cycle more to drain."""
    dut = ConditionalBuffer(activation_signature(1, TAG_BITS), beats_per_sample=2, depth=2,
                            out_reg=True)
    passed, seconds, log = run_sby(cond_buffer_harness(dut, drain_cycles=7), "cbuf_oreg",
                                   tmp_path, depth=12)
    assert passed, log[-3000:]


def test_cond_buffer_drain_bound_is_tight(tmp_path):
    """With one cycle less to drain, the same proof finds a trace: the bound is exercised."""
    passed, _, log = run_sby(cond_buffer_harness(_buffer(), drain_cycles=5), "cbuf_tight",
                             tmp_path, depth=11)
    assert not passed


def test_cond_buffer_proof_rejects_broken_design(tmp_path):
    passed, _, log = run_sby(cond_buffer_harness(_buffer(_ReadsAheadOfWrites), drain_cycles=6),
                             "cbuf_bad", tmp_path, depth=11)
    assert not passed
    assert "failed assertion" in log
