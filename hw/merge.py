"""Merge the result streams of all exits into one stream tagged with the exit index.
ARCHITECTURE 2.4.

Ports (``N`` = exits):

    i[k]  In   stream of `result_layout` {id, cls, confidence}           results of exit k
    o     Out  stream of `merged_layout` {id, exit_index, cls, confidence}

Order policy: in order of completion, with round-robin arbitration among inputs valid on the same
cycle: after input k is granted, the search for the next grant starts at k+1. So an input that
stays valid is granted within N grants (no starvation), and each input's results keep their order.
The grant is a register: the arbiter picks the next input from the inputs' ``valid`` (and the
last grant) into a one-hot register, and ``i[k].ready`` is that register's bit ``k`` and the
output register being free, so no input's ``ready`` depends on another input's ``valid`` or on
the arbiter (Fmax: on the iCE40 a round-robin grant in the ``ready`` of every exit ran on through
the decision routers into the decision units' enables). A granted input stays granted until its
result is taken (a stream's ``valid`` does not fall before ``ready``); the next grant is chosen
on the cycle a result is taken, so with two or more inputs valid the merge passes one result per
cycle, and one input alone at most every other cycle. One output register: a result is taken on
the cycle its input is granted and the output is free, and is valid on ``o`` the next cycle.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ExitMerge", "result_layout", "merged_layout", "merge_model"]


def result_layout(id_width: int, cls_width: int, confidence_width: int) -> data.StructLayout:
    """One exit's result: {id, cls, confidence} (fields as `decision_layout`, without exit)."""
    return data.StructLayout({"id": id_width, "cls": cls_width, "confidence": confidence_width})


def merged_layout(n: int, id_width: int, cls_width: int,
                  confidence_width: int) -> data.StructLayout:
    """Merged result: {id, exit_index, cls, confidence}."""
    return data.StructLayout({"id": id_width, "exit_index": max(1, (n - 1).bit_length()),
                              "cls": cls_width, "confidence": confidence_width})


def merge_model(inputs) -> dict:
    """Golden model: ``inputs[k]`` is exit k's results (dicts) in order; returns, per exit index,
    the list the output must contain for it, in the same order (interleaving is free)."""
    return {k: [dict(r, exit_index=k) for r in results] for k, results in enumerate(inputs)}


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")


class ExitMerge(wiring.Component):
    """Round-robin merge of ``n`` exit result streams (see module docstring).

    n: number of exits (2..16). id_width, cls_width, confidence_width: field widths (1..32).
    """

    def __init__(self, n: int, *, id_width: int, cls_width: int, confidence_width: int):
        _check_int("n", n, 2, 16)
        _check_int("id_width", id_width, 1, 32)
        _check_int("cls_width", cls_width, 1, 32)
        _check_int("confidence_width", confidence_width, 1, 32)
        self.n = n
        rl = result_layout(id_width, cls_width, confidence_width)
        super().__init__({
            "i": In(stream.Signature(rl)).array(n),
            "o": Out(stream.Signature(merged_layout(n, id_width, cls_width, confidence_width))),
        })

    @property
    def latency(self) -> int:
        """Cycles from a result being accepted to it being valid on ``o``."""
        return 1

    @property
    def initiation_interval(self) -> int:
        """Cycles per result in steady state with two or more inputs busy (one input alone: 2)."""
        return 1

    def model(self, inputs) -> dict:
        return merge_model(inputs)

    def elaborate(self, platform):
        m = Module()
        n = self.n
        last = Signal(range(n), init=n - 1)  # last granted input
        take = ~self.o.valid | self.o.ready
        granted = Signal(n)                  # one-hot: the input whose result is taken next
        fire = Signal(n)
        for k in range(n):
            m.d.comb += [self.i[k].ready.eq(granted[k] & take),
                         fire[k].eq(self.i[k].valid & self.i[k].ready)]

        # the next grant, on a cycle with no grant pending or one taken: round-robin, the first
        # input valid (and not being taken) after the last granted one (this cycle's, if any)
        raw = Cat(*(self.i[k].valid for k in range(n)))
        valid = Signal(n)
        m.d.comb += valid.eq(raw & ~fire)
        # (one expression, not a default and overrides: Icarus does not run such an
        # ``always @*`` block at time 0, and ``after`` stayed X until an input changed)
        after = Signal(range(n))
        taken = last
        for k in range(n):
            taken = Mux(fire[k], k, taken)
        m.d.comb += after.eq(taken)
        pick = Signal(n)
        for k in range(n):
            # input k wins if valid and no input strictly between `after` and k is valid
            terms = []
            for s in range(n):  # s = after
                between = [(s + d) % n for d in range(1, (k - s) % n or n)]
                others = 0
                for j in between:
                    others = others | valid[j]
                terms.append((after == s) & ~others)
            cond = 0
            for t in terms:
                cond = cond | t
            m.d.comb += pick[k].eq(valid[k] & cond)
        # (and when the granted input is not valid, which a stream's source may not do: the
        # merge then arbitrates again rather than wait on it for ever)
        with m.If(~(granted & raw).any() | fire.any()):
            m.d.sync += granted.eq(pick)

        with m.If(take):
            m.d.sync += self.o.valid.eq(0)
        for k in range(n):
            with m.If(fire[k]):
                p = self.i[k].payload
                m.d.sync += [self.o.valid.eq(1), last.eq(k),
                             self.o.payload.id.eq(p.id), self.o.payload.exit_index.eq(k),
                             self.o.payload.cls.eq(p.cls),
                             self.o.payload.confidence.eq(p.confidence)]
        return m
