"""Counter idioms shared by the stream blocks (one implementation, not one per block)."""

from __future__ import annotations

from amaranth.hdl import Const, Mux, Signal

__all__ = ["step_raster", "step_replay", "flagged_counter"]


def flagged_counter(m, step, limit: int, name: str):
    """A 0..limit-1 wrap-around counter stepped on ``step``, with registered flags ``last`` and
    ``zero`` (value is limit-1 / 0) computed a step ahead, so that no compare lies between the
    counter and the logic the flags drive (Fmax). Returns ``(value, last, zero)``; a one-value
    counter is constants."""
    if limit == 1:
        return Const(0, 1), Const(1), Const(1)
    value = Signal(range(limit), name=name)
    last, zero = Signal(name=f"{name}_last"), Signal(name=f"{name}_zero", init=1)
    with m.If(step):
        with m.If(last):
            m.d.sync += [value.eq(0), last.eq(0), zero.eq(1)]
        with m.Else():
            m.d.sync += [value.eq(value + 1), last.eq(value == limit - 2), zero.eq(0)]
    return value, last, zero


def step_raster(m, counters) -> None:
    """Advance nested wrap-around counters by one step (call inside the enabling ``m.If``).

    ``counters``: [(signal, limit), ...], innermost first; each counts 0..limit-1 and carries
    into the next when it wraps (e.g. channel group, column, row of a raster scan)."""
    (sig, limit), rest = counters[0], counters[1:]
    if not rest:
        m.d.sync += sig.eq(Mux(sig == limit - 1, 0, sig + 1))
        return
    with m.If(sig == limit - 1):
        m.d.sync += sig.eq(0)
        step_raster(m, rest)
    with m.Else():
        m.d.sync += sig.eq(sig + 1)


def step_replay(m, issue, full, rb, nf, sf, nf_max: int, sf_max: int):
    """The replay side of a double-buffered operand bank: on ``issue``, step ``sf`` (chunk within
    a pass) and ``nf`` (pass); after the last chunk of the last pass release bank ``rb`` (clear
    its ``full`` bit, move to the next bank). Returns the ``final`` (last chunk) condition."""
    final = (nf == nf_max - 1) & (sf == sf_max - 1)
    with m.If(issue):
        step_raster(m, [(sf, sf_max), (nf, nf_max)])
        with m.If(final):
            # banks are replayed in turn: rb + 1 wraps when the bank count is a power of two
            m.d.sync += [full.bit_select(rb, 1).eq(0), rb.eq(~rb if len(rb) == 1 else rb + 1)]
    return final
