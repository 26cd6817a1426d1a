"""Timing closure aid: place and route one design of a compiled RUN (the early-exit accelerator or
the baseline, in the UART harness, as `exitgate build` does) and say what limits its clock: Fmax,
the critical path's start and end, its logic / routing split, and the units it crosses in order.

    .venv/bin/python bench/fmax_design.py RUN [--design early_exit|baseline]

Builds into bench/out/fmax/<RUN name>/<design>/ (never into RUN/build). The ECP5 digits design
takes about 5 minutes, the iCE40 one about 1.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from exitgate.boards.build import build
from exitgate.boards.profiles import get_board
from exitgate.compiler.flow import harness_args, load_design
from exitgate.runs import read_json

OUT = Path(__file__).resolve().parent / "out" / "fmax"


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--design", choices=("early_exit", "baseline"), default="early_exit")
    args = ap.parse_args()
    m = read_json(args.run / "hw" / "manifest.json")
    acc, _ = load_design(args.run, args.design)
    out = OUT / args.run.resolve().name / args.design
    start = time.monotonic()
    r = build(acc, get_board(m["board"]), out, name="top", **harness_args(m, args.design))
    path = critical_path(Path(r["logs"]["nextpnr"]))
    print(f"{args.design} on {m['board']}: Fmax {r['fmax_mhz']:.2f} MHz, "
          f"{r['resources']} ({time.monotonic() - start:.0f} s, {out})")
    print(f"critical path: {path['logic_ns'] + path['routing_ns']:.2f} ns "
          f"({path['logic_ns']:.2f} logic, {path['routing_ns']:.2f} routing)")
    print(f"  from {path['start']}\n  to   {path['end']}\n  via  {' -> '.join(path['units'])}")


if __name__ == "__main__":
    main()
