"""Energy benchmark: energy per exit, mean energy and the no-exit baseline for every technology
profile, from the activity the RTL counted in `exitgate sim`.

    .venv/bin/python bench/energy_bench.py RUN [--out bench/out/energy]

RUN must be compiled and simulated (`exitgate compile RUN --board ulx3s-85f`, `exitgate sim
RUN`). Runs `exitgate energy` on a copy of RUN's results (RUN itself is not changed), prints a
markdown table per profile (also OUT/table.md) and copies OUT/energy.json and OUT/energy.png.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from exitgate.sim.energy import list_profiles, run_energy


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, default=Path("bench/out/energy"))
    ap.add_argument("--sweep-limit", type=int, default=None)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(args.run, run, ignore=shutil.ignore_patterns(
            "energy.json", "energy.png", "build", "report*"), symlinks=True)
        # the copy reuses RUN's simulator builds (recorded in results.json)
        for name in list_profiles():
            e, _ = run_energy(run, name, force=True, sweep_limit=args.sweep_limit,
                              log=lambda *a: None)
            loss = e["accuracy"]["loss_pp"]
            per = " / ".join(f"{x['energy_pj'] / 1e3:.2f}" for x in e["exits"])
            rows.append(f"| {name} | {per} | {e['energy']['mean_pj'] / 1e3:.2f} | "
                        f"{e['energy']['baseline_pj'] / 1e3:.2f} | {e['energy']['ratio']:.3f} | "
                        f"{loss:.2f} | {'yes' if e['goal']['deeper_exits_cost_more'] else 'NO'} |")
            if name == e["profile"]:
                shutil.copy(run / "energy.json", args.out / f"energy-{name}.json")
                shutil.copy(run / "energy.png", args.out / "energy.png")
    rates = ", ".join(f"exit {x['index']} {100 * x['rate']:.1f}%" for x in e["exits"])
    table = "\n".join([
        f"{e['samples']} samples of {e['dataset']}, thresholds {e['thresholds']}, clock "
        f"{e['clock_mhz']:g} MHz; {rates}; activity vs IR: "
        f"{'agree' if e['activity']['ok'] else 'MISMATCH'}", "",
        "| profile | energy per exit (nJ) | mean (nJ) | baseline (nJ) | mean / baseline | "
        "accuracy loss (pp) | deeper costs more |",
        "|---|---|---|---|---|---|---|", *rows])
    print(table)
    (args.out / "table.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
