"""The folded matrix-vector unit shared by `Conv2dStage` and `LinearStage`, the requantiser in
logic, and a lane serialiser.

`MatrixVectorUnit` multiplies a stream of vectors by a constant integer matrix held in on-chip ROM
(``amaranth.lib.memory.Memory`` with ``init``), PE output rows x SIMD vector elements per cycle.
Each vector of ``n = matrix.shape[1]`` elements arrives as a *chunk stream*: ``NF = rows / pe``
passes over the vector, each of ``SF = n / simd`` chunks of ``simd`` elements (chunk ``sf`` of pass
``nf`` holds elements ``sf*simd .. sf*simd+simd-1``; the producer replays the vector NF times).
Pass ``nf`` produces one output beat of ``pe`` lanes: rows ``nf*pe .. nf*pe+pe-1``, either
requantised (`requantise_value`, ``out_bits`` wide) or as raw signed accumulators (``acc_width``).

Pipeline: issue (ROM address, chunk accepted) -> s1 (weights read) -> operand registers ->
product registers -> adder-tree registers (one per two levels of the SIMD adder tree) ->
accumulator (a pass's first chunk starts from the bias) and s2 (a pass's final sum) -> the
requantiser's first stage (`requantise_split`: the rounding and the clamp compares; not for raw
accumulators) -> output register (requantised). No path has more than a multiplier or two adders
between registers (Fmax). The pipeline never stalls: results wait in the output register and ``mvu_fifo_depth - 1``
spare registers behind it, and a pass's last chunk is issued only while one of them is free for
its result (a credit counter, as in the deep form below), so the chunk stream's ``ready`` is one
LUT from this unit's registers and the consumer's ``ready`` reaches only those output registers
and the counter (Fmax: on the iCE40UP5K the ready chain from a stage's consumer through the
MVU's pipeline enable into the frame buffer's counters set the clock). Nothing is lost or
duplicated. One chunk per cycle, so a vector takes ``NF * SF`` cycles; latency chunk-in to
beat-out is `mvu_latency` (6 + floor(ceil(log2 SIMD) / 2); 5 + ... for raw accumulators).

``deep=True`` (for boards with flip-flops to spare and long DSP routes: ECP5) takes the chunks
through a skid buffer, keeps a weight ROM deeper than 16 words in block RAM
(`weight_rom_in_block_ram`: routing congestion), adds two operand registers in front of the products (the first takes the
ROMs' outputs with nothing in between, so an ECP5 build makes it the block RAMs' own output
register, `exitgate.boards.bram_outreg`), lands the products in a register of their own before
the adder tree (the DSPs sit in rows across the die, far from the tree), registers the adder
tree after every level and splits the requantiser into two register stages
(`requantise_split`), and never stalls the pipeline: results leave through an output FIFO
(`mvu_fifo_depth` entries, a buffered `SyncFIFOBuffered`; distributed RAM on ECP5) and a pass's
last chunk is only issued while the FIFO has room for every result
already in flight (a credit counter). So the front pipeline has no enable at all: the DSPs' clock
enables are tied high instead of fanning one enable out to every DSP of a wide MVU, and the chunk
stream's ``ready`` depends only on the MVU's own registers (the fold counter and the credit flag),
never on the consumer's ``ready``. The requantised result is registered before it is written to the
FIFO.
`mvu_latency` 12 + ceil(log2 SIMD); same results and cycles per vector.

The operand, product and adder-tree registers have no reset (the flags riding beside them
say what is valid). On iCE40 that lets yosys' ``ice40_dsp`` pack each product's chunk operand
and product registers into its SB_MAC16 (B register, registered output, held by the pipeline
enable), so the DSP's paths start and end at its own registers.

On an ECP5 platform (``platform.family == "ecp5"``, e.g. the ULX3S) each product is one
MULT18X18D with its own input registers A/B and output register in use (`ecp5_dsp_fits`): the
operand and product registers of the products move into the DSP (yosys' ``synth_ecp5`` maps a
``$mul`` to a combinational MULT18X18D and leaves the registers in the fabric, so the
fabric -> DSP -> fabric routing would set the clock). Same registers, same enable, same latency;
the bias and the flags stay in fabric registers. Elsewhere (``platform=None``: simulation and the
simulators' Verilog; other families; operands wider than 18 or narrower than 2 bits) the products
are plain ``*`` between fabric registers. The DSP registers ignore the ``sync`` reset (RST tied
low; GSR clears them at configuration): harmless, as the flags riding alongside are reset.

``soft=True`` builds every product in logic (`soft_product`: shifted, gated copies of one
operand summed in a tree, which no synthesis tool maps to a DSP) between fabric operand and
product registers: same values, cycles and latency, no DSPs; ``soft=k`` does so for the first
``k`` PE rows only, the others stay in DSPs. The compiler's design-space exploration uses it
(``exitgate compile --soft-multipliers``) for a stage whose next folding would need more DSPs
than the board has left: as many rows in logic as the DSPs fall short (`exitgate.compiler.dse`).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import ClockSignal, Const, Instance, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..numerics import bits_for_range, int_range
from .counters import flagged_counter
from .plumbing import SkidBuffer
from .stream import activation_signature

__all__ = ["requantise_value", "requantise_split", "accumulator_width", "chunk_signature",
           "MatrixVectorUnit", "mvu_latency", "mvu_fifo_depth", "adder_tree_registers",
           "LaneSerialiser", "elements",
           "ecp5_dsp_fits", "ecp5_dsp_family_fits", "soft_product", "soft_rows",
           "weight_rom_in_block_ram", "WEIGHT_ROM_LOGIC_DEPTH"]

#: operand widths a MULT18X18D multiplies (18 x 18, each signed or unsigned; yosys' own ECP5 DSP
#: mapping takes operands of at least 2 bits)
ECP5_DSP_WIDTHS = range(2, 19)


def ecp5_dsp_fits(platform, in_width: int, weight_bits: int) -> bool:
    """Whether `MatrixVectorUnit` elaborated for ``platform`` builds its products as registered
    MULT18X18D instances: an ECP5 platform (``platform.family == "ecp5"``, as amaranth's
    ``LatticePlatform`` sets it) and both operand widths within `ECP5_DSP_WIDTHS`
    (`ecp5_dsp_family_fits` for a family name)."""
    return ecp5_dsp_family_fits(getattr(platform, "family", None), in_width, weight_bits)


def ecp5_dsp_family_fits(family: str | None, in_width: int, weight_bits: int) -> bool:
    """`ecp5_dsp_fits` for a board build of ``family`` (the resource model's view)."""
    return family == "ecp5" and in_width in ECP5_DSP_WIDTHS and weight_bits in ECP5_DSP_WIDTHS


def soft_rows(soft, pe: int, owner: str = "MatrixVectorUnit") -> int:
    """The PE rows whose products are in logic for a ``soft`` argument of `MatrixVectorUnit`
    (and the stages that pass it on): True = all ``pe``, False = none, an int = that many (the
    first ones). ValueError for anything else."""
    rows = pe if soft is True else soft
    if not isinstance(rows, (int, np.integer)) or not 0 <= rows <= pe:
        raise ValueError(f"{owner}: soft must be True, False or a number of PE rows in 0..{pe}, "
                         f"got {soft!r}")
    return int(rows)


def soft_product(a, b):
    """``a * b`` in logic that no synthesis tool maps to a DSP: one copy of the wider operand,
    shifted and gated by each bit of the narrower one, summed in a balanced tree (the narrower
    operand's sign bit, if signed, weighs ``-2**(n-1)``: its copy is subtracted). Returns a value
    equal to ``a * b`` (assign it to a signal of ``(a * b).shape()``). Used by
    `MatrixVectorUnit` with ``soft=True``: products in LUTs where the board's DSPs are spent."""
    sel, val = (a, b) if len(a) <= len(b) else (b, a)
    n = len(sel)
    terms = []
    for j in range(n):
        t = Mux(sel[j], val, 0) << j
        terms.append(-t if (j == n - 1 and sel.shape().signed) else t)
    while len(terms) > 1:
        terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k]
                 for k in range(0, len(terms), 2)]
    return terms[0]


def adder_tree_registers(simd: int, deep: bool = False) -> list[tuple[int, int]]:
    """Where the SIMD adder tree is registered: (level, terms left per PE) after every second
    level of pairwise adds, or after every level (``deep``). The hardware, its latency and its
    resource estimate all use it."""
    out, n, level = [], simd, 0
    while n > 1:
        n, level = (n + 1) // 2, level + 1
        if deep or level % 2 == 0:
            out.append((level, n))
    return out


def mvu_latency(simd: int, deep: bool = False, requant: bool = True) -> int:
    """Cycles from a chunk's acceptance to its output beat (last chunk of a pass, no stalls):
    (``deep``: the input skid buffer ->) issue -> s1 -> operands (three times if ``deep``) ->
    products (``deep``: -> their landing register) -> the `adder_tree_registers` ->
    accumulator/s2 -> (``requant``: the requantiser's first stage ->) output register
    (``deep``: a register of the requantised result, then the output FIFO, whose buffered read
    takes two cycles; a deep MVU has the requantiser's stage for raw accumulators too)."""
    return 5 + 7 * int(deep) + len(adder_tree_registers(simd, deep)) \
        + int(requant and not deep)


def mvu_fifo_depth(simd: int, sf: int, deep: bool = True, requant: bool = True) -> int:
    """Results an MVU can hold once computed, and so its credits: the entries of a deep MVU's
    output FIFO, or (``deep=False``) the output register plus its spare registers. Enough that a
    pass's last chunk never waits while the consumer takes every result at once: a credit is
    held from the issue of the pass's last chunk until its result is read, ``mvu_latency``
    cycles counting the read's (deep: ``mvu_latency - 1``, as the FIFO's buffered read lets a
    result be written while the one before it is read), in which ``SF``-chunk passes issue at
    most ``ceil(cycles / SF)`` last chunks; plus one (`tests/hw/test_mvu_credit.py` checks both:
    one pass every ``SF`` cycles, and exactly this many held under a stalled consumer)."""
    return -(-(mvu_latency(simd, deep, requant) - int(deep)) // sf) + 1


def _quotient(acc, shift: int):
    """``(q, up)`` of `exitgate.numerics.requantise` on a signed value ``acc``: q = acc >> s
    (arithmetic; ``shift <= 0`` is a left shift) and the round-up bit, r = acc mod 2**s >
    2**(s-1) or (r == 2**(s-1) and q odd); ``up`` is None where nothing is shifted out."""
    acc = acc.as_signed()
    if shift <= 0:
        return acc << -shift, None
    q, r, half = acc >> shift, acc[:shift], 1 << (shift - 1)
    return q, (r > half) | ((r == half) & q[0])


def _clamp_range(bits: int, out_signed: bool, relu: bool) -> tuple[int, int]:
    """The requantised value's range: ``bits`` wide, and not below 0 with ReLU."""
    lo, hi = int_range(bits, out_signed)
    return (max(lo, 0) if relu else lo), hi


def requantise_value(acc, shift: int, bits: int, out_signed: bool, relu: bool = False):
    """Logic for `exitgate.numerics.requantise` on a signed Amaranth value ``acc``: the
    quotient rounded half to even (`_quotient`), then optional ReLU and a clamp to ``bits``
    wide. Returns a value in range, to be assigned to a ``bits``-wide signal.
    """
    q, up = _quotient(acc, shift)
    rounded = q if up is None else q + up
    lo, hi = _clamp_range(bits, out_signed, relu)
    return Mux(rounded < lo, lo, Mux(rounded > hi, hi, rounded))


def requantise_split(acc, shift: int, bits: int, out_signed: bool, relu: bool = False):
    """`requantise_value` in two register stages (Fmax: its rounding add and the two clamp
    compares are three carry chains in a row). Returns ``(first, second)``: ``first`` is a list
    of values of ``acc`` to register (the quotient's low ``bits`` bits, the round-up bit, and the
    quotient compared with the clamp bounds), ``second(regs)`` the result from those registers
    (one ``bits``-wide increment and the clamp mux): the clamp compares look at the quotient
    before rounding, which decides the same."""
    q, up = _quotient(acc, shift)
    up = Const(0, 1) if up is None else up
    lo, hi = _clamp_range(bits, out_signed, relu)
    # q < lo: q + up <= lo, so the result is lo; q >= hi: q + up >= hi, so it is hi; otherwise
    # lo <= q + up <= hi, whose low bits are those of q plus the round-up bit
    first = [q[:bits], up, q < lo, q >= hi]

    def second(regs):
        low, up, under, over = regs
        mid = (low + up)[:bits]
        return Mux(under, lo, Mux(over, hi, mid.as_signed() if out_signed else mid))
    return first, second


def accumulator_width(matrix, bias, in_width: int, in_signed: bool) -> int:
    """Signed accumulator width from bounds: max over rows of sum|w| * max|x| + |b|."""
    lo, hi = int_range(in_width, in_signed)
    xmax = max(abs(lo), abs(hi))
    w = np.abs(np.asarray(matrix, dtype=np.int64)).reshape(len(bias), -1)
    bound = int((w.sum(axis=1) * xmax + np.abs(np.asarray(bias, dtype=np.int64))).max())
    bound = max(bound, 1)
    return bits_for_range(-bound, bound)


def chunk_signature(simd: int, width: int, in_signed: bool) -> stream.Signature:
    """Chunk stream: ``simd`` elements per beat, ``first``/``last`` marking a sample."""
    return activation_signature(simd, width, signed_data=in_signed)


def elements(value, count: int, width: int, is_signed: bool) -> list:
    """Split a flat value into ``count`` elements of ``width`` bits (element 0 in the low bits)."""
    out = [value.word_select(i, width) for i in range(count)]
    return [e.as_signed() for e in out] if is_signed else out


def _pack(values, width: int) -> int:
    mask = (1 << width) - 1
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * width)
    return word


#: words above which a deep MVU's weight ROM goes to block RAM (`weight_rom_in_block_ram`)
WEIGHT_ROM_LOGIC_DEPTH = 16


def weight_rom_in_block_ram(depth: int, deep: bool) -> bool:
    """Whether the weight ROM asks for block RAM (``rom_style = "block"``) whatever yosys' cost
    model prefers: a deep MVU's (ECP5 boards') ROM of more than `WEIGHT_ROM_LOGIC_DEPTH` words.
    In logic each output bit of such a ROM is a LUT tree over the whole address, so the few
    address nets fan out to thousands of LUTs beside the DSPs: the digits baseline's conv s3
    (36 words x 1024 bits, about 4000 LUT4s) was where nextpnr's router stalled (measured with
    router2's congestion heatmap), at every seed tried. Up to 16 words a bit is one LUT4 and
    logic stays cheaper. The MVU and the resource estimate (`exitgate.compiler.resources`) both
    decide by this."""
    return deep and depth > WEIGHT_ROM_LOGIC_DEPTH


class MatrixVectorUnit(wiring.Component):
    """Folded constant-matrix x vector (see module docstring).

    Ports: ``i``: In(chunk stream, ``simd`` x ``in_width``); ``o``: Out(activation stream,
    ``pe`` lanes of ``out_bits`` (requantised) or ``acc_width`` signed (``shift=None``)).
    A building block: `Conv2dStage` and `LinearStage` validate its parameters (pe | rows,
    simd | n, weights within ``weight_bits``, ``acc_width`` from `accumulator_width`).
    """

    def __init__(self, matrix, bias, *, in_width: int, in_signed: bool, weight_bits: int,
                 pe: int, simd: int, acc_width: int, shift: int | None = None,
                 out_bits: int = 8, out_signed: bool = False, relu: bool = False,
                 deep: bool = False, soft: bool | int = False):
        self.matrix = np.asarray(matrix, dtype=np.int64)
        self.deep = bool(deep)
        self._MustUse__silence = True   # no UnusedElaboratable warning if a check fails
        #: PE rows whose products are in logic (`soft_product`, `soft_rows`)
        self.soft_rows = soft_rows(soft, pe)
        self._MustUse__silence = False
        self.bias = np.asarray(bias, dtype=np.int64)
        rows, n = self.matrix.shape
        self.in_width, self.in_signed, self.weight_bits = in_width, in_signed, weight_bits
        self.pe, self.simd, self.acc_width = pe, simd, acc_width
        self.shift, self.out_bits, self.out_signed, self.relu = shift, out_bits, out_signed, relu
        self.nf, self.sf = rows // pe, n // simd
        self.bias_width = bits_for_range(min(int(self.bias.min()), -1), int(self.bias.max()))
        if shift is None:
            out = activation_signature(pe, acc_width, signed_data=True)
        else:
            out = activation_signature(pe, out_bits, signed_data=out_signed)
        super().__init__({"i": In(chunk_signature(simd, in_width, in_signed)), "o": Out(out)})
        #: observation only (for activity counters): high on a cycle in which a chunk is taken,
        #: i.e. ``pe * simd`` multiply-accumulates are performed and one weight-ROM word is used
        self.mac_active = Signal()
        #: observation only: the weight ROM's read enable (as built: high whenever the issue
        #: stage may advance, also on cycles without a chunk)
        self.weight_read_en = Signal()

    @property
    def latency(self) -> int:
        """Cycles from accepting a pass's last chunk to its output beat being valid."""
        return mvu_latency(self.simd, self.deep, self.shift is not None)

    def _weight_init(self):
        w = self.matrix.reshape(self.nf, self.pe, self.sf, self.simd).transpose(0, 2, 1, 3)
        return [_pack(word.reshape(-1), self.weight_bits) for word in w.reshape(self.nf * self.sf,
                                                                                 -1)]

    def elaborate(self, platform):
        m = Module()
        pe, simd, nf_max, sf_max = self.pe, self.simd, self.nf, self.sf
        i, o = self.i, self.o
        deep = self.deep
        if deep:
            # chunks enter through a skid buffer: the producer's valid/data paths end at a
            # register; the ring form, whose payload enables do not depend on this unit's
            # ``i.ready`` (the chunk goes straight into s1's register)
            m.submodules.in_skid = in_skid = SkidBuffer(
                chunk_signature(simd, self.in_width, self.in_signed), ring=True)
            wiring.connect(m, wiring.flipped(self.i), in_skid.i)
            i = in_skid.o

        m.submodules.wrom = wrom = Memory(shape=unsigned(pe * simd * self.weight_bits),
                                          depth=nf_max * sf_max, init=self._weight_init(),
                                          attrs={"rom_style": "block"}
                                          if weight_rom_in_block_ram(nf_max * sf_max, deep)
                                          else {})
        m.submodules.brom = brom = Memory(
            shape=unsigned(pe * self.bias_width), depth=nf_max,
            init=[_pack(b, self.bias_width) for b in self.bias.reshape(nf_max, pe)])
        w_rd, b_rd = wrom.read_port(), brom.read_port()

        # Stage enables: none. Nothing stalls: the pipeline moves on every cycle (a shallow
        # MVU's data registers load when the stage before holds a chunk, `register`), and a
        # pass's last chunk is issued only while a result can be held for it (credits).
        s1_valid, s1_sf_first, s1_sf_last = Signal(), Signal(), Signal()
        s2_valid = Signal()
        always = Const(1, 1)        # the deep pipeline's (and its DSPs') enable
        step = Signal()
        m.d.comb += step.eq(i.valid & i.ready)
        # the ROMs are read only for a chunk (the pipeline moves on every cycle)
        rom_en = step
        m.d.comb += [self.mac_active.eq(step), self.weight_read_en.eq(rom_en)]

        # Issue: ROM addresses from the fold counters, chunk accepted.
        # the fold counters' end compares are registers (`flagged_counter`; Fmax: ``step`` and
        # the ready of a deep MVU are one LUT from registers)
        _, sf_last, sf_first = flagged_counter(m, step, sf_max, "sf")
        nf, _, _ = flagged_counter(m, step & sf_last, nf_max, "nf")
        # the weight-ROM address ``nf * SF + sf`` as a counter of its own (no arithmetic in
        # front of the ROM: Fmax)
        waddr, _, _ = flagged_counter(m, step, nf_max * sf_max, "waddr")
        fold_first = Signal()
        cur_first = Mux(sf_first, i.payload.first, fold_first)
        m.d.comb += [w_rd.addr.eq(waddr), w_rd.en.eq(rom_en),
                     b_rd.addr.eq(nf), b_rd.en.eq(rom_en)]
        with m.If(step):
            m.d.sync += fold_first.eq(cur_first)

        s1_first, s1_last = Signal(), Signal()
        s1_chunk = Signal(simd * self.in_width)
        m.d.sync += [s1_valid.eq(step), s1_sf_first.eq(sf_first),
                     s1_sf_last.eq(sf_last), s1_first.eq(cur_first),
                     s1_last.eq(i.payload.last), s1_chunk.eq(i.payload.data)]

        # Front pipeline, moving on every cycle: s1 (chunk, ROM words) -> operand registers ->
        # product registers -> adder-tree registers (after every two adder levels) -> the
        # accumulator. The flags and the bias (added to a pass's first chunk) ride along.
        def register(values, flags, name):
            # data registers without a reset: the flags say what is valid, and a reset-less
            # register with a hold is what yosys' ice40_dsp packs into an SB_MAC16's own
            # input (A/B) and output registers
            regs = [Signal(v.shape(), name=f"{name}{n_}", reset_less=True)
                    for n_, v in enumerate(values)]
            nflags = [Signal(name=f"{name}_flag{n_}") for n_ in range(len(flags))]
            m.d.sync += [r.eq(v) for r, v in zip(nflags, flags)]
            # shallow: the data moves on when the stage before holds a chunk (flags[0], its
            # valid flag: a register), else it holds. An enable from one local register, not a
            # stall; and it keeps yosys' ice40_dsp packing the operand and product registers
            # with their holds (with no enable at all it took the adder tree's first adder
            # into the SB_MAC16 as well, and a gate-level simulation of that netlist with
            # yosys' own SB_MAC16 model did not match: tests/hw/test_mvu_dsp.py)
            with m.If(always if deep else flags[0]):
                m.d.sync += [r.eq(v) for r, v in zip(regs, values)]
            return regs, nflags

        flags = [s1_valid, s1_sf_first, s1_sf_last, s1_first, s1_last]
        operands = (elements(s1_chunk, simd, self.in_width, self.in_signed)
                    + elements(w_rd.data, pe * simd, self.weight_bits, True)
                    + elements(b_rd.data, pe, self.bias_width, True))
        if deep:
            # two more operand registers: the ROMs' (block RAM) outputs land in the first with
            # nothing in front of it (an ECP5 build moves it into the block RAMs as their output
            # register: `exitgate.boards.bram_outreg`), and reach the multipliers through the
            # second (ROM -> DSP routing is long)
            operands, flags = register(operands, flags, "rom")
            operands, flags = register(operands, flags, "pre")
        n_soft = self.soft_rows * simd       # the first soft_rows rows' products in logic

        def soft(k, w, x):      # product k in logic (`soft_product`), as wide as ``w * x``
            prod = Signal((w * x).shape(), name=f"soft{k}")
            m.d.comb += prod.eq(soft_product(w, x))
            return prod

        if ecp5_dsp_fits(platform, self.in_width, self.weight_bits) and n_soft < pe * simd:
            # the operand and product registers of the products are the DSPs' own; the soft
            # rows' operands and products go through fabric registers (the same two cycles)
            xs, ws = operands[:simd], operands[simd:simd + pe * simd]
            soft_ops = (xs + ws[:n_soft]) if n_soft else []
            regs, flags = register(soft_ops + operands[-pe:], flags, "opnd")
            sx, sw = (regs[:simd], regs[simd:simd + n_soft]) if n_soft else ([], [])
            bias = regs[-pe:]
            soft_terms = [soft(k, sw[k], sx[k % simd]) for k in range(n_soft)]
            regs, flags = register(soft_terms + bias, flags, "prod")
            terms = regs[:n_soft] + [self._ecp5_mult(m, ws[k], xs[k % simd], always,
                                                      f"prod{k}")
                                     for k in range(n_soft, pe * simd)]
            bias = regs[-pe:]
        else:
            operands, flags = register(operands, flags, "opnd")
            xs, ws, bias = operands[:simd], operands[simd:simd + pe * simd], operands[-pe:]
            products = [ws[p * simd + s] * xs[s] for p in range(pe) for s in range(simd)]
            products[:n_soft] = [soft(k, ws[k], xs[k % simd]) for k in range(n_soft)]
            terms, flags = register(products + bias, flags, "prod")
            bias, terms = terms[-pe:], terms[:-pe]
        if deep:
            # and once more before the adder tree: a product reaches the tree's first adders
            # through a register with no logic in front of it, so the DSP -> fabric route (the
            # DSPs sit in rows across the die) is a path of its own (Fmax)
            terms, flags = register(terms + bias, flags, "land")
            bias, terms = terms[-pe:], terms[:-pe]
        groups = [terms[p * simd:(p + 1) * simd] for p in range(pe)]
        registered = {level for level, _ in adder_tree_registers(simd, deep)}
        level = 0
        while len(groups[0]) > 1:
            groups = [[g[j] + g[j + 1] if j + 1 < len(g) else g[j] for j in range(0, len(g), 2)]
                      for g in groups]
            level += 1
            if level in registered:
                n = len(groups[0])
                flat, flags = register([t for g in groups for t in g] + bias, flags, "tree")
                groups, bias = [flat[p * n:(p + 1) * n] for p in range(pe)], flat[-pe:]
        dots = [g[0] for g in groups]
        f_valid, f_sf_first, f_sf_last, f_first, f_last = flags
        # credits: results issued (a pass's last chunk taken) and not yet read out; a pass's
        # last chunk is taken only while one is free (``room``, registered), so the chunk
        # stream's ``ready`` depends on this unit's registers alone, never on the consumer's
        # ``ready`` (Fmax: no ready chain through the unit into its producer's enables)
        depth = mvu_fifo_depth(simd, sf_max, deep, self.shift is not None)
        pending = Signal(range(depth + 1))
        room = Signal(init=1)
        pending_next = Signal(range(depth + 2))
        m.d.comb += pending_next.eq(pending + (step & sf_last) - (o.valid & o.ready))
        m.d.sync += [pending.eq(pending_next), room.eq(pending_next < depth)]
        m.d.comb += i.ready.eq(~sf_last | room)

        # Accumulate: a pass's first chunk starts from the bias.
        acc = [Signal(signed(self.acc_width), name=f"acc{p}") for p in range(pe)]
        s2_acc = [Signal(signed(self.acc_width), name=f"s2_acc{p}") for p in range(pe)]
        s2_first, s2_last = Signal(), Signal()
        for p in range(pe):
            total = Mux(f_sf_first, bias[p], acc[p]) + dots[p]
            with m.If(f_valid):
                m.d.sync += acc[p].eq(total)
            m.d.sync += s2_acc[p].eq(total)
        m.d.sync += [s2_valid.eq(f_valid & f_sf_last), s2_first.eq(f_first),
                     s2_last.eq(f_last)]

        def requant_stage():
            """The requantiser's first stage in registers (`requantise_split`; raw accumulators:
            the accumulators), with the pass's flags: ((valid, first, last), the lanes' values
            behind it)."""
            flags = Signal(name="rq_valid"), Signal(name="rq_first"), Signal(name="rq_last")
            m.d.sync += [f.eq(v) for f, v in zip(flags, (s2_valid, s2_first, s2_last))]
            out = []
            for p in range(pe):
                if self.shift is None:
                    first, second = [s2_acc[p]], (lambda regs: regs[0])
                else:
                    first, second = requantise_split(s2_acc[p], self.shift, self.out_bits,
                                                     self.out_signed, self.relu)
                regs = [Signal(v.shape(), name=f"rq{p}_{n}", reset_less=True)
                        for n, v in enumerate(first)]
                m.d.sync += [r.eq(v) for r, v in zip(regs, first)]
                out.append(second(regs))
            return flags, out

        # Output register: the requantised values (or the accumulators).
        values = list(s2_acc)
        if deep:
            # the requantiser in two register stages (`requantise_split`: the rounding and the
            # clamp compares, then the rounded low bits and the clamp), the result into a
            # register, then the output FIFO: never full when written (credits)
            (rq_valid, rq_first, rq_last), values = requant_stage()
            payload = o.payload.shape()
            m.submodules.out_fifo = fifo = SyncFIFOBuffered(width=payload.size, depth=depth)
            beat, beat_valid = Signal(payload), Signal()
            m.d.sync += [beat_valid.eq(rq_valid), beat.first.eq(rq_first), beat.last.eq(rq_last)]
            m.d.sync += [beat.data[p].eq(values[p]) for p in range(pe)]
            m.d.comb += [fifo.w_en.eq(beat_valid), fifo.w_data.eq(beat.as_value()),
                         o.valid.eq(fifo.r_rdy), o.payload.eq(fifo.r_data),
                         fifo.r_en.eq(o.ready)]
            return m
        if self.shift is not None:
            # the requantiser's first stage in a register (`requantise_split`: the rounding and
            # the clamp compares, then the rounded low bits and the clamp into the output
            # register): one carry chain a stage (Fmax: on the iCE40 the rounding add and the
            # two clamp compares in a row, then the spare mux, set the clock)
            (s2_valid, s2_first, s2_last), values = requant_stage()
        # The output register and ``depth - 1`` spare registers behind it (a shift FIFO, oldest
        # in spare 0): a result goes into the output register when it is free or being read
        # and no spare is waiting, else into the first free spare; the credits guarantee one
        # is free. Only these registers and the credit counter see the consumer's ``ready``.
        beat = o.payload.shape()
        new = Signal(beat)
        m.d.comb += [new.first.eq(s2_first), new.last.eq(s2_last)]
        m.d.comb += [new.data[p].eq(values[p]) for p in range(pe)]
        spares = [Signal(beat, name=f"spare{k}") for k in range(depth - 1)]
        held = Signal(range(depth))             # spares in use
        take = Signal()
        m.d.comb += take.eq(~o.valid | o.ready)
        shift = take & (held != 0)
        to_spare = s2_valid & ~(take & (held == 0))
        where = Mux(shift, held - 1, held)      # the spare a new result goes into
        with m.If(take):
            m.d.sync += [o.valid.eq(s2_valid | (held != 0)),
                         o.payload.as_value().eq(Mux(held != 0, (spares[0] if spares else
                                                                 new).as_value(),
                                                     new.as_value()))]
        for k, spare in enumerate(spares):
            with m.If(to_spare & (where == k)):
                m.d.sync += spare.eq(new)
            if k + 1 < len(spares):
                with m.Elif(shift):
                    m.d.sync += spare.eq(spares[k + 1])
        m.d.sync += held.eq(held - shift + to_spare)
        return m

    @staticmethod
    def _ecp5_mult(m, a, b, en, name):
        """``a * b`` one cycle after ``a``/``b`` are presented with ``en`` high, through an
        ECP5 MULT18X18D with its input registers A, B and its output register clocked by
        ``sync`` (CLK0) and enabled by ``en`` (CE0); the same as registering ``a``, ``b`` and then
        their product on ``en``, as the fabric path does. Returns the product (a signal of the
        shape of ``a * b``)."""
        product = Signal((a * b).shape(), name=name)
        p_out = Signal(36, name=f"{name}_p")
        ports = {}
        for pin, value in (("A", a), ("B", b)):       # 18 bits: sign- or zero-extended
            wide = Signal(signed(18) if value.shape().signed else unsigned(18),
                          name=f"{name}_{pin.lower()}")
            m.d.comb += wide.eq(value)
            ports.update({f"i_{pin}{k}": wide[k] for k in range(18)})
            ports[f"i_SIGNED{pin}"] = Const(int(value.shape().signed), 1)
            ports[f"i_SOURCE{pin}"] = Const(0, 1)         # A/B from the A/B pins
        ports.update({f"i_C{k}": Const(0, 1) for k in range(18)})
        ports.update({f"o_P{k}": p_out[k] for k in range(36)})
        # the other parameters keep their defaults, as in yosys' own MULT18X18D mapping
        m.submodules[f"{name}_dsp"] = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
            p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
            p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
            i_CLK0=ClockSignal("sync"), i_CE0=en, i_RST0=Const(0, 1), **ports)
        # the 36-bit product, signed unless both operands are unsigned, to the product's shape
        signed_p = a.shape().signed or b.shape().signed
        m.d.comb += product.eq(p_out.as_signed() if signed_p else p_out)
        return product


class LaneSerialiser(wiring.Component):
    """Splits each ``lanes_in``-lane beat into ``lanes_in // lanes_out`` beats of ``lanes_out``
    lanes (lane group 0 first). Combinational: ``i`` is held until its last part is accepted.

    Ports: ``i``: In(activation stream, lanes_in x width); ``o``: Out(lanes_out x width).
    """

    def __init__(self, lanes_in: int, lanes_out: int, width: int, signed_data: bool):
        self.lanes_in, self.lanes_out, self.width = lanes_in, lanes_out, width
        super().__init__({
            "i": In(activation_signature(lanes_in, width, signed_data=signed_data)),
            "o": Out(activation_signature(lanes_out, width, signed_data=signed_data))})

    def elaborate(self, platform):
        m = Module()
        parts = self.lanes_in // self.lanes_out
        idx = Signal(range(parts))
        i, o = self.i, self.o
        bits = self.lanes_out * self.width
        m.d.comb += [o.valid.eq(i.valid),
                     o.payload.data.eq(i.payload.data.as_value().word_select(idx, bits)),
                     o.payload.first.eq(i.payload.first & (idx == 0)),
                     o.payload.last.eq(i.payload.last & (idx == parts - 1)),
                     i.ready.eq(o.ready & (idx == parts - 1))]
        with m.If(o.valid & o.ready):
            m.d.sync += idx.eq(Mux(idx == parts - 1, 0, idx + 1))
        return m
