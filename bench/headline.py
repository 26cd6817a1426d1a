"""The headline table: per dataset and board, the whole flow and what it gives.

    python bench/headline.py                         # digits on the default board (the default flow)
    python bench/headline.py --case digits:ulx3s-85f --case mnist-t10k:DIR:ulx3s-85f --no-build ulx3s-85f
    python bench/headline.py --runs runs/bench --out bench/headline.md

Each case runs `exitgate flow` into RUNS/<dataset>-<board> (resuming: steps whose inputs have
not changed are skipped, so a re-run only rebuilds the table) and then reads the step artefacts.
The table is printed and written as markdown (--out). Columns: accuracy (float, quantised with
exits, RTL), RTL-vs-reference mismatches (class/exit/logits), speedup over the same-budget
no-exit baseline (measured in simulation, predicted, ideal = 1 / E[work fraction] on the test
samples), resources of both designs (synthesised where built, else estimated, marked "est"),
Fmax, energy per exit and mean vs baseline, seconds per flow step, simulated cycles per second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pct(x):
    return "-" if x is None else f"{100 * x:.2f}"


def _res(d):
    if not d:
        return "-"
    return f"{d.get('lut', '-')}/{d.get('ff', '-')}/{d.get('dsp', '-')}/{d.get('bram', '-')}"


def run_case(spec: str, board: str, runs: Path, build: bool, limit: int | None) -> Path:
    from exitgate.flow import format_flow_table, run_flow
    name = spec.split(":")[0] + "-" + board
    run = runs / name
    print(f"== {spec} on {board} -> {run}", flush=True)
    rec = run_flow(run, dataset=spec, board=board, build=build, limit=limit, progress=False,
                   log=lambda m: print("  " + m, flush=True))
    print(format_flow_table(rec), flush=True)
    return run


def row(run: Path, spec: str, board: str) -> dict:
    tr = _load(run / "train.json") or {}
    man = _load(run / "hw" / "manifest.json") or {}
    sim = _load(run / "sim" / "results.json") or {}
    en = _load(run / "energy.json") or {}
    bld = _load(run / "build" / "build.json") or {}
    flow = _load(run / "flow.json") or {}
    acc = tr.get("accuracy", {})
    g = sim.get("agreement", {})
    tp = sim.get("throughput", {})
    pred = man.get("predicted", {})
    est = man.get("resources", {}).get("estimated")
    est_b = man.get("resources", {}).get("baseline_estimated")
    syn = bld.get("resources", {}).get("synthesised") if bld else None
    syn_b = bld.get("resources", {}).get("baseline_synthesised") if bld else None
    e_exits = en.get("exits", [])
    energy = en.get("energy", {})
    steps = flow.get("steps", {})
    return {
        "dataset": spec.split(":")[0], "board": board,
        "acc float %": _pct(acc.get("float")), "acc quant %": _pct(acc.get("quantised")),
        "acc RTL %": _pct(sim.get("accuracy", {}).get("rtl")),
        "samples": sim.get("samples", "-"),
        "mismatch c/e/l": (f"{g.get('class_mismatches')}/{g.get('exit_mismatches')}/"
                           f"{g.get('logit_mismatches')}" if g else "-"),
        "speedup meas": f"{tp['speedup']:.2f}x" if tp.get("speedup") else "-",
        "speedup pred": f"{pred['speedup']:.2f}x" if pred.get("speedup") else "-",
        "ideal": f"{tp['ideal_speedup']:.2f}x" if tp.get("ideal_speedup") else "-",
        "EE LUT/FF/DSP/BRAM": _res(syn) if syn else (_res(est) + " est" if est else "-"),
        "base LUT/FF/DSP/BRAM": _res(syn_b) if syn_b else (_res(est_b) + " est"
                                                             if est_b else "-"),
        "Fmax MHz": (f"{bld['fmax_mhz']:.1f}" if bld.get("fmax_mhz") else "-")
        + (f" / {bld['baseline_fmax_mhz']:.1f}" if bld.get("baseline_fmax_mhz") else ""),
        "energy/exit nJ": " / ".join(f"{e['energy_pj'] / 1e3:.2f}" for e in e_exits) or "-",
        "mean vs base nJ": (f"{energy['mean_pj'] / 1e3:.2f} vs {energy['baseline_pj'] / 1e3:.2f}"
                            if energy.get("mean_pj") else "-"),
        "steps s (tr/co/si/en/bu/re)": "/".join(
            f"{steps[s]['seconds']:.0f}" if s in steps else "-"
            for s in ("train", "compile", "sim", "energy", "build", "report")),
        "kcycles/s": (f"{sim['wall']['cycles_per_s'] / 1e3:.1f}"
                      if sim.get("wall", {}).get("cycles_per_s") else "-"),
    }


def markdown(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", action="append", metavar="DATASET:BOARD",
                   help="dataset spec and board, e.g. digits:ulx3s-85f or "
                        "mnist-t10k:/path:ulx3s-85f (default: digits on the default board)")
    p.add_argument("--runs", default=str(ROOT / "runs" / "bench"), help="where the RUNs go")
    p.add_argument("--no-build", action="append", default=[], metavar="BOARD",
                   help="skip bitstream builds for this board (repeatable)")
    p.add_argument("--limit", type=int, help="simulate only the first N test samples")
    p.add_argument("--out", default=str(ROOT / "bench" / "headline.md"))
    a = p.parse_args(argv)
    from exitgate.errors import ExitgateError
    from exitgate.boards.profiles import DEFAULT_BOARD
    cases = a.case or [f"digits:{DEFAULT_BOARD}"]
    rows, t0 = [], time.time()
    for case in cases:
        spec, _, board = case.rpartition(":")
        try:
            run = run_case(spec, board, Path(a.runs), board not in a.no_build, a.limit)
        except ExitgateError as e:
            print(f"exitgate: error: {e}", file=sys.stderr)
            return 1
        rows.append(row(run, spec, board))
    md = markdown(rows)
    print(md)
    Path(a.out).write_text(f"<!-- written by `python bench/headline.py "
                           f"{' '.join(sys.argv[1:])}` in {time.time() - t0:.0f} s on "
                           f"{time.strftime('%Y-%m-%d')} -->\n\n{md}\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
