"""Timing closure aid: place and route one design of a compiled RUN (the early-exit accelerator or
the baseline, in the UART harness, as `exitgate build` does) and say what limits its clock: Fmax,
the critical path's start and end, its logic / routing split, and the units it crosses in order.

    .venv/bin/python bench/fmax_design.py RUN [--design early_exit|baseline] [--target MHZ]
                                              [--seeds N]

Builds into bench/out/fmax/<RUN name>/<design>/ (never into RUN/build). The ECP5 digits design
takes about 5 to 12 minutes, the iCE40 one about 1.

nextpnr reports one critical path. To see everything in the way of a clock goal, the build asks
for nextpnr's detailed timing report (every net's latest arrival at each sink) and this prints
the endpoints (flip-flop, block-RAM and DSP inputs) that would miss ``--target`` (default: the
goal, 125 MHz on ECP5, 48 MHz on iCE40), counted per design unit with the
worst slack and the net that arrives last, then the worst endpoints one by one. Setup times
are nextpnr's: 0.42 ns for a flip-flop's LSR, taken as 0 for the other pins (nextpnr's figure
for DI, M and CE). iCE40: nextpnr's packer puts each flip-flop into a logic cell behind its
LUT, so the build also writes nextpnr's packed netlist (``routed.json``): a logic cell with its
flip-flop in use is an endpoint at each LUT input (arrival plus the LUT's delay in nextpnr's
iCE40 model, 0.87 to 1.28 ns by input) and at its CEN and SR; block RAM, DSP and SPRAM inputs
are endpoints as they are.

``--nextpnr-arg ARG`` (repeatable) passes ARG to nextpnr (placer and router options), for
every seed.

``--seeds N`` places and routes the same netlist with nextpnr seeds 2..N as well (two at a time)
and prints each seed's Fmax with their median: one seed's figure moves by several per cent
between near-identical netlists (placement), so compare designs on the median.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from exitgate.boards.build import build, read_nextpnr_report, seed_command
from exitgate.boards.profiles import get_board
from exitgate.compiler.flow import harness_args, load_design
from exitgate.runs import read_json
from exitgate.sim.tools import tool_env

OUT = Path(__file__).resolve().parent / "out" / "fmax"
GOAL_MHZ = {"ecp5": 125.0, "ice40": 48.0}
#: ECP5 cell types whose input pins end a timing path (a clocked element)
SEQUENTIAL = {"TRELLIS_FF", "DP16KD", "PDPW16KD", "MULT18X18D", "ALU54B", "TRELLIS_DPR16X4"}
SETUP_NS = {"LSR": 0.42}
#: iCE40: packed cell types whose inputs end a timing path, and a logic cell's LUT delay by
#: input (nextpnr's iCE40 model; a carry-in reaches the flip-flop through the LUT as I3 does)
ICE40_SEQUENTIAL = {"ICESTORM_RAM", "ICESTORM_DSP", "ICESTORM_SPRAM"}
ICE40_LUT_NS = {"I0": 1.28, "I1": 1.23, "I2": 1.0, "I3": 0.87, "CIN": 0.87}
ICE40_CLOCKS = {"CLK", "RCLK", "WCLK", "CLOCK"}


def _unit(cell: str) -> str:
    parts = cell.split(".")
    return ".".join(parts[:2]) if parts[0] == "accelerator" and len(parts) > 2 else \
        re.sub(r"_(TRELLIS|SB_|LUT4|CCU2|DFF).*", "", parts[0])


def _detailed(report: Path) -> list:
    """nextpnr's per-net timings from its report (the build asks for them)."""
    data = json.loads(report.read_text())
    if "detailed_net_timings" not in data:
        raise SystemExit(f"{report} has no detailed timing (nextpnr --detailed-timing-report)")
    return data["detailed_net_timings"]


def failing_endpoints(report: Path, netlist: Path, period_ns: float):
    """Endpoints (pins of clocked cells, not their clocks) whose latest arrival plus setup
    exceeds ``period_ns``, from nextpnr's detailed report: (slack, cell, port, net), worst first."""
    cells = {}
    for mod in json.loads(netlist.read_text())["modules"].values():
        cells.update({name: c["type"] for name, c in mod["cells"].items()})
    out = []
    for net in _detailed(report):
        for e in net["endpoints"]:
            port = e["port"]
            if cells.get(e["cell"]) not in SEQUENTIAL or port.startswith("CLK"):
                continue
            slack = period_ns - max(e["delay"]) - SETUP_NS.get(port, 0.0)
            if slack < 0:
                out.append((slack, e["cell"], port, net["net"]))
    return sorted(out)


def failing_endpoints_ice40(report: Path, packed: Path, period_ns: float):
    """iCE40 endpoints whose latest arrival (plus the LUT in front of a logic cell's flip-flop)
    exceeds ``period_ns``, from nextpnr's detailed report and its packed netlist ``packed``
    (``--write``): (slack, register, port, net), worst first. A logic cell is named by its
    flip-flop's output net, as yosys named the register."""
    top = next(iter(json.loads(packed.read_text())["modules"].values()))
    names = {}
    for name, net in top["netnames"].items():
        for bit in net["bits"]:
            if bit not in names or (names[bit].startswith("$") and not name.startswith("$")):
                names[bit] = name
    cells = top["cells"]
    out = []
    for net in _detailed(report):
        for e in net["endpoints"]:
            cell, port = cells.get(e["cell"]), e["port"]
            if cell is None or port in ICE40_CLOCKS:
                continue
            if cell["type"] == "ICESTORM_LC":
                if not cell["parameters"].get("DFF_ENABLE", "0").strip("0"):
                    continue                    # no flip-flop: the path goes on
                extra = ICE40_LUT_NS.get(port, 0.1)
                q = cell["connections"].get("O", [])
                reg = names.get(q[0], e["cell"]) if q else e["cell"]
            elif cell["type"] in ICE40_SEQUENTIAL:
                extra, reg = 0.1, e["cell"]
            else:
                continue
            slack = period_ns - max(e["delay"]) - extra
            if slack < 0:
                out.append((slack, reg, port, net["net"]))
    return sorted(out)


def print_endpoints(fails, target_mhz: float, top: int = 25) -> None:
    by_unit = defaultdict(list)
    for f in fails:
        by_unit[_unit(f[1])].append(f)
    print(f"{len(fails)} endpoints miss {target_mhz:g} MHz ({1e3 / target_mhz:.2f} ns); "
          "per unit: count, worst slack ns, the net arriving last at the worst")
    for unit, fs in sorted(by_unit.items(), key=lambda kv: kv[1][0][0]):
        print(f"  {unit:32s} {len(fs):5d} {fs[0][0]:7.2f}  {fs[0][3]} -> {fs[0][2]}")
    print(f"worst {min(top, len(fails))}:")
    for slack, cell, port, net in fails[:top]:
        print(f"  {slack:6.2f}  {cell}.{port}  <- {net}")


def critical_path(tim: Path) -> dict:
    """The last (post-route) critical path of nextpnr's log ``tim``: start, end, logic and
    routing ns, and the design units (the hierarchy below the top) it crosses, in order."""
    text = tim.read_text()
    reports = re.findall(r"Critical path report for clock '[^']*' \(posedge -> posedge\):\n"
                         r"(.*?)\nInfo: ([\d.]+) ns logic, ([\d.]+) ns routing", text, re.S)
    if not reports:
        raise SystemExit(f"no critical path in {tim}")
    body, logic, routing = reports[-1]
    sources = re.findall(r"Source (\S+)", body)
    units = []
    for name in re.findall(r"(?:Source|Net) (\S+)", body):       # in path order
        parts = name.split(".")
        unit = ".".join(parts[:2]) if parts[0] == "accelerator" and len(parts) > 2 else parts[0]
        unit = re.sub(r"_(TRELLIS|SB_|LUT4|CCU2|DFF).*", "", unit)
        if not units or units[-1] != unit:
            units.append(unit)
    return {"start": sources[0], "end": sources[-1], "logic_ns": float(logic),
            "routing_ns": float(routing), "units": units}


def seed_fmax(out: Path, family: str, seeds, workers: int = 2) -> dict[int, float]:
    """Fmax (MHz) of the netlist built in ``out`` (its build script's nextpnr command) placed
    and routed again with each of ``seeds``, ``workers`` at a time; outputs go to
    ``out/seed<N>.*`` (`exitgate.boards.build.seed_command`)."""
    env = tool_env()
    procs = {}
    for seed in list(seeds):
        while sum(p.poll() is None for p in procs.values()) >= workers:
            time.sleep(1)
        procs[seed] = subprocess.Popen(seed_command(family, out, "top", env, seed), cwd=out,
                                       env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
    for p in procs.values():
        p.wait()
    return {sd: read_nextpnr_report(family, out / f"seed{sd}.report.json")[2] for sd in seeds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--design", choices=("early_exit", "baseline"), default="early_exit")
    ap.add_argument("--seeds", type=int, default=1,
                    help="also place and route with nextpnr seeds 2..N (default: seed 1 only)")
    ap.add_argument("--nextpnr-arg", action="append", default=[], metavar="ARG",
                    help="a further nextpnr option for every seed's run, e.g. "
                         "--nextpnr-arg=--router --nextpnr-arg=router2 (repeatable)")
    ap.add_argument("--target", type=float, default=None,
                    help="clock goal in MHz for the endpoint list (default: 125 on ECP5, "
                         "48 on iCE40)")
    args = ap.parse_args()
    m = read_json(args.run / "hw" / "manifest.json")
    acc, _ = load_design(args.run, args.design)
    out = OUT / args.run.resolve().name / args.design
    start = time.monotonic()
    profile = get_board(m["board"])
    extra = ["--write", "routed.json"] if profile.family == "ice40" else []
    r = build(acc, profile, out, name="top", detailed_timing=True,
              nextpnr_args=args.nextpnr_arg + extra, **harness_args(m, args.design))
    path = critical_path(Path(r["logs"]["nextpnr"]))
    print(f"{args.design} on {m['board']}: Fmax {r['fmax_mhz']:.2f} MHz, "
          f"{r['resources']} ({time.monotonic() - start:.0f} s, {out})")
    print(f"critical path: {path['logic_ns'] + path['routing_ns']:.2f} ns "
          f"({path['logic_ns']:.2f} logic, {path['routing_ns']:.2f} routing)")
    print(f"  from {path['start']}\n  to   {path['end']}\n  via  {' -> '.join(path['units'])}")
    target = args.target or GOAL_MHZ.get(profile.family)
    if profile.family == "ecp5":
        print_endpoints(failing_endpoints(Path(r["logs"]["report"]), out / "top.json",
                                          1e3 / target), target)
    elif profile.family == "ice40":
        print_endpoints(failing_endpoints_ice40(Path(r["logs"]["report"]), out / "routed.json",
                                                1e3 / target), target)
    if args.seeds > 1:
        fmax = {1: r["fmax_mhz"], **seed_fmax(out, profile.family, range(2, args.seeds + 1))}
        print("Fmax by nextpnr seed: " + ", ".join(f"{sd}: {f:.2f}" for sd, f in fmax.items())
              + f" MHz; median {statistics.median(fmax.values()):.2f}")


if __name__ == "__main__":
    main()
