"""SymbiYosys proofs (smtbmc + z3, bounded model checking) of the conditional buffer, with and
without its output register, with a deliberately broken variant that the same proof must reject
and a check that the drain bound is tight.

ConditionalBuffer (depth 2, 2 beats per sample) is covered for 11 cycles: enough for 3 samples
to pass, and for the drain check (every accepted sample out within 6 cycles once the environment
lets it) to start with the buffer full.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from exitgate.hw.cond_buffer import ConditionalBuffer
from exitgate.hw.stream import activation_signature

sys.path.insert(0, str(Path(__file__).parent))
from formal_cond_buffer import TAG_BITS, cond_buffer_harness  # noqa: E402
from formal_tools import run_sby  # noqa: E402

pytestmark = pytest.mark.formal


class _ReadsAheadOfWrites(ConditionalBuffer):
    """Broken: forwards a beat of a still-arriving sample one cycle before it is written."""

    def _readable(self, rd_beat, wr_beat, rd_complete, caught):
        return rd_complete | (rd_beat <= wr_beat)


def _buffer(cls=ConditionalBuffer):
    return cls(activation_signature(1, TAG_BITS), beats_per_sample=2, depth=2)


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
