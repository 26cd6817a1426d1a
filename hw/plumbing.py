"""Stream plumbing the compiler uses to wire stages into an early-exit accelerator.

* `StreamFork`: one stream in, ``n`` copies out (an eager fork: each output takes the beat as
  soon as it is ready; the input beat is consumed once every output has taken it).
* `IdTagger`: writes a sample id, taken from an id stream, into every beat of a sample
  (the id is consumed with the sample's last beat).
* `IdCounter`: an always-valid id stream 0, 1, 2, ... (mod 2**width).
* `SkidBuffer`: a register slice (two entries) that cuts the combinational ``ready`` path and
  registers ``valid`` and the payload, at full throughput; the compiler puts one after every
  stage so no ready chain spans more than one stage (Fmax). Its model is the identity.
* `DecisionRouter`: one exit decision in; out to the conditional buffer ({exit}), to the result
  merge (the result, only if the sample exits) and to the next exit's id queue (the id, only if
  the sample continues). Routes that do not apply are skipped; no beat is lost or duplicated.

Each has a pure-Python model (`fork_model`, `tag_model`, `route_model`) used by the tests.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamFork", "SkidBuffer", "IdTagger", "IdCounter", "DecisionRouter", "fork_model",
           "tag_model", "route_model", "skid_model", "SKID_LATENCY"]

#: cycles a beat spends in a `SkidBuffer` (input accepted -> output valid), no back-pressure
SKID_LATENCY = 1


def fork_model(beats, n: int) -> list[list]:
    return [list(beats) for _ in range(n)]


def tag_model(samples, ids) -> list:
    """samples: lists of beat dicts; ids: one per sample -> beats with 'id' set."""
    return [{**beat, "id": i} for sample, i in zip(samples, ids) for beat in sample]


def skid_model(beats) -> list:
    """A skid buffer delivers every beat once, in order, unchanged."""
    return list(beats)


def route_model(decisions, final: bool = False):
    """decisions: dicts with id, cls, exit, confidence -> (buffer, results, ids) sequences."""
    buffer = [] if final else [{"exit": d["exit"]} for d in decisions]
    results = [d for d in decisions if d["exit"] or final]
    ids = [] if final else [d["id"] for d in decisions if not d["exit"]]
    return buffer, results, ids


class StreamFork(wiring.Component):
    """``i`` -> ``o0 .. o{n-1}`` (same signature). n: 2..8."""

    def __init__(self, signature: stream.Signature, n: int = 2):
        self._MustUse__silence = True  # no UnusedElaboratable warning if the check fails
        if not isinstance(n, int) or not 2 <= n <= 8:
            raise ValueError(f"StreamFork: n must be an integer in 2..8, got {n!r}")
        self.n = n
        self._MustUse__silence = False
        super().__init__({"i": In(signature), **{f"o{k}": Out(signature) for k in range(n)}})

    def elaborate(self, platform):
        m = Module()
        outs = [getattr(self, f"o{k}") for k in range(self.n)]
        done = Signal(self.n)
        take = [o.valid & o.ready for o in outs]
        m.d.comb += self.i.ready.eq(Cat(*(done[k] | o.ready for k, o in enumerate(outs))).all())
        for k, o in enumerate(outs):
            m.d.comb += [o.payload.eq(self.i.payload), o.valid.eq(self.i.valid & ~done[k])]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += done.eq(0)
        with m.Else():
            for k in range(self.n):
                with m.If(take[k]):
                    m.d.sync += done[k].eq(1)
        return m


class SkidBuffer(wiring.Component):
    """``i`` -> ``o`` (same stream signature), registered both ways.

    ``i.ready`` is a register (high while the skid entry is empty), ``o.valid`` and ``o.payload``
    are registers, so neither side's combinational path reaches the other. A beat offered while
    the output is blocked is caught in the skid entry; one beat a cycle passes when ``o.ready``
    stays high. Latency `SKID_LATENCY` (1) cycle.

    ``ring=True`` (for wide payloads whose consumer registers them at once): the same two
    entries as a two-slot ring, written in turn and read in turn, ``o.payload`` a mux of the
    two selected by a read-pointer register. The handshake is the same cycle for cycle
    (``i.ready`` = fewer than two held, ``o.valid`` = at least one held, both registers), but the
    consumer's ``o.ready`` only moves the read pointer and the count: no payload flip-flop's
    enable depends on it. Each slot loads the input whenever it is the free slot to be written
    next, an enable that is a register of its own. (Fmax: in the plain form ``~o.valid |
    o.ready`` enables every payload bit of the output register, so a consumer's ``ready`` that
    arrives over a long route fans out to a few hundred clock enables; on the ECP5 digits
    design that was the second conv's window skid buffer, 337 of the 389 endpoints missing
    125 MHz at one nextpnr seed.) The cost is the output mux in front of the consumer instead
    of behind the skid entry: the same LUT count.
    """

    def __init__(self, signature: stream.Signature, *, ring: bool = False):
        self.ring = bool(ring)
        super().__init__({"i": In(signature), "o": Out(signature)})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        if self.ring:
            return self._elaborate_ring(m)
        skid = Signal.like(i.payload, reset_less=True)
        skid_valid = Signal()
        # ``skid_free`` is ~skid_valid, a register of its own: the skid entry's load mux then has
        # another select than the output register's (skid_valid), so yosys does not share the
        # two and keeps the entry's load as a flip-flop enable (a LUT in front of every data
        # bit otherwise: Fmax, where the payload comes straight from a block RAM)
        skid_free = Signal(init=1)
        m.d.comb += i.ready.eq(skid_free)
        # the skid entry loads the input payload on every cycle it is empty, not only when a beat
        # is caught (its enable is then a register, not the downstream ``ready``: Fmax); it is
        # only read once ``skid_valid`` says it holds a beat
        with m.If(skid_free):
            m.d.sync += skid.eq(i.payload)
        with m.If(~o.valid | o.ready):
            with m.If(skid_valid):
                m.d.sync += [o.payload.eq(skid), o.valid.eq(1), skid_valid.eq(0),
                             skid_free.eq(1)]
            with m.Else():
                m.d.sync += [o.payload.eq(i.payload), o.valid.eq(i.valid)]
        with m.Elif(i.valid & skid_free):
            m.d.sync += [skid_valid.eq(1), skid_free.eq(0)]
        return m

    def _elaborate_ring(self, m):
        i, o = self.i, self.o
        slots = [Signal.like(i.payload, reset_less=True, name=f"slot{k}") for k in range(2)]
        count = Signal(range(3))
        ready, valid = Signal(init=1), Signal()         # count < 2, count > 0
        wptr, rptr = Signal(), Signal()
        load = [Signal(init=1, name="load0"), Signal(name="load1")]   # ready & (wptr == k)
        accept, take = Signal(), Signal()
        m.d.comb += [i.ready.eq(ready), o.valid.eq(valid),
                     accept.eq(i.valid & ready), take.eq(valid & o.ready),
                     o.payload.eq(Mux(rptr, slots[1], slots[0]))]
        for k in range(2):
            with m.If(load[k]):
                m.d.sync += slots[k].eq(i.payload)
        count_next, wptr_next = Signal.like(count), Signal()
        m.d.comb += [count_next.eq(count + accept - take), wptr_next.eq(wptr ^ accept)]
        m.d.sync += [count.eq(count_next), wptr.eq(wptr_next), rptr.eq(rptr ^ take),
                     ready.eq(count_next < 2), valid.eq(count_next > 0),
                     load[0].eq((count_next < 2) & ~wptr_next),
                     load[1].eq((count_next < 2) & wptr_next)]
        return m


class IdCounter(wiring.Component):
    """``o``: always-valid stream of ids 0, 1, 2, ... (mod 2**width), advancing on each take."""

    def __init__(self, width: int):
        if not isinstance(width, int) or not 1 <= width <= 32:
            raise ValueError(f"IdCounter: width must be an integer in 1..32, got {width!r}")
        self.width = width
        super().__init__({"o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o.valid.eq(1)
        with m.If(self.o.ready):
            m.d.sync += self.o.payload.eq(self.o.payload + 1)
        return m


class IdTagger(wiring.Component):
    """``i`` (activation stream without id) + ``ids`` (stream of ids) -> ``o`` (with id).

    in_signature / out_signature: activation stream signatures that differ only by the id field.
    """

    def __init__(self, in_signature: stream.Signature, out_signature: stream.Signature,
                 id_width: int):
        self.id_width = id_width
        super().__init__({"i": In(in_signature), "ids": In(stream.Signature(id_width)),
                          "o": Out(out_signature)})

    def elaborate(self, platform):
        m = Module()
        i, o, ids = self.i, self.o, self.ids
        m.d.comb += [
            o.payload.data.eq(i.payload.data),
            o.payload.first.eq(i.payload.first),
            o.payload.last.eq(i.payload.last),
            o.payload.id.eq(ids.payload),
            o.valid.eq(i.valid & ids.valid),
            i.ready.eq(o.ready & ids.valid),
            ids.ready.eq(i.valid & o.ready & i.payload.last),
        ]
        return m


class DecisionRouter(wiring.Component):
    """``i``: decision results {id, cls, exit, confidence} -> ``buffer`` ({exit}),
    ``result`` (exiting samples' results), ``ids`` (continuing samples' ids).
    With ``final=True`` every sample's result goes to ``result`` and there are no
    ``buffer``/``ids`` ports (the last exit takes everything)."""

    def __init__(self, result_layout: data.StructLayout, id_width: int, final: bool = False):
        self.final = final
        members = {"i": In(stream.Signature(result_layout)),
                   "result": Out(stream.Signature(result_layout))}
        if not final:
            members["buffer"] = Out(stream.Signature(data.StructLayout({"exit": 1})))
            members["ids"] = Out(stream.Signature(id_width))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        i = self.i
        if self.final:
            wiring.connect(m, wiring.flipped(i), wiring.flipped(self.result))
            return m
        ex = i.payload.exit
        outs = [(self.buffer, 1), (self.result, ex), (self.ids, ~ex)]
        done = Signal(3)
        m.d.comb += [self.buffer.payload.exit.eq(ex), self.result.payload.eq(i.payload),
                     self.ids.payload.eq(i.payload.id)]
        ok = []
        for k, (o, applies) in enumerate(outs):
            m.d.comb += o.valid.eq(i.valid & applies & ~done[k])
            ok.append(done[k] | ~applies | o.ready)
        m.d.comb += i.ready.eq(ok[0] & ok[1] & ok[2])
        with m.If(i.valid & i.ready):
            m.d.sync += done.eq(0)
        with m.Else():
            for k, (o, _) in enumerate(outs):
                with m.If(o.valid & o.ready):
                    m.d.sync += done[k].eq(1)
        return m
