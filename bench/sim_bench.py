"""System-simulation benchmark: the whole digits test split through the generated accelerator on
Verilator (cocotb), scored against the integer reference.

    .venv/bin/python bench/sim_bench.py [--run RUN] [--out bench/out/sim] [--simulator verilator]

RUN is an `exitgate train` directory (trained into OUT/run when missing). Rows: the early-exit
design at the calibrated threshold with a cold build, the same again (cached build), a threshold
sweep through runtime ctrl writes (no rebuild), exit 0 switched off at run time, the back-pressure
mode, and a baseline design whose only exit is the final one. Prints a markdown table (also
OUT/table.md) and writes the Verilog (OUT/top.v, OUT/baseline_top.v) and every run's results
dict (OUT/<row>.json). Builds go to a fresh temporary directory (removed at the end).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from exitgate.compiler.codegen import Accelerator, emit_verilog
from exitgate.compiler.graph import Fold, baseline, lower
from exitgate.numerics import MODE_NEVER, MODE_THRESHOLD
from exitgate.quant.datasets import load_dataset
from exitgate.quant.ir import load_ir
from exitgate.sim.scoreboard import expected_results
from exitgate.sim.system import BACKPRESSURE, simulate

# folds per IR node of the default digits model (as in tests/compiler/test_accelerator.py)
FOLDS = {"s0": Fold(4, 9), "s2": Fold(2, 16), "s3": Fold(4, 16), "s5": Fold(2, 16)}
TOP = "exitgate_top"


def _threshold(run: Path, ir) -> float:
    train = json.loads((run / "train.json").read_text())
    return float(train["exits"][0]["threshold"])


def _row(name, r, build):
    a, th, w = r["agreement"], r["throughput"], r["wall"]
    lat = " / ".join(f"{e['latency_cycles']['mean']:.0f}" if e["latency_cycles"] else "-"
                     for e in r["exits"])
    rates = " / ".join(f"{100 * e['rate']:.1f}" for e in r["exits"])
    return (f"| {name} | {r['samples']} | {100 * r['accuracy']['rtl']:.2f} | "
            f"{a['class_mismatches']}/{a['exit_mismatches']}/{a['confidence_mismatches']}/"
            f"{a['logit_mismatches']} | {rates} | {lat} | "
            f"{1000 * th['samples_per_cycle']:.3f} | "
            f"{1000 * th['samples_per_cycle_overall']:.3f} | "
            f"{r['cycles']['total']} | {w['cycles_per_s'] / 1000:.1f} | {w['sim_s']:.1f} | "
            f"{w['total_s']:.1f} | {build} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="an `exitgate train` directory")
    ap.add_argument("--out", default="bench/out/sim")
    ap.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("digits")
    run = Path(args.run) if args.run else out / "run"
    if not (run / "ir.json").exists():
        from exitgate.quant.config import load_config
        from exitgate.quant.flow import run_train
        print(f"[bench] training {run} ...", file=sys.stderr)
        run_train(load_config(), ds, run, progress=False, float_baseline=False,
                  log=lambda *a: None)
    ir, weights = load_ir(run)
    spec = ir.exits[0].decision
    T = _threshold(run, ir)
    graph = lower(ir, weights).with_folds(FOLDS)
    x, y = ds.x_test, ds.y_test
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]

    # a fresh build directory, so the first row measures a cold build
    build = Path(tempfile.mkdtemp(prefix="exitgate-sim-bench-"))
    t0 = time.perf_counter()
    acc = Accelerator(graph, weights, [spec.threshold_register(T)], buffer_depth=4, taps=True)
    top = out / "top.v"
    top.write_text(emit_verilog(acc, TOP))
    emit_s = time.perf_counter() - t0

    rows, results = [], {}

    def sim(name, expected, build_kind, path=top, **kw):
        print(f"[bench] {name} ...", file=sys.stderr)
        r = simulate(path, TOP, x, expected, simulator=args.simulator, build_dir=build,
                     labels=y, **kw)
        results[name] = r
        slug = re.sub(r"[^\w.=-]+", "_", f"{name} {build_kind}")
        (out / f"{slug}.json").write_text(json.dumps(r, indent=1))
        rows.append(_row(name, r, build_kind))
        if r["errors"]:
            print("\n".join(r["errors"][:20]), file=sys.stderr)
        return r

    exp = expected_results(ir, weights, x, [T])
    sim(f"early-exit T={T:g}", exp, "cold")
    sim(f"early-exit T={T:g}", exp, "cached")
    for t in (0.5, 0.95, 0.99):
        sim(f"ctrl write T={t:g}", expected_results(ir, weights, x, [t]), "cached",
            thresholds_writes=[(0, spec.threshold_register(t), MODE_THRESHOLD)])
    sim("ctrl write: exit 0 off", expected_results(ir, weights, x, [T], modes=[MODE_NEVER, 0]),
        "cached", thresholds_writes=[(0, spec.threshold_register(T), MODE_NEVER)])
    sim(f"back-pressure T={T:g}", exp, "cached", backpressure=BACKPRESSURE)

    base_graph = baseline(graph)
    base_top = out / "baseline_top.v"
    base_top.write_text(emit_verilog(Accelerator(base_graph, weights, [], buffer_depth=4,
                                                 taps=True), TOP))
    base_exp = expected_results(ir, weights, x, [T], modes=[MODE_NEVER, 0])
    sim("baseline (final exit only)", base_exp, "cold", path=base_top,
        exit_index=[len(ir.exits) - 1])

    head = ("| run | samples | RTL acc % | mismatches cls/exit/conf/logit | exit rates % | "
            "mean latency per exit (cycles) | samples/kcycle (steady) | samples/kcycle (overall) "
            "| cycles | kcycles/s | sim s | wall s | build |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    ee = results[f"early-exit T={T:g}"]["throughput"]["samples_per_cycle"]
    bl = results["baseline (final exit only)"]["throughput"]["samples_per_cycle"]
    table = "\n".join([head] + rows) + (
        f"\n\nsimulator {args.simulator}; Verilog emitted in {emit_s:.1f} s; "
        f"steady-state speedup of early exit over the baseline design: {ee / bl:.2f}x\n")
    (out / "table.md").write_text(table)
    print(table)
    shutil.rmtree(build, ignore_errors=True)
    return 0 if all(not r["errors"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
