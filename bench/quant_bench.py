"""Quantisation benchmark: float vs quantised accuracy at 8- and 4-bit weights, early-exit rate
and accuracy at the calibrated thresholds, Brevitas-vs-reference agreement, training time.

    .venv/bin/python bench/quant_bench.py [--dataset digits] [--out bench/out/quant]

Prints a markdown table (and writes it to OUT/table.md). Each row is a full `exitgate train`
run (QAT model + float baseline) in OUT/<row>/.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

from exitgate.quant.config import default_config_path, load_config
from exitgate.quant.datasets import load_dataset
from exitgate.quant.flow import run_train


def _with_bits(cfg, bits):
    m = cfg.model
    segs = tuple(dataclasses.replace(s, weight_bits=bits) for s in m.segments)
    exits = tuple(dataclasses.replace(e, weight_bits=bits) for e in m.exits)
    return dataclasses.replace(cfg, model=dataclasses.replace(m, segments=segs, exits=exits))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--config", default=None)
    ap.add_argument("--out", default="bench/out/quant")
    ap.add_argument("--bits", default="8,4")
    ap.add_argument("--modes", default="e2e,ic-only")
    args = ap.parse_args(argv)
    ds = load_dataset(args.dataset)
    base = load_config(args.config or default_config_path(
        "digits" if args.dataset == "digits" else "lenet28"))
    out = Path(args.out)
    rows = []
    for mode in args.modes.split(","):
        for bits in (int(b) for b in args.bits.split(",")):
            cfg = _with_bits(base, bits)
            run = out / f"{mode}-w{bits}"
            if run.exists():
                shutil.rmtree(run)
            print(f"[bench] {ds.name}: mode {mode}, {bits}-bit weights ...", file=sys.stderr)
            t0 = time.perf_counter()
            r = run_train(cfg, ds, run, mode=mode, progress=False, log=lambda *a: None)
            wall = time.perf_counter() - t0
            a, g, e0 = r["accuracy"], r["agreement"], r["exits"][0]
            rows.append(
                f"| {mode} | {bits} | {100 * a['float']:.2f} | {100 * a['float_final_only']:.2f} | "
                f"{100 * a['quantised']:.2f} | {100 * a['quantised_final_only']:.2f} | "
                f"{e0['threshold']:.3f} | {100 * e0['rate']:.1f} | "
                f"{100 * (e0['accuracy'] or 0):.2f} | "
                f"{100 * (a['quantised_final_only'] - a['quantised']):+.2f} | "
                f"{100 * r['macs_fraction']:.1f} | "
                f"{g['samples'] - g['logit_mismatches']}/{g['samples']} | "
                f"{r['seconds']['train_qat']:.1f} | {wall:.1f} |")
    head = (f"dataset {ds.name}: train {len(ds.y_train)} / val {len(ds.y_val)} (calibration) / "
            f"test {len(ds.y_test)} (all figures)\n\n"
            "| mode | w bits | float % | float final-only % | quant % | quant final-only % | "
            "T exit0 | exit0 rate % | exit0 acc % | loss pp | MACs % | bit-exact | "
            "QAT train s | step s |\n|" + "---|" * 14)
    table = head + "\n" + "\n".join(rows)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
