"""SymbiYosys proofs (smtbmc + z3, bounded model checking) of the decision unit, with a
deliberately broken variant that the same proof must reject (the conditional buffer's proofs:
test_formal_cond_buffer.py; two files, so that the two test workers share them).

Bounds: ExitDecision (classes=3, 5-bit logits, 8-entry LUT, B=E=4) reaches its first result after
12 cycles (11 with the single logit store); with arbitrary input idles and back-pressure the proof
covers 16 cycles (the first sample under every input timing with up to 4 idle/stall cycles, every
logit vector, threshold and mode, and run-time writes), and with logits back to back 26 cycles
(three results out, so all three pipeline stages hold different samples). Both logit stores
("double", "single") are proved with the same bounds (both have an initiation interval of 7 cycles
here: the divider takes a sum once its result has left).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from exitgate.hw.decision import STORES, ExitDecision

#: the logit stores proved here: "ram" is "single" with its store in a one-port memory, and its
#: any-timing proof did not finish within the 120 s limit (it is checked against the golden
#: model in simulation instead: tests/hw/test_decision.py, also with the SPRAM's own model)
PROVED = tuple(s for s in STORES if s != "ram")
from exitgate.numerics import DecisionSpec

sys.path.insert(0, str(Path(__file__).parent))
from formal_decision import decision_harness  # noqa: E402
from formal_tools import run_sby  # noqa: E402

pytestmark = pytest.mark.formal


SPEC = DecisionSpec(classes=3, logit_frac_bits=2, lut_frac_bits=1, exp_bits=4, threshold_bits=4)


class _ExitOnStrictLess(ExitDecision):
    """Broken: exits only if t < floor(2**(E+B) / S) (the rule, t*S <= 2**(E+B), is t <= it)."""

    def _exit_rule(self, t_lt_q, t_eq_q):
        return t_lt_q


def _decision(cls=ExitDecision, store="double"):
    return cls(SPEC, logit_width=5, id_width=2, threshold=9, store=store)


@pytest.mark.parametrize("store", PROVED)
def test_decision_matches_spec_any_timing(tmp_path, store):
    passed, seconds, log = run_sby(decision_harness(_decision(store=store)), "decision",
                                   tmp_path, depth=19)
    assert passed, log[-3000:]


@pytest.mark.parametrize("store", PROVED)
def test_decision_matches_spec_back_to_back(tmp_path, store):
    passed, seconds, log = run_sby(decision_harness(_decision(store=store),
                                                    input_always_valid=True),
                                   "decision_b2b", tmp_path, depth=27)
    assert passed, log[-3000:]


@pytest.mark.parametrize("store", PROVED)
def test_decision_proof_rejects_broken_rule(tmp_path, store):
    passed, _, log = run_sby(decision_harness(_decision(_ExitOnStrictLess, store)),
                             "decision_bad", tmp_path, depth=17)
    assert not passed
    assert "failed assertion" in log
