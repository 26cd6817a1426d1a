"""The early-exit decision unit: logits in, one {id, cls, exit, confidence} result per sample out.

Implements `exitgate.numerics.decide` bit-exactly (ARCHITECTURE 2.5): ``e_j = LUT[k_j]`` with
``k_j = min(round_half_up((z_max - z_j) / 2**(f-g)), K-1)``, ``S = sum_j e_j``, the confidence
``q = floor(2**(E+B) / S)`` from a small sequential (restoring, one quotient bit per cycle)
divider, and ``exit iff t * S <= 2**(E+B)``. The exit test needs no multiplier: for an integer
``t`` and ``S > 0`` (``S >= e_max``), ``t * S <= 2**(E+B)`` iff ``t <= 2**(E+B) / S`` iff
``t <= q``, so it is a ``B+1``-bit compare of the threshold with the divider's quotient,
made bit-serially (MSB first) as the divider decides each quotient bit.

Ports (``C`` = classes, ``W`` = logit_width, ``B`` = threshold_bits):

    i             In   activation_signature(1, W, signed_data=True, id_width)   one logit per beat,
                       ``C`` beats per sample (beats are counted; ``first``/``last`` are not checked,
                       the id is taken from the first beat)
    o             Out  stream of `decision_layout`: {id, cls, exit, confidence}   one beat per sample
    threshold     In   B+1   new threshold register value t (meaningful range 1..2**B)
    threshold_we  In   1     write ``threshold`` into the threshold register
    mode          In   2     new mode: 0 threshold, 1 never exit, 2 always exit (3 is ignored)
    mode_we       In   1     write ``mode`` into the mode register

When a write takes effect: a sample uses the register values held on the cycle its first logit is
accepted. A write on cycle n is seen by every sample whose first logit is accepted on cycle n+1 or
later; a sample whose first logit is accepted on cycle n or earlier uses the old value.

Pipeline (three stages, each with its own registers, so three samples can be in flight):
collect (running max/argmax, ``C`` cycles, one logit per cycle) -> sum (one logit a cycle
through index register -> LUT read register -> accumulator, ``C + 2`` cycles) -> divide + decide
(``B + 1`` quotient bits, one a cycle, the exit test on the last, then the result waits for
``o.ready``; the stage takes the next sum once its result has left, so ``o.ready`` reaches only
the result's valid flag, not the stages' enables: Fmax).
No path has more than one carry chain and a compare with a constant, or an add-and-compare,
between registers (Fmax): the LUT index's rounding term is added to the max as it is collected
(``zmax_h = z_max + 2**(s-1)``, a register beside ``z_max``), so the index of ``z_j`` is
``min((zmax_h - z_j) >> s, K-1)``, one subtraction and a compare with a constant. With
``bound=True`` (for boards with flip-flops to spare: the compiler sets it on deep boards) the
saturation's bound is added as the max is collected too (``zmax_c = zmax_h - (K << s)``,
another register beside it, ``W_c`` bits, normally ``W + 2``, in each logit store), so that
``K-1`` is chosen by a compare of ``z_j`` with ``zmax_c`` beside the subtraction, not by one
after it.
Initiation interval ``max(C + 2, B + 3)`` cycles per sample; latency ``C + B + 5`` cycles from the
acceptance of a sample's last logit to its result being valid (no stalls).

Logit store (``store=``): ``"double"`` (the default, above) keeps two copies of a sample's logits,
the collect registers ``z1`` (logit ``j`` written into slot ``j``) and the sum stage's shift
register ``z2`` (plus its rounded max ``zmaxh2``,
``W_h`` bits, normally ``W + 1``, and with ``bound`` ``zmaxc2``), so that
collecting sample n+1 overlaps summing sample n: ``2 * C * W`` flip-flops and a ``C * W``-bit load
mux. ``"single"`` keeps one: the sum stage reads the logits and the max straight out of the collect
registers, shifting that one store as it issues, and only the sample's id, argmax, threshold and
mode are copied on to it (they are overwritten by the next sample's first logit). No ``z2``, no
``zmaxh2`` (nor ``zmaxc2``), no load mux, no one-hot slot register: ``C * W + W_h + C - 1``
flip-flops fewer (``+ W_c`` with ``bound``; ``i.ready`` is a register here) and about ``C * W``
LUTs fewer. It is meant for small devices whose logits come from a folded layer far
slower than the unit, where the overlap buys nothing. Ports, results and the write semantics are
those of ``"double"``; the timing differs:

    collect   ``C`` cycles, one logit a cycle; ``i.ready`` (registered) falls after the last
    sum       takes the sample on the cycle after its last logit is accepted, if the sum stage is
              free (else ``i.ready`` stays low until it is), and reads one logit a cycle from that
              cycle on (``C`` cycles; the sum is complete two cycles after the last). ``i.ready``
              is high again on the cycle the last logit is read: the next sample's first logit
              can be accepted on it
    divide    as above (``B + 1`` cycles, then the result waits for ``o.ready``); it overlaps
              collecting the next sample

Initiation interval ``max(2 * C - 1, B + 3)`` cycles per sample; latency ``C + B + 4`` cycles from
the acceptance of a sample's last logit to its result being valid (no stalls). At most three
samples are in flight, as with ``"double"``: one being divided, one whose sum is completing (or
waiting for the divider) and one being collected.

``"ram"`` is ``"single"`` with the one store in a memory of ``C`` words with a single port, on
iCE40 the UP5K's SPRAM (`spram_blocks` SB_SPRAM256KA side by side; elsewhere, and in simulation,
an amaranth ``Memory``): no ``C * W`` logit flip-flops at all. Logit ``j`` is written into word
``j``; the sum stage reads one word a cycle, registers the read data, and registers the LUT
index from that a cycle later. Reads and writes never share a cycle: ``i.ready`` rises two
cycles after the sample's last read (two cycles later than ``"single"``). Initiation interval
``max(2 * C + 1, B + 3)``; latency ``C + B + 6``. The compiler uses it where the board has SPRAM
for every unit's store (`exitgate.compiler.codegen.logit_ram`) and the unit keeps up with the
stage that feeds it (`exitgate.compiler.codegen.decision_store`).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import ClockSignal, Const, Instance, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..numerics import MODE_ALWAYS, MODE_NEVER, MODE_THRESHOLD, DecisionSpec, decide
from .counters import flagged_counter
from .stream import activation_signature

__all__ = ["ExitDecision", "decision_layout", "decision_model", "STORES", "spram_blocks"]

STORES = ("double", "single", "ram")


def spram_blocks(logit_width: int) -> int:
    """iCE40UP5K SPRAM blocks (16-bit words) the ``"ram"`` logit store of ``logit_width``-bit
    logits takes on iCE40."""
    return -(-logit_width // 16)


def _has_spram(platform) -> bool:
    """An iCE40 UltraPlus platform (amaranth's ``LatticePlatform``: family "iCE40", device
    "iCE40UP..."), whose SPRAM the ``"ram"`` store uses."""
    return (str(getattr(platform, "family", "")).lower() == "ice40"
            and str(getattr(platform, "device", "")).upper().startswith("ICE40UP"))


def _cls_width(classes: int) -> int:
    return max(1, (classes - 1).bit_length())


def decision_layout(id_width: int, classes: int, threshold_bits: int) -> data.StructLayout:
    """Result payload: id (id_width), cls (argmax), exit (1), confidence (threshold_bits + 1)."""
    return data.StructLayout({
        "id": id_width,
        "cls": _cls_width(classes),
        "exit": 1,
        "confidence": threshold_bits + 1,
    })


def decision_model(spec: DecisionSpec, samples) -> list[dict]:
    """Golden model: ``samples`` is an iterable of (id, logits, threshold_reg, mode); returns one
    dict {id, cls, exit, confidence} per sample, via `exitgate.numerics.decide`."""
    out = []
    for sid, logits, t, mode in samples:
        d = decide(spec, np.asarray(logits, dtype=np.int64).reshape(1, -1), int(t), int(mode))
        out.append({"id": int(sid), "cls": int(d.cls[0]), "exit": int(bool(d.exit[0])),
                    "confidence": int(d.confidence[0])})
    return out


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")


class ExitDecision(wiring.Component):
    """Early-exit decision unit (see module docstring for ports, timing and write semantics).

    spec: `DecisionSpec` (classes, f, g, E, B and the LUT). logit_width: bits of a signed logit
    (2..32). id_width: bits of the sample id (1..32). threshold: initial threshold register value
    t (1..2**B). mode: initial mode (0 threshold, 1 never, 2 always). store: ``"double"`` (two
    logit stores, collect overlaps sum), ``"single"`` (one store, smaller, slower) or ``"ram"``
    (that one store in a one-port memory: SPRAM on an iCE40 UltraPlus); see the module
    docstring.
    """

    def __init__(self, spec, *, logit_width: int, id_width: int, threshold: int,
                 mode: int = MODE_THRESHOLD, store: str = "double", bound: bool = False):
        if not isinstance(spec, DecisionSpec):
            raise TypeError(f"spec must be a DecisionSpec, got {spec!r}")
        _check_int("logit_width", logit_width, 2, 32)
        _check_int("id_width", id_width, 1, 32)
        if not isinstance(threshold, int) or isinstance(threshold, bool) \
                or not 1 <= threshold <= 1 << spec.threshold_bits:
            raise ValueError(f"threshold must be an integer register value in "
                             f"1..{1 << spec.threshold_bits} (round(T * 2**{spec.threshold_bits})), "
                             f"got {threshold!r}")
        if mode not in (MODE_THRESHOLD, MODE_NEVER, MODE_ALWAYS) or isinstance(mode, bool):
            raise ValueError(f"mode must be 0 (threshold), 1 (never) or 2 (always), got {mode!r}")
        if not isinstance(store, str) or store not in STORES:
            raise ValueError(f"store must be 'double', 'single' or 'ram', got {store!r}")
        self.spec = spec
        self.store = store
        self.bound = bool(bound)
        self.logit_width = logit_width
        self.id_width = id_width
        self.threshold_init = threshold
        self.mode_init = mode
        b = spec.threshold_bits
        super().__init__({
            "i": In(activation_signature(1, logit_width, signed_data=True, id_width=id_width)),
            "o": Out(stream.Signature(decision_layout(id_width, spec.classes, b))),
            "threshold": In(b + 1),
            "threshold_we": In(1),
            "mode": In(2),
            "mode_we": In(1),
        })

    @property
    def initiation_interval(self) -> int:
        """Cycles per sample in steady state (input always valid, output always ready)."""
        if self.store == "ram":
            return max(2 * self.spec.classes + 1, self.spec.threshold_bits + 3)
        if self.store == "single":
            return max(2 * self.spec.classes - 1, self.spec.threshold_bits + 3)
        return max(self.spec.classes + 2, self.spec.threshold_bits + 3)

    @property
    def latency(self) -> int:
        """Cycles from the acceptance of a sample's last logit to its result being valid."""
        if self.store == "ram":
            return self.spec.classes + self.spec.threshold_bits + 6
        if self.store == "single":
            return self.spec.classes + self.spec.threshold_bits + 4
        return self.spec.classes + self.spec.threshold_bits + 5

    def model(self, samples) -> list[dict]:
        """`decision_model` for this unit's spec."""
        return decision_model(self.spec, samples)

    def _exit_rule(self, t_lt_q, t_eq_q):
        """The threshold test ``t * S <= 2**(E+B)`` on the threshold register ``t``, as
        ``t <= q`` on the confidence ``q = floor(2**(E+B) / S)`` (see module docstring), from
        the bit-serial compare of the two: ``t < q`` or ``t == q``."""
        return t_lt_q | t_eq_q

    def _half(self) -> int:
        """The rounding term of the LUT index, ``2**(s-1)`` for a right shift ``s > 0``, else 0."""
        s = self.spec.index_shift
        return 1 << (s - 1) if s > 0 else 0

    def _clamp_offset(self) -> int:
        """``T`` such that the LUT index ``(zmax_h - z) >> s`` (``<< -s`` for ``s < 0``) is at
        least ``K`` exactly when ``zmax_h - z >= T``: ``K << s``, or ``ceil(K / 2**-s)``."""
        K, s = self.spec.lut_size, self.spec.index_shift
        return K << s if s >= 0 else -(-K // (1 << -s))

    def _index(self, zmax_h, zmax_c, z):
        """LUT index of logit ``z`` (numerics.lut_index of ``z_max - z``), from the sample's
        max with the rounding term already added (``zmax_h = z_max + 2**(s-1)``, registered with
        the max): ``(z_max - z + 2**(s-1)) >> s`` is one subtraction, saturating at ``K-1``
        by a compare with a constant after it; with ``bound``, when ``z <= zmax_c``,
        ``zmax_c = zmax_h - T`` (`_clamp_offset`) also registered with the max: a compare of two
        registers beside the subtraction, not after it (Fmax: one carry chain and a mux between
        registers). ``zmax_c`` is None without ``bound``."""
        spec = self.spec
        s = spec.index_shift
        t = zmax_h - z                  # >= 2**(s-1) (z <= z_max)
        k = t >> s if s > 0 else t << -s
        if zmax_c is None:
            return Mux(k > spec.lut_size - 1, spec.lut_size - 1, k)
        return Mux(z <= zmax_c, spec.lut_size - 1, k)

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        C, W, B, E = spec.classes, self.logit_width, spec.threshold_bits, spec.exp_bits
        cw = _cls_width(C)
        ram = self.store == "ram"
        single = self.store in ("single", "ram")    # one copy of the logits

        t_reg = Signal(B + 1, init=self.threshold_init)
        mode_reg = Signal(2, init=self.mode_init)
        with m.If(self.threshold_we):
            m.d.sync += t_reg.eq(self.threshold)
        with m.If(self.mode_we & (self.mode != 3)):
            m.d.sync += mode_reg.eq(self.mode)

        # Stage 1: collect one sample's logits in a shift register, with running max and argmax.
        z1 = [] if ram else [Signal(signed(W), name=f"z1_{j}") for j in range(C)]
        zmax1, arg1 = Signal(signed(W)), Signal(cw)
        half = self._half()
        hshape = signed(max(W, half.bit_length() + 1) + 1)
        zmaxh1 = Signal(hshape)                     # zmax1 + half (the LUT index's rounding)
        clamp = self._clamp_offset()
        cshape = signed(max(W, half.bit_length() + 1, clamp.bit_length() + 1) + 2)
        # zmaxh1 - clamp (the index's saturation bound; only with ``bound``)
        zmaxc1 = Signal(cshape) if self.bound else None
        id1, t1, mode1 = Signal(self.id_width), Signal(B + 1), Signal(2)
        # the logit count, stepped on each accepted logit, with cnt1 == C - 1 (last1) and
        # cnt1 == 0 (first1) as registers of their own (`flagged_counter`; Fmax: the running
        # max's enable is then one LUT after the compare, not a LUT for the count's compare and
        # another for the enable)
        cnt1, last1, first1 = flagged_counter(m, self.i.valid & self.i.ready, C, "cnt1")
        full1 = Signal()
        # Stage 2: sum the LUT values, pipelined: index (registered) -> LUT read (registered)
        # -> accumulate. One logit issued a cycle; the sum is complete two cycles after the last.
        # Single store: stage 2 reads stage 1's z1 (shifted once per logit issued) and zmax1,
        # which take no new sample until the last logit is issued; id, argmax, t and mode are
        # still copied, since the next sample's first logit overwrites them on that cycle.
        if single:
            # ("ram": zmaxh2 and zmaxc2 are registers of their own, see stage 1)
            z2, zmaxh2, zmaxc2, arg2 = z1, zmaxh1, zmaxc1, Signal(cw)
        else:
            z2 = [Signal(signed(W), name=f"z2_{j}") for j in range(C)]
            zmaxh2, arg2 = Signal(hshape), Signal(cw)
            zmaxc2 = Signal(cshape) if self.bound else None
        id2, t2, mode2 = Signal(self.id_width), Signal(B + 1), Signal(2)
        j2 = Signal(range(C))
        acc2 = Signal(spec.sum_bits)
        busy2, issuing2 = Signal(), Signal()
        k2 = Signal(range(spec.lut_size))           # LUT index of the logit issued last cycle
        kv2, klast2 = Signal(), Signal()            # ... valid; it was the sample's last logit
        ev2, elast2 = Signal(), Signal()            # the LUT value read out is valid; the last
        # "ram": the word issued last cycle is read out (rv2; the last: rlast2), and its
        # registered copy is valid (zv2, zlast2)
        rv2, rlast2, zv2, zlast2 = Signal(), Signal(), Signal(), Signal()
        # Stage 3: divide (B+1 quotient bits, one a cycle), then decide.
        id3, cls3, exit3 = Signal(self.id_width), Signal(cw), Signal()
        # the threshold, shifted a bit left a step, and t's bits so far below (lt3) / equal to
        # (eq3) the quotient's (an MSB-first compare of t with the quotient as it is decided)
        ts3, lt3, eq3 = Signal(B + 1), Signal(), Signal()
        # registers of stage 3: the mode is threshold (thr3), else the fixed outcome (fixed3:
        # exit unless the mode is never); the division is at its last step (last3, n3 == B)
        thr3, fixed3, last3 = Signal(), Signal(), Signal()
        s3 = Signal(spec.sum_bits)
        rem3 = Signal(spec.sum_bits + 1)
        q3 = Signal(B + 1)
        q_next = Signal(B + 1)  # q3 with the quotient bit of this cycle appended
        n3 = Signal(range(B + 1))
        busy3, valid3 = Signal(), Signal()

        s3_free = ~busy3 & ~valid3
        last2 = busy2 & elast2
        s3_load = last2 & s3_free
        # "double": the sum stage takes the next sample on the cycle the divider takes its sum
        # (it is the stage that sets the initiation interval); "single": once it is free,
        # which is the same cycle unless the divider's result is held up by back-pressure
        # (collecting the next sample takes C cycles from the last issue): a shorter enable
        # for the C x W store's shift (Fmax)
        s2_free = ~busy2 if single else ~busy2 | s3_load
        s2_load = full1 & s2_free
        if single:
            # stage 2 issues (reads z1[0]) on the cycle it takes the sample, and then while
            # issuing2; j2 is 0 on the first of these cycles
            issue2 = Signal()
            m.d.comb += issue2.eq(issuing2 | s2_load)
        else:
            issue2 = issuing2

        # --- stage 1
        logit = self.i.payload.data[0]
        accept = Signal()
        m.d.comb += accept.eq(self.i.valid & self.i.ready)
        if ram:
            # The store is a memory of C words with one port (an iCE40UP5K's SPRAM): logit j
            # is written into word j (the count), and stage 2 reads word j2 on each issue;
            # never both on one cycle: i.ready (registered) falls after the sample's last
            # logit and rises only after its last read, so the next sample's first logit is
            # accepted two cycles after that read at the earliest.
            ready1 = Signal(init=1)
            m.d.comb += self.i.ready.eq(ready1)
            with m.If(self.i.valid & ready1 & last1):
                m.d.sync += ready1.eq(0)                    # full
            # (rv2 & rlast2: the cycle after the last read, when its data is registered. A
            # cycle later than needed: this kept the collect stage's max for the last index
            # when the index still read it; zmaxh2 is now a register of its own, so the next
            # sample could come a cycle sooner, which buys nothing where the producer sets the
            # pace: the compiler uses this store only there)
            with m.If(rv2 & rlast2):
                m.d.sync += ready1.eq(1)
            zaddr, we = Signal(range(C)), Signal()
            zread = Signal(signed(W))       # the word read on the cycle before
            m.d.comb += [zaddr.eq(Mux(issue2, j2, cnt1)), we.eq(self.i.valid & ready1)]
            if _has_spram(platform):
                # SB_SPRAM256KA (16 bits a block, as many side by side as W needs): an
                # amaranth Memory always has an initial value, which an SPRAM cannot take, so
                # yosys would not map one there. DATAOUT is registered and holds while the
                # block is not selected; a write leaves it undefined, and no read data is used
                # after a write before the next read.
                blocks = spram_blocks(W)
                data, din, addr14 = Signal(16 * blocks), Signal(16 * blocks), Signal(14)
                m.d.comb += [din.eq(logit.as_unsigned()), addr14.eq(zaddr),
                             zread.eq(data[:W].as_signed())]
                for b in range(blocks):
                    m.submodules[f"zmem{b}"] = Instance(
                        "SB_SPRAM256KA", i_ADDRESS=addr14, i_DATAIN=din[16 * b:16 * (b + 1)],
                        i_MASKWREN=Const(0b1111, 4), i_WREN=we, i_CHIPSELECT=we | issue2,
                        i_CLOCK=ClockSignal("sync"), i_STANDBY=Const(0, 1),
                        i_SLEEP=Const(0, 1), i_POWEROFF=Const(1, 1),
                        o_DATAOUT=data[16 * b:16 * (b + 1)])
            else:
                m.submodules.zmem = zmem = Memory(shape=signed(W), depth=C, init=[])
                wr = zmem.write_port()
                rd = zmem.read_port(domain="sync")
                m.d.comb += [wr.addr.eq(zaddr), wr.data.eq(logit), wr.en.eq(we),
                             rd.addr.eq(zaddr), rd.en.eq(issue2), zread.eq(rd.data)]
        elif single:
            # The store takes the next sample's first logit on the cycle its last is issued
            # (C >= 2: never on the cycle stage 2 takes the sample, never while it is full):
            # i.ready is Mux(issuing2, j2 == C - 1, ~full1), registered (Fmax: it gates the
            # running max's enable behind the compare). Issuing never stalls (the sum only
            # waits for stage 3 after the last logit).
            ready1 = Signal(init=1)
            m.d.comb += self.i.ready.eq(ready1)
            with m.If(self.i.valid & ready1 & last1):
                m.d.sync += ready1.eq(0)                    # full
            with m.If(s2_load):
                m.d.sync += ready1.eq(C == 2)               # j2 goes to 1
            with m.If(issuing2):
                m.d.sync += ready1.eq((j2 == C - 2) | (j2 == C - 1))
            # one shift register for both stages: a logit in and/or a logit issued, one shift
            with m.If((self.i.valid & self.i.ready) | issue2):
                m.d.sync += [z1[j].eq(z1[j + 1]) for j in range(C - 1)]
                m.d.sync += z1[C - 1].eq(logit)
        else:
            m.d.comb += self.i.ready.eq(~full1 | s2_load)
            # logit j goes straight into z1[j] (where C shifts would have taken it): slot j's
            # enable is the accept and a one-hot slot register, so the accept drives C enables
            # and each of them W flip-flops, rather than one enable fanned out to all C * W
            # (Fmax: that fan-out's routing was a critical path on ECP5)
            slot1 = Signal(C, init=1)
            with m.If(accept):
                m.d.sync += slot1.eq(slot1.rotate_left(1))
            for j in range(C):
                with m.If(accept & slot1[j]):
                    m.d.sync += z1[j].eq(logit)
        with m.If(s2_load):
            m.d.sync += full1.eq(0)
        # The running max, its rounded form, (``bound``) its saturation bound and the argmax
        # are not registers with an enable: the accepted logit goes into candidate registers
        # (cz1 ...), whether it is the new max into a flag (new1), and the values above are
        # Mux(new1, candidate, held), the held registers (hz1 ...) taking them every cycle.
        # They have the cycle timing registers loaded on the accept would have. (Fmax: the
        # compare in front of a ~70-flip-flop enable, through a global buffer, was the iCE40
        # critical path; now the compare ends at the one flag.)
        # logit > zmax1 as an unsigned compare of the two in offset binary (sign bit
        # inverted, which the carry chain's own LUTs take in): the chain's carry out is the
        # result, with no sign and overflow logic after it (Fmax: this compare and the enable
        # behind it were the ECP5 design's critical path)
        new1 = Signal()
        cz1, hz1 = Signal.like(zmax1, name="cz1"), Signal.like(zmax1, name="hz1")
        carg1, harg1 = Signal.like(arg1, name="carg1"), Signal.like(arg1, name="harg1")
        pairs = [(zmax1, cz1, hz1), (arg1, carg1, harg1)]
        cand = [cz1.eq(logit), carg1.eq(cnt1)]
        if ram:
            # the rounded max and (``bound``) the bound as registers of their own, taken from
            # the held max every cycle: the index reads them from the third cycle after the
            # sample's last logit on, when they hold its max, until its last index (the next
            # sample's first logit is accepted two cycles after the last read at the earliest)
            zmaxh2 = Signal(hshape, name="zmaxh2")
            m.d.sync += zmaxh2.eq(hz1 + half)
            if self.bound:
                zmaxc2 = Signal(cshape, name="zmaxc2")
                m.d.sync += zmaxc2.eq(hz1 + (half - clamp))
        else:
            czh1, hzh1 = Signal.like(zmaxh1, name="czh1"), Signal.like(zmaxh1, name="hzh1")
            pairs.append((zmaxh1, czh1, hzh1))
            cand.append(czh1.eq(logit + half))
            if self.bound:
                czc1, hzc1 = Signal.like(zmaxc1, name="czc1"), Signal.like(zmaxc1, name="hzc1")
                pairs.append((zmaxc1, czc1, hzc1))
                cand.append(czc1.eq(logit + (half - clamp)))
        for value, cnd, held in pairs:
            m.d.comb += value.eq(Mux(new1, cnd, held))
            m.d.sync += held.eq(value)
        sign = 1 << (W - 1)
        gt = Signal()
        m.d.comb += gt.eq((logit.as_unsigned() ^ sign) > (zmax1.as_unsigned() ^ sign))
        m.d.sync += new1.eq(accept & (first1 | gt))
        with m.If(accept):
            m.d.sync += cand
            with m.If(first1):
                m.d.sync += [id1.eq(self.i.payload.id), t1.eq(t_reg), mode1.eq(mode_reg)]
            with m.If(last1):
                m.d.sync += full1.eq(1)

        # --- stage 2
        # in logic: yosys would otherwise fold e2 into a block-RAM read port, and block RAM is
        # the scarce resource on small boards (the weights need it)
        lut = Memory(shape=unsigned(E + 1), depth=spec.lut_size, init=list(spec.lut),
                     attrs={"rom_style": "logic"})
        m.submodules.lut = lut
        # an asynchronous ROM (logic, not block RAM) read into a register: e2 is LUT[k2] a cycle
        # later
        lrd = lut.read_port(domain="comb")
        e2 = Signal(E + 1)
        m.d.comb += lrd.addr.eq(k2)
        s_next = acc2 + e2
        if ram:
            # the memory's read takes a cycle: the logit issued last cycle is read out now (rv2)
            # into a register (zr2, valid the cycle after: zv2), and its LUT index is
            # registered from that (Fmax: on the iCE40 the SPRAM's clock-to-out and the route
            # from it were in front of the index's subtraction)
            zr2 = Signal(signed(W))
            iv2, ilast2 = zv2, zlast2
        else:
            iv2, ilast2 = issue2, issue2 & (j2 == C - 1)
        with m.If(~last2 | s3_free):   # else the sum waits for stage 3 (nothing in flight)
            m.d.sync += [kv2.eq(iv2), klast2.eq(ilast2),
                         ev2.eq(kv2), elast2.eq(kv2 & klast2), e2.eq(lrd.data)]
            if ram:
                m.d.sync += [rv2.eq(issue2), rlast2.eq(issue2 & (j2 == C - 1)), zv2.eq(rv2),
                             zlast2.eq(rlast2)]
            with m.If(ev2):
                m.d.sync += acc2.eq(s_next)
        # an issue never waits for stage 3: while the sum waits (last2 & ~s3_free) the sample's
        # logits have all been issued and no next sample is taken (s2_free is low), so issue2
        # is low; outside the wait above, the index register's enable is issue2 alone (Fmax)
        if ram:
            with m.If(rv2):
                m.d.sync += zr2.eq(zread)
            with m.If(zv2):
                m.d.sync += k2.eq(self._index(zmaxh2, zmaxc2, zr2))
        with m.If(issue2):
            m.d.sync += j2.eq(j2 + 1)
            if not ram:
                m.d.sync += k2.eq(self._index(zmaxh2, zmaxc2, z2[0]))
            if not single:      # (single: stage 1 shifts the store)
                m.d.sync += [z2[j].eq(z2[j + 1]) for j in range(C - 1)]
            with m.If(j2 == C - 1):
                m.d.sync += [issuing2.eq(0), j2.eq(0)]
        with m.If(s2_load):
            if single:      # logit 0 is issued on this cycle (above): j2 goes on to 1
                m.d.sync += [arg2.eq(arg1), id2.eq(id1), t2.eq(t1), mode2.eq(mode1),
                             acc2.eq(0), busy2.eq(1), issuing2.eq(1)]
            else:
                m.d.sync += [z2[j].eq(z1[j]) for j in range(C)]
                m.d.sync += [zmaxc2.eq(zmaxc1)] if self.bound else []
                m.d.sync += [zmaxh2.eq(zmaxh1), arg2.eq(arg1), id2.eq(id1), t2.eq(t1),
                             mode2.eq(mode1), j2.eq(0), acc2.eq(0), busy2.eq(1), issuing2.eq(1)]
        with m.Elif(s3_load):
            m.d.sync += busy2.eq(0)

        # --- stage 3: restoring division of 2**(E+B) by S, starting from the remainder
        # 2**(E-1) so that the first step's doubling yields 2**E (S >= 2**E: the first quotient
        # bit is S == 2**E); the exit test on the last step.
        r2 = rem3 << 1
        trial = Signal(signed(spec.sum_bits + 3))   # one subtractor: its sign is the compare
        m.d.comb += trial.eq(r2 - s3)
        ge = ~trial[-1]
        m.d.comb += q_next.eq((q3 << 1) | ge)
        tb = ts3[B]                     # the bit of t this step's quotient bit is compared with
        lt_next, eq_next = Signal(), Signal()
        m.d.comb += [lt_next.eq(lt3 | (eq3 & ~tb & ge)), eq_next.eq(eq3 & (tb == ge))]
        with m.If(s3_load):
            m.d.sync += [id3.eq(id2), cls3.eq(arg2), s3.eq(s_next), q3.eq(0),
                         rem3.eq(1 << (E - 1)), n3.eq(0), last3.eq(B == 0), busy3.eq(1),
                         valid3.eq(0), ts3.eq(t2), lt3.eq(0), eq3.eq(1),
                         thr3.eq(mode2 == MODE_THRESHOLD), fixed3.eq(mode2 != MODE_NEVER)]
        with m.Elif(busy3):
            m.d.sync += [q3.eq(q_next), rem3.eq(Mux(ge, trial, r2)), n3.eq(n3 + 1),
                         last3.eq(n3 == B - 1)]
            # the threshold test, bit-serially beside the divider: t's bits, MSB first, against
            # the quotient's as each is decided; on the last step the test is one LUT after the
            # subtractor's sign (Fmax: a B+1-bit compare of t with the quotient in front of
            # the exit register was the iCE40 critical path, also as four registered compares
            # of the last two bits' outcomes, which yosys mapped to a seven-LUT chain)
            m.d.sync += [ts3.eq(ts3 << 1), lt3.eq(lt_next), eq3.eq(eq_next)]
            with m.If(last3):
                # the mode folded in beside the test (only ``ge`` follows the subtractor)
                m.d.sync += [busy3.eq(0), valid3.eq(1),
                             exit3.eq(Mux(thr3, self._exit_rule(lt_next, eq_next), fixed3))]
        with m.Elif(valid3 & self.o.ready):
            m.d.sync += valid3.eq(0)

        m.d.comb += [
            self.o.valid.eq(valid3),
            self.o.payload.id.eq(id3),
            self.o.payload.cls.eq(cls3),
            self.o.payload.exit.eq(exit3),
            self.o.payload.confidence.eq(q3),
        ]
        return m
