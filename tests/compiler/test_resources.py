"""Resource estimates: structure (monotone in PE*SIMD, BRAM geometry, DSP mapping), the fitted
model's file, errors on bad input, and one small block against a real yosys synthesis."""

import numpy as np
import pytest
from amaranth.back import verilog

from exitgate.compiler import resources as rm
from exitgate.compiler.resources import (FAMILIES, KINDS, Resources, block_features, bram_tiles,
                                         estimate_block, load_model, map_memory)
from exitgate.hw.conv import window_buffer_banks


def _conv(pe, simd, **kw):
    p = dict(shape=(8, 8, 8), cout=16, in_bits=8, weight_bits=4, in_lanes=1, pe=pe, simd=simd,
             acc_width=18, bias_width=10, out_bits=8, out_lanes=1)
    p.update(kw)
    return p


def _linear(pe, simd):
    return dict(shape=(16, 4, 4), cout=32, in_bits=8, weight_bits=4, in_lanes=4, pe=pe,
                simd=simd, acc_width=18, bias_width=10, out_bits=8, out_lanes=1)


@pytest.mark.parametrize("family", FAMILIES)
def test_conv_and_linear_grow_with_pe_times_simd(family):
    for kind, make, folds in (("conv", _conv, [(1, 1), (1, 8), (2, 8), (4, 8), (8, 8)]),
                              ("linear", _linear, [(1, 4), (2, 4), (2, 8), (4, 16)])):
        ests = [estimate_block(kind, family, **make(pe, simd)) for pe, simd in folds]
        luts = [e.lut for e in ests]
        assert luts == sorted(luts), (kind, family, luts)
        dsps = [e.dsp for e in ests]
        assert dsps == sorted(dsps) and dsps[-1] >= folds[-1][0] * folds[-1][1]


def test_ice40_maps_products_of_11_bits_to_dsp():
    """The builds run synth_ice40 -dsp: a product of >= 11 bits takes an SB_MAC16, a narrower
    one stays in LUTs."""
    small = estimate_block("conv", "ice40", **_conv(1, 1))
    big = estimate_block("conv", "ice40", **_conv(8, 8))
    assert (small.dsp, big.dsp) == (1, 64)   # 8 x 4 bits: 12-bit products
    narrow = [estimate_block("conv", "ice40", **_conv(pe, 8, in_bits=4, weight_bits=2))
              for pe in (1, 8)]
    assert [r.dsp for r in narrow] == [0, 0]   # 4 x 2 bits: 6-bit products, soft logic
    assert narrow[1].lut > narrow[0].lut + 56 * 4


def test_ice40_dsp_count_matches_synthesis():
    """SB_MAC16 of a small conv, estimated vs synth_ice40 -dsp (the options the builds use)."""
    from exitgate.boards.synth import synthesise
    from exitgate.hw.conv import Conv2dStage
    rng = np.random.default_rng(0)
    for in_width, wbits, pe, simd in ((8, 8, 2, 2), (4, 2, 2, 3)):
        lim = (1 << (wbits - 1)) - 1
        dut = Conv2dStage(rng.integers(-lim, lim + 1, (4, 2, 3, 3)), rng.integers(-9, 9, 4),
                          (2, 4, 4), in_width=in_width, weight_bits=wbits, shift=3, pe=pe,
                          simd=simd)
        syn = synthesise(verilog.convert(dut, name="top"), "ice40")
        est = estimate_block("conv", "ice40", shape=(2, 4, 4), cout=4, in_bits=in_width,
                             weight_bits=wbits, in_lanes=1, pe=pe, simd=simd,
                             acc_width=dut.acc_width, bias_width=5, out_bits=8, out_lanes=pe)
        assert est.dsp == syn["dsp"] == (pe * simd if in_width + wbits >= 11 else 0)


def test_ecp5_estimate_takes_off_the_registers_a_build_moves_into_block_ram():
    """A deep linear stage for the ULX3S whose weight ROM (512 x 128 bits) is block RAM: its
    "rom" operand register becomes the RAMs' output register in a build
    (`exitgate.boards.bram_outreg`); the estimate counts the same flip-flops and takes them
    off its FF figure, and no other family's estimate does."""
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from exitgate.boards.synth import synthesise
    from exitgate.hw.linear import LinearStage
    rng = np.random.default_rng(4)
    w, b = rng.integers(-127, 128, (32, 256)), rng.integers(-500, 500, 32)
    dut = LinearStage(w, b, (16, 4, 4), in_width=8, weight_bits=8, shift=7, pe=2, simd=8,
                      deep=True)
    params = dict(shape=(16, 4, 4), cout=32, in_bits=8, weight_bits=8, in_lanes=1, pe=2,
                  simd=8, acc_width=dut.acc_width, bias_width=11, out_bits=8, out_lanes=1,
                  deep=True)
    assert map_memory(512, 128, "ecp5", rom=True).kind == "bram"
    syn = synthesise(verilog.convert(dut, name="top", platform=ULX3S_85F_Platform()), "ecp5")
    x = block_features("linear", "ecp5", **params)
    assert x.absorbed == syn["absorbed"] == 2 * 8 * 8
    assert block_features("linear", "ice40", **params).absorbed == 0
    assert block_features("linear", "ecp5", **{**params, "deep": False}).absorbed == 0
    model = load_model()
    fitted = rm._linear(model["families"]["ecp5"]["ff"], x.f)
    assert estimate_block("linear", "ecp5", **params).ff == round(fitted - x.absorbed)


def test_ecp5_counts_one_dsp_per_product():
    r = estimate_block("conv", "ecp5", **_conv(4, 8))
    assert r.dsp >= 32


@pytest.mark.parametrize("family,depth,width,tiles", [
    ("ice40", 256, 16, 1), ("ice40", 512, 8, 1), ("ice40", 512, 16, 2), ("ice40", 2048, 2, 1),
    ("ice40", 2048, 4, 2), ("ice40", 100, 64, 4),
    ("ecp5", 1024, 18, 1), ("ecp5", 2048, 9, 1), ("ecp5", 2048, 18, 2), ("ecp5", 512, 36, 1),
    ("ecp5", 16384, 1, 1), ("ecp5", 100, 72, 2),
])
def test_bram_tiles_follow_the_primitive_geometry(family, depth, width, tiles):
    assert bram_tiles(depth, width, family) == tiles


def test_memory_mapping_follows_yosys_costs():
    # iCE40: a RAM of more than 64 bits costs more in FFs than one SB_RAM40_4K (cost 64)
    assert map_memory(8, 16, "ice40", rom=False).kind == "bram"
    assert map_memory(4, 8, "ice40", rom=False).kind == "logic"
    # ROM bits cost 1/16 in logic: 72 x 4 stays in LUTs, 144 x 8 goes to BRAM
    assert map_memory(72, 4, "ice40", rom=True).kind == "logic"
    assert map_memory(144, 8, "ice40", rom=True).bram == 1
    # ECP5: small RAMs go to distributed RAM (16x4 cells), never ROMs
    assert map_memory(8, 16, "ecp5", rom=False) == rm.MemoryMap("dist", dist=4, bits=128)
    assert map_memory(72, 4, "ecp5", rom=True).kind == "logic"
    # an asynchronous read port cannot use block RAM
    assert map_memory(256, 13, "ice40", rom=True, sync_read=False).kind == "logic"


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown FPGA family 'gowin': use one of "
                                         r"ice40, ecp5, xc7"):
        estimate_block("conv", "gowin", **_conv(1, 1))
    with pytest.raises(ValueError, match=r"unknown block kind 'fft'"):
        estimate_block("fft", "ice40")


def test_model_file_has_every_fitted_kind_and_family():
    model = load_model()
    assert set(model["families"]) == {"ice40", "ecp5"}
    fitted = {c["kind"] for c in model["configs"]}
    assert fitted == set(KINDS) - {"router", "tagger", "id_counter"}   # analytic, tiny
    for fam in ("ice40", "ecp5"):
        assert model["families"][fam]["ff"]["regs"] > 0.5
        assert model["errors"][f"{fam}/fit"]["n"] > 0 and model["errors"][f"{fam}/held"]["n"] > 0
    assert "how" in model


def test_resources_add_and_fit_a_budget():
    total = Resources(10, 20, 1, 2) + Resources(1, 2, 3, 4)
    assert total == Resources(11, 22, 4, 6)
    assert total.fits({"lut": 11, "ff": 22, "dsp": 4, "bram": 6})
    assert not total.fits({"lut": 11, "ff": 22, "dsp": 3, "bram": 6})


def test_small_block_matches_yowasp_synthesis():
    """A max-pool block, estimated vs synth_ice40: within 15 % (LUT, FF), BRAM exact."""
    from exitgate.boards.synth import synthesise
    from exitgate.hw.pool import MaxPool2x2
    shape, lanes, bits = (8, 6, 6), 2, 8
    syn = synthesise(verilog.convert(MaxPool2x2(shape, lanes=lanes, width=bits), name="top"),
                     "ice40")
    est = estimate_block("pool", "ice40", shape=shape, lanes=lanes, bits=bits)
    assert est.bram == syn["bram"] and est.dsp == syn["dsp"] == 0
    assert abs(est.lut - syn["lut"]) <= 0.15 * syn["lut"], (est, syn)
    assert abs(est.ff - syn["ff"]) <= 0.15 * syn["ff"], (est, syn)


def test_conv_window_buffer_is_one_memory_not_register_banks():
    """The digits model's 16 -> 32 channel conv on 4x4 at PE 1 x SIMD 1: the weights (4608 x 8,
    9 tiles), the window's line buffer (64 x 16, 1 tile) and the window buffer's two banks of
    144 one-value words (288 x 8, 1 tile) are the block RAM; the banks' 2 x 9 x 16 x 8 bits are
    no longer flip-flops."""
    p = dict(shape=(16, 4, 4), cout=32, in_bits=8, weight_bits=8, in_lanes=1, pe=1, simd=1,
             acc_width=21, bias_width=11, out_bits=8, out_lanes=1)
    assert bram_tiles(288, 8, "ice40") == bram_tiles(64, 16, "ice40") == 1
    est = estimate_block("conv", "ice40", **p)
    assert est.bram == bram_tiles(4608, 8, "ice40") + 2 == 11
    assert est.ff < 2 * 9 * 16 * 8
    # SIMD 16: 2 x 9 words of 128 bits, block RAM by yosys' costs (8 tiles = 512 against 2304
    # bits of flip-flops); SIMD 144 (the whole pixel a word): 2 words, cheaper in logic
    wide = block_features("conv", "ice40", **{**p, "simd": 16})
    assert wide.bram == bram_tiles(288, 128, "ice40") + 1 + bram_tiles(18, 128, "ice40")
    assert "ram_bits" not in wide.f
    # ... and with a fold of 32 cycles a pixel, 4 banks hide the window's warm-up of
    # (4 + 4) * 16 steps between samples (window_buffer_banks)
    whole = block_features("conv", "ice40", **{**p, "simd": 144})
    assert window_buffer_banks((16, 4, 4), 1, 32) == 4
    assert whole.f["ram_bits"] == 4 * 144 * 8
    assert whole.bram == 1   # the line buffer (the 32-word weight ROM is cheaper in LUTs)


@pytest.mark.parametrize("family", ["ecp5", "ice40"])
def test_soft_rows_trade_dsps_for_luts(family):
    """Each PE row in logic (`Fold.soft`) takes its SIMD products out of the DSPs and puts them
    in LUTs; all rows in logic: no DSP at all. (iCE40 maps 8x8 products to SB_MAC16s.)"""
    pe, simd = 4, 8
    ests = [estimate_block("conv", family, **_conv(pe, simd, in_bits=8, weight_bits=8,
                                                    deep=family == "ecp5", soft=k))
            for k in range(pe + 1)]
    assert [e.dsp for e in ests] == [(pe - k) * simd for k in range(pe + 1)]
    luts = [e.lut for e in ests]
    assert all(b > a for a, b in zip(luts, luts[1:])), luts
    assert estimate_block("conv", family, **_conv(pe, simd, in_bits=8, weight_bits=8,
                                                  deep=family == "ecp5", soft=True)) == ests[-1]


@pytest.mark.parametrize("deep,skids", [(False, False), (True, True)])
def test_design_blocks_are_the_blocks_codegen_elaborates(trained_run, deep, skids):
    """The estimate counts exactly the blocks `Accelerator.elaborate` instantiates (by name), at
    the stream widths codegen gives them: each stage's input and output lanes, every skid
    buffer's and conditional buffer's payload (e.g. the skid buffers on a fork's outputs: an
    estimate without them, or a codegen without them, fails here). A conv whose output beats
    carry several lanes (the fold's out_lanes) widens everything downstream of it; the estimate
    once read out_lanes from the stage's parameters, not its fold, and counted one lane (a
    66-bit skid buffer as a 10-bit one)."""
    from amaranth.hdl import Fragment
    from exitgate.compiler.codegen import Accelerator
    from exitgate.compiler.graph import Fold, lower
    from exitgate.hw.cond_buffer import ConditionalBuffer
    from exitgate.hw.plumbing import SkidBuffer
    from exitgate.quant.ir import load_ir

    out, _ = trained_run
    ir, weights = load_ir(out)
    g = lower(ir, weights).with_folds({"s0": Fold(4, 9, 4), "s2": Fold(2, 16),
                                       "s3": Fold(4, 16, 2, soft=1), "s5": Fold(2, 16)})
    g = g.with_deep(deep).with_skids(skids)
    acc = Accelerator(g, weights, [1] * (g.exits - 1), buffer_depth=4)
    frag = Fragment.get(acc, None)
    built = {name: sub.origins[0] for sub, name, _ in frag.subfragments}   # the elaboratables
    listed = {name: (kind, p) for name, kind, p in rm.design_blocks(g, weights, buffer_depth=4)}
    assert set(listed) == set(built), (set(listed) ^ set(built))
    assert built["s0"].out_lanes == 4 and built["s3"].out_lanes == 2   # the folds above
    kinds = {kind for kind, _ in listed.values()}
    assert {"conv", "pool", "cond_buffer"} <= kinds
    # without skids, the pools' (after s4, after each output of s1's fork: `HwGraph.skid_after`,
    # `fork_skids`) and the decision's into the conditional buffer only
    always = {"skid_s4", "skid_fork_s1_0", "skid_fork_s1_1", "skid_dec0"}
    assert always <= set(listed)
    assert ({n for n in listed if n.startswith("skid")} == always) != skids
    for n, (kind, p) in listed.items():
        blk = built[n]
        if kind in ("conv", "conv_frame", "linear"):
            assert (p["in_lanes"], p["out_lanes"], p["soft"]) == \
                (blk.in_lanes, blk.out_lanes, blk.soft), n
        elif kind == "pool":
            assert p["lanes"] == blk.lanes, n
        elif kind == "skid":
            assert isinstance(blk, SkidBuffer), n
            assert p["width"] == blk.i.payload.shape().size, n
        elif kind == "cond_buffer":
            assert isinstance(blk, ConditionalBuffer), n
            assert p["width"] == blk.i.payload.shape().size, n
            assert p["out_reg"] == blk.out_reg == deep, n
            # its memories as the estimate counts them: with out_reg, one per column one
            # block RAM deep (the MNIST buffer: 66 one-bit columns, once estimated as 50
            # packed tiles against yosys' 66 DP16KD)
            words = blk.beats_per_sample * blk.depth
            brams = sum(rm.map_memory(words, bits, "ecp5", rom=False).bram
                        for bits in blk.columns)
            assert rm.estimate_block("cond_buffer", "ecp5", **p).bram == brams, n


def test_deep_conditional_buffer_counts_its_column_memories():
    """With out_reg (ECP5) the buffer stores its payload in columns one block RAM deep, one
    memory each: the estimate counts those block RAMs, not the payload packed into tiles."""
    from exitgate.hw.cond_buffer import ConditionalBuffer, storage_columns
    from exitgate.hw.stream import activation_signature

    sig = activation_signature(8, 8)             # 8 lanes of 8 bits + first + last
    blk = ConditionalBuffer(sig, beats_per_sample=196, depth=64, out_reg=True)
    blk._MustUse__silence = True
    assert blk.columns == storage_columns(66, 196 * 64, True) == [1] * 66
    deep = rm.estimate_block("cond_buffer", "ecp5", width=66, beats_per_sample=196, depth=64,
                             out_reg=True)
    flat = rm.estimate_block("cond_buffer", "ecp5", width=66, beats_per_sample=196, depth=64)
    assert deep.bram == 66 and flat.bram == rm.bram_tiles(196 * 64, 66, "ecp5") == 50
