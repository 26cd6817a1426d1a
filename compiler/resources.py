"""Resource estimates (LUT, FF, DSP, BRAM) per block, per stage and per accelerator, per family.

The estimate of a block is exact where the structure decides it and fitted where the tools do:

* **BRAM and memory mapping** emulate yosys ``memory_libmap``: every `Memory` goes to the cheapest
  of block RAM (cost 64 per SB_RAM40_4K on iCE40, 128 per DP16KD on ECP5, in the geometries the
  primitive offers), distributed RAM (ECP5 only, RAMs only: TRELLIS_DPR16X4 16x4, cost 4 each)
  or soft logic (cost 1 per RAM bit, 1/16 per ROM bit). That gives BRAM exactly and tells the
  fitted part which bits land in LUTs or FFs.
* **DSP** counts the multipliers the tool maps. iCE40: `exitgate.boards.build` runs
  ``synth_ice40 -dsp``, whose ``mul2dsp`` sends every ``$mul`` with both operands >= 2 bits and a
  product of >= 11 bits to an SB_MAC16 (16 x 16), the rest to LUTs. ECP5: every ``$mul`` with
  both operands >= 2 bits (``synth_ecp5`` maps them all to MULT18X18D; a board build elaborates
  the MVU for its platform, which on ECP5 instantiates each product as a MULT18X18D with its
  input and output registers in use, so those registers are not counted as fabric FFs there;
  on iCE40 ``ice40_dsp`` packs the chunk operand and product registers into each SB_MAC16,
  `_mvu_dsp_registers`).
  Both: PE*SIMD products
  per MVU and the constant multiplies ``x * K`` (K not a power of two) of the address arithmetic
  that the same rule sends to a DSP.
* **LUT and FF** are linear in a few structural *features* of the block (`block_features`):
  register bits, soft multiplier bit-products, adder bits, ROM bits in logic, mux
  bits, ... with per-family coefficients fitted to yosys synthesis by `bench/resource_fit.py`
  and stored in ``resource_model.json`` (configurations, fit and held-out errors included).
* **xc7** has no open synthesis here: its estimate is an analytic extrapolation from the ECP5
  model (not fitted): LUT6 = 0.7 x LUT4 (a LUT6 absorbs about 1.4 LUT4s), FF as ECP5, one
  DSP48E1 per multiplier, RAMB36E1 from the 36-kbit geometries (72x512 .. 1x32768).

    estimate_block("conv", "ice40", shape=(8, 8, 8), cout=16, pe=4, simd=8, ...)
    estimate_stage(stage, "ecp5", weights=w, in_lanes=1, in_bits=8, in_signed=False)
    estimate_design(graph, weights, "ice40", buffer_depth=4)   # a whole `Accelerator`
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..hw.cond_buffer import DP16KD_SHAPES, storage_columns
from ..hw.conv import window_buffer_banks
from ..hw.decision import decision_layout
from ..hw.mvu import (accumulator_width, adder_tree_registers, ecp5_dsp_family_fits,
                      mvu_fifo_depth, soft_rows, weight_rom_in_block_ram)
from ..numerics import DecisionSpec
from .graph import HwGraph, Stage

__all__ = ["FAMILIES", "KINDS", "Resources", "MemoryMap", "map_memory", "block_features",
           "estimate_block", "estimate_stage", "estimate_design", "design_blocks", "load_model",
           "logic_cells", "ICE40_UNPAIRED_FF", "HARNESS", "harness_estimate"]

FAMILIES = ("ice40", "ecp5", "xc7")
KINDS = ("conv", "conv_frame", "linear", "pool", "decision", "cond_buffer", "fork", "id_fifo",
         "merge", "router", "tagger", "id_counter", "skid")
MODEL_PATH = Path(__file__).with_name("resource_model.json")
XC7_LUT_PER_LUT4 = 0.7


@dataclass(frozen=True)
class Resources:
    lut: int = 0
    ff: int = 0
    dsp: int = 0
    bram: int = 0

    def __add__(self, other: "Resources") -> "Resources":
        return Resources(self.lut + other.lut, self.ff + other.ff, self.dsp + other.dsp,
                         self.bram + other.bram)

    def as_dict(self) -> dict[str, int]:
        return {"lut": self.lut, "ff": self.ff, "dsp": self.dsp, "bram": self.bram}

    def fits(self, usable: dict) -> bool:
        """Within ``usable`` (e.g. `exitgate.boards.profiles.Budget.usable()`)."""
        return all(getattr(self, k) <= usable[k] for k in ("lut", "ff", "dsp", "bram"))


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown FPGA family {family!r}: use one of {', '.join(FAMILIES)}")


def _rw(n: int) -> int:
    """Width of ``Signal(range(n))``."""
    return max(0, (n - 1).bit_length())


# --- memories ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryMap:
    """Where yosys puts one memory: ``kind`` "bram" | "dist" | "logic", and how many cells."""
    kind: str
    bram: int = 0
    dist: int = 0
    bits: int = 0


#: family -> (cost per tile, [(width, depth)], extra geometries for one write and one read port
#: only); ECP5's are the conditional buffer's `DP16KD_SHAPES`
_BRAM_GEOMETRY = {
    "ice40": (64, [(2, 2048), (4, 1024), (8, 512), (16, 256)], []),
    "ecp5": (128, [s for s in DP16KD_SHAPES if s[0] <= 18],
             [s for s in DP16KD_SHAPES if s[0] > 18]),
    "xc7": (128, [(1, 32768), (2, 16384), (4, 8192), (9, 4096), (18, 2048), (36, 1024)],
            [(72, 512)]),
}


def bram_tiles(depth: int, width: int, family: str, *, simple_dual: bool = True) -> int:
    """Block-RAM primitives for a depth x width memory in the family's best geometry."""
    _check_family(family)
    _, geoms, extra = _BRAM_GEOMETRY[family]
    geoms = geoms + (extra if simple_dual else [])
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in geoms)


def map_memory(depth: int, width: int, family: str, *, rom: bool,
               sync_read: bool = True, block: bool = False) -> MemoryMap:
    """The yosys ``memory_libmap`` choice for one memory (see module docstring); block RAM
    needs a synchronous read port. ``block``: the memory asks for block RAM (``rom_style`` /
    ``ram_style = "block"``), which yosys then uses whatever its costs say."""
    _check_family(family)
    bits = depth * width
    if depth <= 1 or width == 0:
        return MemoryMap("logic", bits=bits)
    cost, _, _ = _BRAM_GEOMETRY[family]
    tiles = bram_tiles(depth, width, family)
    if block and sync_read:
        return MemoryMap("bram", bram=tiles, bits=bits)
    options = [(bits / 16 if rom else bits, MemoryMap("logic", bits=bits))]
    if sync_read:
        options.append((cost * tiles, MemoryMap("bram", bram=tiles, bits=bits)))
    if family in ("ecp5", "xc7") and not rom:
        cells = math.ceil(depth / 16) * math.ceil(width / 4)
        options.append((4 * cells, MemoryMap("dist", dist=cells, bits=bits)))
    return min(options, key=lambda o: o[0])[1]


def _const_mul(var_range: int, const: int, family: str = "ecp5") -> int:
    """1 if ``Signal(range(var_range)) * const`` stays a ``$mul`` of operands >= 2 bits that the
    family maps to a DSP (iCE40: only a product of >= 11 bits, `_ice40_dsp`)."""
    mul = _rw(var_range) >= 2 and const >= 2 and const & (const - 1) != 0
    return int(mul and (family != "ice40" or _ice40_dsp(_rw(var_range), const.bit_length())))


def _ice40_dsp(a_bits: int, b_bits: int) -> bool:
    """``synth_ice40 -dsp`` (mul2dsp: DSP_A/B_MINWIDTH=2, DSP_Y_MINWIDTH=11) maps the product to
    SB_MAC16."""
    return a_bits >= 2 and b_bits >= 2 and a_bits + b_bits >= 11


# --- features ---------------------------------------------------------------------------------

class _Features:
    """Accumulates the features of a block: LUT/FF features, exact DSP products and BRAM."""

    def __init__(self, family: str):
        self.family = family
        self.f: dict[str, float] = {}
        self.mults = 0          # hardware multipliers (operands >= 2 bits)
        self.bram = 0
        self.dist = 0
        # flip-flops an ECP5 board build moves into block-RAM output registers
        # (`exitgate.boards.bram_outreg`): counted by the fitted features, taken off after
        self.absorbed = 0

    def add(self, name: str, value: float) -> None:
        self.f[name] = self.f.get(name, 0.0) + float(value)

    def memory(self, depth: int, width: int, *, rom: bool, read_reg: bool = True,
               transparent: bool = False, collisions: bool = True,
               block: bool = False) -> MemoryMap:
        """One memory; ``read_reg=False``: an asynchronous (comb) read port, which block RAM
        cannot serve. ``collisions=False``: an `exitgate.hw.ram.sdp_memory`, whose block RAM
        has no read / write collision logic beside it. ``block``: asks for block RAM
        (`map_memory`)."""
        mm = map_memory(depth, width, self.family, rom=rom, sync_read=read_reg or transparent,
                        block=block)
        if mm.kind == "bram":
            self.bram += mm.bram
            if not rom and collisions:
                # yosys' collision logic beside a RAM port: a copy of the write data and
                # address, their compare and a mux in front of the read data
                self.add("bram_port_bits", width)
            if transparent:    # write-to-read bypass: data and address-compare registers
                self.add("regs", width + _rw(depth) + 1)
                self.add("mux_bits", width)
        elif mm.kind == "dist":
            self.dist += mm.dist
            self.add("dist_cells", mm.dist)
            self.add("dist_read_bits", width * math.ceil(depth / 16))
            if read_reg:
                self.add("regs", width)
        elif rom:
            self.add("rom_bits", mm.bits)
            if read_reg:
                self.add("regs", width)
        else:
            self.add("ram_bits", mm.bits)
            self.add("regs", mm.bits + (width if read_reg else 0))
        return mm

    def multiply(self, a_bits: int, b_bits: int, count: int = 1, soft: bool = False,
                 rom_words: int = 1 << 16) -> None:
        """``count`` multipliers of a_bits x b_bits: DSP where the family's synthesis maps them
        (see module docstring), soft logic otherwise; ``soft``: `exitgate.hw.mvu.soft_product`
        (LUTs and carry chains whatever the family: one gated copy of the wider operand per
        bit of the narrower, summed in a tree)."""
        if soft:
            # gate bits (a copy of the wider operand per bit of the narrower) and the adder
            # tree's bits; ``soft_const_mul_bits`` where the weight ROM has one word (the
            # weights never change: yosys folds part of the logic away)
            n, w = min(a_bits, b_bits), max(a_bits, b_bits)
            bits = count * (n * w + (n - 1) * (w + n))
            self.add("soft_const_mul_bits" if rom_words == 1 else "soft_mul_bits", bits)
            return
        if a_bits < 2 or b_bits < 2:
            self.add("mul_bits", count * a_bits * b_bits)
            return
        if self.family == "ice40":
            if _ice40_dsp(a_bits, b_bits):
                self.mults += count * math.ceil(a_bits / 16) * math.ceil(b_bits / 16)
            else:
                self.add("mul_bits", count * a_bits * b_bits)
        else:
            span = 18 if self.family == "ecp5" else 25
            self.mults += count * math.ceil(max(a_bits, b_bits) / span) \
                * math.ceil(min(a_bits, b_bits) / 18)


def _window_features(x: _Features, c, h, w, lanes, ib):
    g = c // lanes
    row = lanes * ib
    x.memory(w * g, 2 * row, rom=False, collisions=False)
    x.add("regs", 2 * (_rw(h + 1) + _rw(w + 1) + _rw(g)) + 1 + row + 6 * g * row + 9 * row + 3)
    x.add("mux_bits", 9 * row)
    x.mults += 2 * _const_mul(w + 1, g, x.family)
    x.add("counter_bits", _rw(h + 1) + _rw(w + 1) + _rw(g))


def _window_buffer_features(x: _Features, g, lanes, ib, nf, simd, banks=2):
    """`exitgate.hw.conv._WindowBuffer`: ``banks`` banks of ``SF`` words of ``simd`` values in
    one memory (beyond two banks, fill and replay address counters), a gearbox staging register of ``simd - u + 9*lanes`` values (``u`` = gcd of beat and
    word) whose input is a mux over the ``simd / u`` offsets a beat can land at, and the fill /
    replay counters and flags."""
    beat = 9 * lanes
    u = math.gcd(beat, simd)
    bu, wu = beat // u, simd // u
    sf = g * beat // simd
    stage = (simd - u + beat) * ib
    x.memory(banks * sf, simd * ib, rom=False, read_reg=True, collisions=False)
    counters = 2 * _rw(sf) + _rw(nf) + _rw(wu + bu) + _rw(g)
    if banks > 2:
        counters += 2 * _rw(banks * sf) + 2 * _rw(banks)
    x.add("regs", stage + counters + 3 * (banks - 2) + 16)
    x.add("mux_bits", stage + wu * beat * ib)
    x.add("counter_bits", counters)


def _distinct_rom_bits(bits: int, depth: int) -> int:
    """Flip-flops left of ``bits`` registers loaded from a ``depth``-word ROM: each bit is a
    function of the read address, and yosys merges registers with the same function (and drops
    constant ones), so at most 2**depth of them differ (the digits model's first conv at PE 8 x
    SIMD 9 reads a 2-word ROM: its 576 weight-operand bits are a handful of flip-flops)."""
    return min(bits, 2 ** depth) if depth < 16 else bits


def _mvu_pipeline_bits(pe, simd, ib, wb, bias_w, in_dsp: frozenset = frozenset(),
                       deep: bool = False, rom_depth: int = 1 << 16, soft_rows: int = 0) -> int:
    """Register bits of `MatrixVectorUnit`'s front pipeline after s1: operands (chunk, weight
    word, bias), products, one register per two adder-tree levels; 5 flags and the bias at each.
    ``in_dsp``: which of the products' registers ("x" the chunk operands, "w" the weight
    operands, "p" the products) are the DSPs' own, not fabric flip-flops (`_mvu_dsp_registers`).
    ``deep``: a second operand register (always in the fabric) and a tree register per level.
    ``rom_depth``: words in the weight ROM (`_distinct_rom_bits`). ``soft_rows``: PE rows whose
    products are in logic (their operand and product registers are fabric ones whatever
    ``in_dsp`` says)."""
    prod = ib + wb + 1
    wbits = _distinct_rom_bits(pe * simd * wb, rom_depth)
    bits = pe * bias_w + 5 + pe * bias_w + 5
    if deep:        # the input skid buffer (two chunks, flags, state), "rom" and "pre" registers
        bits += 2 * (simd * ib + 2) + 2 + 2 * (simd * ib + wbits + pe * bias_w + 5)
    soft_w = _distinct_rom_bits(soft_rows * simd * wb, rom_depth)
    bits += simd * ib if ("x" not in in_dsp or soft_rows) else 0
    bits += soft_w if "w" in in_dsp else wbits
    bits += soft_rows * simd * prod if "p" in in_dsp else pe * simd * prod
    if deep:        # the products' landing register (always in the fabric)
        bits += pe * simd * prod + pe * bias_w + 5
    for level, n in adder_tree_registers(simd, deep):
        bits += pe * n * (prod + level) + pe * bias_w + 5
    return bits


def _mvu_dsp_registers(family: str, ib: int, wb: int) -> frozenset:
    """The MVU's product registers that end up inside the DSPs in a board build. ECP5: all three
    (the MVU elaborated for an ECP5 platform instantiates registered MULT18X18Ds, see
    `exitgate.hw.mvu.ecp5_dsp_fits`). iCE40: yosys' ``ice40_dsp`` packs the reset-less chunk
    operand register (B) and the product register (O) into each SB_MAC16; the weight operand
    register stays in the fabric (measured: A_REG 0 on every SB_MAC16 of the fit
    configurations). Products in LUTs keep all three in the fabric."""
    if ecp5_dsp_family_fits(family, ib, wb):
        return frozenset("xwp")
    if family == "ice40" and _ice40_dsp(ib, wb):
        return frozenset("xp")
    return frozenset()


def _skid_features(x: _Features, width: int) -> None:
    """`exitgate.hw.plumbing.SkidBuffer` of a ``width``-bit payload: output and skid registers,
    flags, the output's input mux."""
    x.add("regs", 2 * width + 2)
    x.add("mux_bits", width)


def _mvu_features(x: _Features, rows, n, pe, simd, ib, wb, acc_w, bias_w, out_bits, out_lanes,
                  deep=False, soft=0, requant=True):
    """``soft``: PE rows with their products in logic (True: all ``pe``; `Fold.soft`).
    ``requant``: False for raw accumulators (logits), which have no requantiser."""
    nf, sf = rows // pe, n // simd
    soft = soft_rows(soft, pe)
    wmap = x.memory(nf * sf, pe * simd * wb, rom=True,
                    block=weight_rom_in_block_ram(nf * sf, deep))
    bmap = x.memory(nf, pe * bias_w, rom=True)
    if deep and x.family == "ecp5":
        # a deep MVU's "rom" register takes the ROMs' read data with nothing in between: a
        # ROM in block RAM keeps it as its output register
        x.absorbed += _distinct_rom_bits(pe * simd * wb, nf * sf) * (wmap.kind == "bram") \
            + pe * bias_w * (bmap.kind == "bram")
    if soft:
        x.multiply(wb, ib, soft * simd, True, nf * sf)
    if soft < pe:
        x.multiply(wb, ib, (pe - soft) * simd)
    x.add("add_bits", pe * simd * (wb + ib) + 2 * pe * acc_w)
    x.add("requant_bits", pe * acc_w)
    x.add("regs", _rw(nf) + _rw(sf) + _rw(nf * sf) + 6 + simd * ib + 2 * pe * acc_w + 3
          + pe * out_bits + 3 + _mvu_pipeline_bits(pe, simd, ib, wb, bias_w,
                                                   _mvu_dsp_registers(x.family, ib, wb), deep,
                                                   nf * sf, soft))
    x.add("counter_bits", _rw(nf) + _rw(sf) + _rw(nf * sf))
    if deep:
        # the requantiser's first stage (`requantise_split`: the quotient's low bits, the
        # round-up and the two clamp flags; the accumulator for logits) and flags, the
        # requantised result's register, the output FIFO (`SyncFIFOBuffered`: depth-1 words of
        # memory with a registered read, which stands in for the output register counted
        # above) and the credit counter
        depth = mvu_fifo_depth(simd, sf)
        x.memory(depth - 1, pe * out_bits + 2, rom=False, read_reg=False)
        x.add("regs", pe * (out_bits + 3) + 3
              + pe * out_bits + 3 + 2 * _rw(depth - 1) + _rw(depth) + 1 + _rw(depth + 1)
              + 1 + 2)
        x.add("counter_bits", 2 * _rw(depth - 1) + _rw(depth) + _rw(depth + 1))
    else:
        # the spare registers behind the output register (results wait there, the pipeline
        # never stalls), their count and the credit counter with its registered flag
        depth = mvu_fifo_depth(simd, sf, False, requant)
        x.add("regs", (depth - 1) * (pe * out_bits + 2) + _rw(depth) + _rw(depth + 1) + 1)
        if requant:     # the requantiser's first stage (`requantise_split`) and its flags
            x.add("regs", pe * (out_bits + 3) + 3)
        x.add("mux_bits", (depth - 1) * (pe * out_bits + 2))
        x.add("counter_bits", _rw(depth) + _rw(depth + 1))
    if out_lanes < pe:
        x.add("mux_bits", pe * out_bits)
        x.add("regs", _rw(pe // out_lanes))


def block_features(kind: str, family: str, **p) -> _Features:
    """Features of one block (see `estimate_block` for each kind's parameters)."""
    _check_family(family)
    x = _Features(family)
    x.add(f"const_{kind}", 1)
    if kind == "conv":
        c, h, w = p["shape"]
        ib, wb, lanes, pe, simd = p["in_bits"], p["weight_bits"], p["in_lanes"], p["pe"], p["simd"]
        g = c // lanes
        _window_features(x, c, h, w, lanes, ib)
        nf, sf = p["cout"] // pe, 9 * c // simd
        _window_buffer_features(x, g, lanes, ib, nf, simd,
                                window_buffer_banks((c, h, w), lanes, nf * sf))
        _mvu_features(x, p["cout"], 9 * c, pe, simd, ib, wb, p["acc_width"], p["bias_width"],
                      p["out_bits"], p["out_lanes"], p.get("deep", False), p.get("soft", 0))
        if p.get("deep", False):      # the skid buffer between window and buffer
            _skid_features(x, 9 * lanes * ib + 2)
    elif kind == "conv_frame":
        # `exitgate.hw.conv_frame.FrameConv2dStage` (SIMD 1, one input lane): the
        # double-buffered frame, write counters, the read loops (c, nf, ox, oy counters with
        # their end flags, one-hot kx/ky), the address register with its step mux, the
        # early-start compare; then the MVU
        c, h, w = p["shape"]
        ib, wb, pe = p["in_bits"], p["weight_bits"], p["pe"]
        frame = c * h * w
        x.memory(2 * frame, ib, rom=False, read_reg=True, collisions=False)
        nf = p["cout"] // pe
        addr = _rw(2 * frame) + 1
        need = _rw((h * w + w + 2) * c + 1)
        counters = _rw(frame) + _rw(2 * frame) + _rw(c) + _rw(nf) + _rw(w) + _rw(h)
        x.add("regs", counters + addr + need + 2 * 3 + 4 * 2 + 12)
        x.add("counter_bits", counters + need)
        x.add("add_bits", addr)
        x.add("mux_bits", 4 * addr + ib)
        x.add("cmp_bits", need)
        _mvu_features(x, p["cout"], 9 * c, pe, 1, ib, wb, p["acc_width"], p["bias_width"],
                      p["out_bits"], p["out_lanes"], p.get("deep", False), p.get("soft", 0))
    elif kind == "linear":
        c, h, w = p["shape"]
        n = c * h * w
        ib, wb, lanes, pe, simd = p["in_bits"], p["weight_bits"], p["in_lanes"], p["pe"], p["simd"]
        sf = n // simd
        x.memory(2 * sf, simd * ib, rom=False, read_reg=True, collisions=False)
        x.add("regs", (simd // lanes - 1) * lanes * ib + 2 * (_rw(sf) + _rw(simd // lanes))
              + _rw(p["cout"] // pe) + 12)
        x.add("mux_bits", simd * ib)
        x.add("counter_bits", 2 * _rw(sf) + _rw(p["cout"] // pe))
        _mvu_features(x, p["cout"], n, pe, simd, ib, wb, p["acc_width"], p["bias_width"],
                      p["out_bits"], p["out_lanes"], p.get("deep", False), p.get("soft", 0),
                      not p.get("raw", False))
    elif kind == "pool":
        c, h, w = p["shape"]
        lanes, bits = p["lanes"], p["bits"]
        g = c // lanes
        x.memory((w // 2) * g, lanes * bits, rom=False, transparent=True)
        # the even column of the current pair, per group: a memory like the line buffer, or
        # one register when there is one group (`exitgate.hw.pool.MaxPool2x2`)
        if g > 1:
            x.memory(g, lanes * bits, rom=False, transparent=True)
        else:
            x.add("regs", lanes * bits)
        x.add("regs", 2 * (_rw(h) + _rw(w) + _rw(g)) + 1 + lanes * bits + lanes * bits + 3)
        x.add("cmp_bits", 2 * lanes * bits)
        x.add("mux_bits", 2 * lanes * bits)
        x.add("counter_bits", _rw(h) + _rw(w) + _rw(g))
        x.mults += 2 * _const_mul(w, g, family)
    elif kind == "decision":
        spec: DecisionSpec = p["spec"]
        cl, wd, b, idw = spec.classes, p["logit_width"], spec.threshold_bits, p["id_width"]
        sb = spec.sum_bits
        # the LUT ROM (``rom_style = "logic"``) is read into a register (e2, counted below)
        x.memory(spec.lut_size, spec.exp_bits + 1, rom=True, read_reg=False)
        # No multiplier: the exit test t * S <= 2**(E+B) is t <= confidence, compared a bit a
        # step beside the serial divider (the final exit's mode is constant: no compare).
        # the "single" store keeps one copy of the logits and of z_max (ExitDecision store);
        # "ram" keeps that copy in SPRAM (an address mux instead of the shift register's
        # input)
        store = p.get("store", "double")
        copies = 1 if store in ("single", "ram") else 2
        ram = store == "ram"
        # the max and, per copy, the max with the index's rounding term (one bit wider) and
        # (``bound``, deep boards) the index's saturation bound (two bits wider)
        bound = p.get("bound", False)
        # (stage 1's max and argmax held twice, a candidate and a held register; not "ram":
        # the rounded max and the bound too)
        held = wd + _rw(cl) + (0 if ram else (wd + 1) + (wd + 2) * bound)
        x.add("regs", copies * (cl * wd + wd + 1 + (wd + 2) * bound) + wd + 3 * idw
              + 4 * (b + 1) + 2 * max(1, _rw(cl)) * 3 + _rw(cl) * 2 + 3 * sb + 1 + _rw(b) + 14
              + _rw(spec.lut_size) + spec.exp_bits + 1 + 6  # the pipelined sum stage
              + (cl if copies == 2 else 0)      # "double": the collect store's one-hot slot
              # "ram": no logit flip-flops; the read data register and two valid flags more
              - (cl * wd - wd - 4 if ram else 0)
              # the bit-serial threshold test's two flags (not in the final exit's unit,
              # whose mode is constant)
              + (0 if p.get("final", False) else 2)
              # the held registers above and the new-max flag
              + held + 1)
        x.add("mux_bits", (cl * wd if copies == 2 else _rw(cl) if ram else wd) + 2 * sb + held)
        x.add("cmp_bits", (2 + bound) * wd + 3 * sb)
    elif kind == "cond_buffer":
        width, bps, depth = p["width"], p["beats_per_sample"], p["depth"]
        total = bps * depth
        # one memory, or (out_reg) the columns one block RAM deep the buffer stores them in
        for bits in storage_columns(width, total, p.get("out_reg", False)):
            mm = x.memory(total, bits, rom=False, read_reg=True, collisions=False)
            if p.get("out_reg", False) and family == "ecp5" and mm.kind == "bram":
                x.absorbed += bits      # the read-data register, the column's output register
        # + the registered flags (room, one slot, decided, undecided, writing, last beat), the
        # oldest slot's decision, the next slot index and the decided-slot count
        x.add("regs", 2 * _rw(total) + 2 * _rw(bps) + 2 * _rw(depth) + 2 * _rw(depth + 1)
              + depth + 1 + 7 + _rw(depth) + _rw(depth + 1)
              + (width + 1 if p.get("out_reg", False) else 0))      # the read-data register
        x.add("counter_bits", 2 * _rw(total) + 2 * _rw(bps) + 3 * _rw(depth)
              + 3 * _rw(depth + 1))
    elif kind == "fork":
        x.add("regs", p["n"])
        x.add("fork_bits", p["n"])
    elif kind == "id_fifo":
        width, depth = p["width"], p["depth"]
        x.memory(depth - 1, width, rom=False, read_reg=True)
        x.add("regs", 2 * _rw(depth - 1) + _rw(depth) + 2)
        x.add("counter_bits", 2 * _rw(depth - 1) + _rw(depth))
    elif kind == "merge":
        n, width = p["n"], p["width"]
        # the output register and its valid, the last grant and the one-hot grant register
        x.add("regs", width + _rw(n) + 1 + _rw(n) + n)
        x.add("mux_bits", n * width)
        x.add("arbiter_terms", n * n)
    elif kind == "skid":
        _skid_features(x, p["width"])
    elif kind == "router":
        x.add("regs", 3)
    elif kind == "tagger":
        pass
    elif kind == "id_counter":
        x.add("regs", p["width"])
        x.add("counter_bits", p["width"])
    else:
        raise ValueError(f"unknown block kind {kind!r}: use one of {', '.join(KINDS)}")
    return x


# --- the model --------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def load_model(path: Path | None = None) -> dict:
    """The fitted model (``resource_model.json``): {"families": {family: {"lut": {feature: c},
    "ff": {...}}}, "configs": [...], "errors": {...}, "how": "..."}."""
    return _load(str(path or MODEL_PATH))


def _linear(coefs: dict, feats: dict) -> float:
    return sum(coefs.get(name, 0.0) * value for name, value in feats.items())


def estimate_block(kind: str, family: str, *, model: dict | None = None, **params) -> Resources:
    """Resources of one block. Parameters per kind:

    conv    shape (C, H, W), cout, in_bits, weight_bits, in_lanes, pe, simd, acc_width,
            bias_width, out_bits, out_lanes, deep (optional, default False: `HwGraph.deep`),
            soft (optional, default 0: `Fold.soft`, PE rows with their products in logic;
            True: all)
    conv_frame  the same (in_lanes 1, simd 1): `FrameConv2dStage` (`codegen.conv_impl`)
    linear  shape, cout, in_bits, weight_bits, in_lanes, pe, simd, acc_width, bias_width,
            out_bits (acc_width for logits), out_lanes, deep (optional), soft (optional),
            raw (optional, default False: raw logits, no requantiser)
    pool    shape, lanes, bits
    decision  spec (DecisionSpec), logit_width, id_width, final (the last exit: always-exit
            mode, its threshold compare is optimised away), store ("double" | "single" | "ram"),
            bound (optional, default False: the saturation-bound register, `HwGraph.deep`)
    cond_buffer  width (payload bits), beats_per_sample, depth, out_reg (default False)
    skid width (payload bits);  fork n;  id_fifo width, depth;  merge n, width (result bits);
    router;  tagger;  id_counter width
    """
    _check_family(family)
    model = model or load_model()
    fam = "ecp5" if family == "xc7" else family
    x = block_features(kind, family, **params)
    coefs = model["families"][fam]
    lut = max(0.0, _linear(coefs["lut"], x.f)) + (2 * x.dist if fam == "ecp5" else 0)
    ff = max(0.0, _linear(coefs["ff"], x.f) - x.absorbed)
    if family == "xc7":
        lut = (lut - 2 * x.dist) * XC7_LUT_PER_LUT4 + x.dist
    return Resources(lut=round(lut), ff=round(ff), dsp=x.mults, bram=x.bram)


# --- stages and designs -----------------------------------------------------------------------

def _bias_width(bias) -> int:
    from ..numerics import bits_for_range
    b = np.asarray(bias, dtype=np.int64)
    return bits_for_range(min(int(b.min()), -1), int(b.max()))


def _stage_params(stage: Stage, weights: dict | None, in_lanes: int, in_bits: int,
                  in_signed: bool, deep: bool = False) -> dict:
    """`estimate_block` parameters of a conv/linear/pool stage (``deep``: `HwGraph.deep`)."""
    p, f = stage.params, stage.fold
    if stage.kind == "pool":
        return {"shape": tuple(stage.in_shape), "lanes": in_lanes, "bits": in_bits}
    cout = stage.out_shape[0]
    if weights is not None:
        w = weights[p["weight"]]
        b = weights[p["bias"]] if p.get("bias") else np.zeros(cout, np.int64)
        acc_w, bias_w = accumulator_width(w, b, in_bits, in_signed), _bias_width(b)
    else:   # worst case from the weight width; the bias as wide as the accumulator
        n = int(np.prod(stage.in_shape)) * (9 if stage.kind == "conv" else 1)
        acc_w = (n << (p["weight_bits"] - 1 + in_bits)).bit_length() + 1
        bias_w = acc_w
    logits = p.get("shift") is None
    return {"shape": tuple(stage.in_shape), "cout": cout, "in_bits": in_bits,
            "weight_bits": p["weight_bits"], "in_lanes": in_lanes, "pe": f.pe, "simd": f.simd,
            "acc_width": acc_w, "bias_width": bias_w,
            "out_bits": acc_w if logits else p["out_bits"],
            "out_lanes": 1 if logits else f.out_lanes, "deep": deep, "soft": f.soft,
            **({"raw": True} if logits and stage.kind == "linear" else {})}


def estimate_stage(stage: Stage, family: str, *, weights: dict | None = None, in_lanes: int = 1,
                   in_bits: int = 8, in_signed: bool = False, deep: bool = False) -> Resources:
    """Resources of a conv / linear / pool stage at its fold. ``weights`` (the IR arrays) gives
    the exact accumulator width; without them a worst case from ``weight_bits`` is used.
    ``deep``: the MVU's deep pipeline (`HwGraph.deep`)."""
    _check_family(family)
    if stage.kind not in ("conv", "linear", "pool"):
        raise ValueError(f"estimate_stage: stage {stage.name} is a {stage.kind} stage; "
                         "use estimate_design for decision units")
    return estimate_block(_block_kind(stage, in_lanes, in_bits), family,
                          **_stage_params(stage, weights, in_lanes, in_bits, in_signed, deep))


def _block_kind(stage: Stage, in_lanes: int, in_bits: int) -> str:
    """The `estimate_block` kind of a conv / linear / pool stage: a conv is ``conv_frame`` when
    codegen builds it as a `FrameConv2dStage` (`codegen.conv_impl`)."""
    from .codegen import conv_impl
    if stage.kind == "conv" and conv_impl(stage, in_lanes, in_bits) == "frame":
        return "conv_frame"
    return stage.kind


def design_blocks(graph: HwGraph, weights: dict, *, buffer_depth: int = 4,
                  id_width: int = 8) -> list[tuple[str, str, dict]]:
    """The blocks of ``Accelerator(graph, weights, ..., buffer_depth, id_width)`` as
    (name, kind, `estimate_block` parameters), in the order `Accelerator.elaborate` makes them."""
    from .codegen import analysis_block, decision_store, logit_ram, output_format
    out = []
    fmt = {None: (1, graph.input_bits, False)}

    def beat_bits(src):      # a beat of ``src``'s output stream: its values, first, last
        return fmt[src][0] * fmt[src][1] + 2

    acc, cycles = {}, {}
    for st in graph.stages:
        if st.kind == "decision":
            continue
        lanes, bits, sgn = fmt[st.src]
        params = _stage_params(st, weights, lanes, bits, sgn, graph.deep)
        out.append((st.name, _block_kind(st, lanes, bits), params))
        fmt[st.name] = output_format(st, fmt[st.src], params.get("acc_width"))
        if st.kind != "pool" and st.params.get("shift") is None:
            acc[st.name] = params["acc_width"]
            blk = analysis_block(st, weights, lanes, bits, sgn, graph.deep)  # logits' producer
            cycles[st.name] = blk.cycles_per_sample
        if graph.skid_after(st):
            out.append((f"skid_{st.name}", "skid", {"width": beat_bits(st.name)}))
    for src in [None] + [s.name for s in graph.stages]:
        if src is not None and graph.stage(src).kind == "decision":
            continue
        users = graph.consumers(src)
        if len(users) > 1:
            out.append((f"fork_{src}", "fork", {"n": len(users)}))
            if graph.fork_skids(src):     # after each of the fork's outputs
                out.extend((f"skid_fork_{src}_{k}", "skid", {"width": beat_bits(src)})
                           for k in range(len(users)))
    spec0 = None
    ram = logit_ram(graph, [acc[st.src] for st in graph.stages if st.kind == "decision"])
    for st in graph.stages:
        if st.kind != "decision":
            continue
        spec = DecisionSpec.from_dict(st.params["decision"])
        spec0 = spec0 or spec
        out.append((f"decision{st.exit}", "decision",
                    {"spec": spec, "logit_width": acc[st.src], "id_width": id_width,
                     "final": st.exit == graph.exits - 1,
                     "store": decision_store(spec, cycles[st.src], ram), "bound": graph.deep}))
        if graph.skids or graph.decision_skids:     # after the decision unit: its result
            out.append((f"skid_d{st.exit}", "skid",
                        {"width": decision_layout(id_width, graph.classes,
                                                  spec.threshold_bits).size}))
        out.append((f"tag{st.exit}", "tagger", {}))
        if graph.skids:     # between the tagger and the decision unit: a tagged logit beat
            out.append((f"skid_tag{st.exit}", "skid",
                        {"width": acc[st.src] + id_width + 2}))
        out.append((f"router{st.exit}", "router", {}))
        if st.exit == 0:
            out.append(("ids0", "id_counter", {"width": id_width}))
    for k in range(1, graph.exits):
        out.append((f"idq{k}", "id_fifo", {"width": id_width, "depth": buffer_depth + 8}))
    for st in graph.stages:
        k = graph.buffer_before(st)
        if k is not None:
            src = graph.stage(st.src)
            lanes = fmt[st.src][0]
            c, h, w = src.out_shape if len(src.out_shape) == 3 else (src.out_shape[0], 1, 1)
            out.append((f"cbuf{k}", "cond_buffer",
                        {"width": beat_bits(st.src), "beats_per_sample": h * w * (c // lanes),
                         "depth": buffer_depth, "out_reg": graph.deep}))
            # its decisions (one bit) through a skid buffer, on every board
            out.append((f"skid_dec{k}", "skid", {"width": 1}))
            if graph.skids:     # after the conditional buffer
                out.append((f"skid_cbuf{k}", "skid", {"width": beat_bits(st.src)}))
    cls_w = max(1, (graph.classes - 1).bit_length())
    out.append(("merge", "merge", {"n": graph.exits,
                                   "width": id_width + cls_w + spec0.threshold_bits + 1}))
    return out


#: iCE40 logic cells (ICESTORM_LC) hold one LUT4 and one FF, and a FF shares a cell only with
#: the LUT that feeds it: FFs fed by FFs (shift registers, pipeline and holding registers) take
#: cells of their own. Measured on nextpnr-ice40 packings of two digits designs in the UART
#: harness (exitgate build, synth_ice40 -dsp, yowasp 0.5x): 4765 cells for 2333 LUT + 3125 FF
#: (baseline, smallest folding), 5261 for 2977 + 2985 (early exit, a wider folding), i.e. 0.78
#: and 0.77 of the FFs unpaired. Measured again once the decision units' logits had left their
#: flip-flops for SPRAM (those shift registers were the largest group of FFs fed by FFs; yowasp
#: yosys 0.70, nextpnr 0.11): 4152 cells for 2727 LUT + 2222 FF (digits early exit), 3676 for
#: 2000 + 2324 (its baseline), i.e. 0.64 and 0.72; the larger is taken. An estimate from the
#: designs measured, not a fit.
ICE40_UNPAIRED_FF = 0.72

#: The UART harness `exitgate build` wraps every design in (`exitgate.boards.harness`): receive
#: FIFO, UART, result framer, threshold copies, the registered ctrl write, the pixel and result
#: skid buffers. Measured as yosys synthesis of the harnessed digits early-exit design minus
#: the accelerator alone (2 exits, 64 pixels a sample): iCE40 362 / 346. ECP5: the earlier
#: measurement (320 / 236, before the ctrl register and the skid buffers) plus the iCE40
#: increment of those (+67 / +95), since synth_ecp5 of the whole Verilog fails in this yowasp
#: (the board build, from RTLIL, does not). Compile reserves it in the budget.
HARNESS = {"ice40": Resources(lut=362, ff=346, dsp=0, bram=1),
           "ecp5": Resources(lut=387, ff=331, dsp=0, bram=0)}


def harness_estimate(family: str) -> "Resources":
    """What the UART harness adds to a design on ``family`` (`HARNESS`; xc7 from ECP5 as in
    `estimate_block`)."""
    _check_family(family)
    if family == "xc7":
        h = HARNESS["ecp5"]
        return Resources(lut=round(h.lut * XC7_LUT_PER_LUT4), ff=h.ff, dsp=0, bram=0)
    return HARNESS[family]


def logic_cells(res: "Resources", family: str) -> int | None:
    """Estimated packed logic cells where a cell holds one LUT and one FF (iCE40); None for
    families that pack LUTs and FFs independently enough for the LUT and FF budgets to decide."""
    if family != "ice40":
        return None
    return int(round(res.lut + ICE40_UNPAIRED_FF * res.ff))


def estimate_design(graph: HwGraph, weights: dict, family: str, *, buffer_depth: int = 4,
                    id_width: int = 8, per_block: dict | None = None) -> Resources:
    """Resources of the whole `Accelerator` (the sum of its blocks, `design_blocks`). Pass a dict
    as ``per_block`` to receive each block's estimate by name."""
    _check_family(family)
    model = load_model()
    total = Resources()
    for name, kind, params in design_blocks(graph, weights, buffer_depth=buffer_depth,
                                            id_width=id_width):
        r = estimate_block(kind, family, model=model, **params)
        if per_block is not None:
            per_block[name] = r
        total = total + r
    return total
