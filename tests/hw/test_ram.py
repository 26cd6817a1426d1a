"""`exitgate.hw.ram`: the read register simulates as a non-transparent synchronous read, a
read / write collision reads the inverted old word only under `poison_collisions`, and yosys
maps the memory to one block RAM with no collision logic beside it."""

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from exitgate.hw.ram import poison_collisions, read_register, sdp_memory


def _design():
    m = Module()
    m.submodules.mem = mem = sdp_memory(shape=9, depth=2048)
    wr = mem.write_port()
    rd = read_register(m, mem, wr)
    return m, wr, rd


def _collide(poison: bool) -> list[int]:
    """Write 5 then 7 to word 3; read word 3 on the cycle 7 is written, then once more."""
    with poison_collisions(poison):
        m, wr, rd = _design()
        sim = Simulator(m)
    sim.add_clock(1e-6)
    got = []

    async def bench(ctx):
        ctx.set(wr.addr, 3)
        ctx.set(wr.data, 5)
        ctx.set(wr.en, 1)
        await ctx.tick()
        ctx.set(wr.data, 7)
        ctx.set(rd.addr, 3)
        ctx.set(rd.en, 1)
        await ctx.tick()                 # write 7 and read word 3 on the same edge
        got.append(ctx.get(rd.data))
        ctx.set(wr.en, 0)
        await ctx.tick()
        got.append(ctx.get(rd.data))
        ctx.set(rd.en, 0)
        ctx.set(rd.addr, 0)
        await ctx.tick()                 # disabled: the data holds
        got.append(ctx.get(rd.data))

    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("poison, first", [(False, 5), (True, 5 ^ 0x1FF)])
def test_read_register_is_a_non_transparent_read_and_poison_marks_collisions(poison, first):
    assert _collide(poison) == [first, 7, 7]


@pytest.mark.parametrize("family, ram", [("ecp5", "DP16KD"), ("ice40", "SB_RAM40_4K")])
def test_synthesises_to_block_ram_alone(family, ram):
    from amaranth.back import verilog

    from exitgate.boards.synth import synthesise
    with poison_collisions(False):      # the shipped design (this folder poisons, conftest)
        m, wr, rd = _design()
        text = verilog.convert(m, ports=[wr.addr, wr.data, wr.en, rd.addr, rd.en, rd.data],
                               name="top")
    r = synthesise(text, family)
    assert r["bram"] == (1 if family == "ecp5" else 5)
    assert r["cells"][ram] == r["bram"]
    # no copy of the write data and address, no compare, no mux: 31 flip-flops and about 40
    # LUTs (ECP5) for a read_port(transparent_for=()) of the same memory. iCE40 keeps one LUT
    # per data bit and a flip-flop beside its five 2-bit-wide RAMs either way.
    assert r["ff"] <= 1 and r["lut"] <= (0 if family == "ecp5" else 9), r["cells"]
