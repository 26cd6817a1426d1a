"""`exitgate sim RUN`: the compiled early-exit design and its baseline on the test split,
scored sample by sample against the integer reference -> RUN/sim/results.json.

The simulated Verilog is the compiled design regenerated with observation taps on the logits
(`Accelerator(..., taps=True)`: the same logic plus output ports), written to RUN/sim/ beside
the results, so logits are checked too, and the designs' activity counters (MAC cycles,
stream beats, buffer traffic, active cycles per stage) land in ``activity`` and
``baseline.activity`` for `exitgate energy`. With ``--threshold T`` the threshold registers are
written at run time (no rebuild) and the results go to RUN/sim/results-T<T>.json, leaving the
calibrated results.json alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import ExitgateError
from ..numerics import MODE_NEVER, MODE_THRESHOLD
from ..quant.calibrate import ideal_speedup
from ..quant.ir import load_ir
from ..runs import atomic_write, prepare_step, read_json, require_step, write_json
from .scoreboard import expected_results
from .tools import require_simulator

__all__ = ["run_sim"]


def _dataset(ir, spec):
    from ..quant.datasets import load_dataset
    spec = spec or ir.meta.get("dataset")
    if not spec:
        raise ExitgateError("the IR does not say which dataset it was trained on: pass "
                            "--dataset (digits, mnist:DIR, ...)")
    return load_dataset(spec)


def run_sim(run: Path, *, simulator: str = "verilator", limit: int | None = None,
            threshold: float | None = None, dataset: str | None = None, waves: bool = False,
            backpressure: bool = False, force: bool = False, build_dir: Path | None = None,
            log=print) -> tuple[dict, Path]:
    """``build_dir``: where the simulator builds are cached (default: $EXITGATE_SIM_CACHE if set,
    else RUN/sim/build; builds are keyed by the Verilog's hash, so one cache can serve many
    RUNs); recorded in
    the results as ``build_dir`` so `exitgate energy` reuses them for its threshold sweep."""
    from ..compiler.codegen import emit_verilog
    from ..compiler.flow import load_design
    from .system import simulate

    run = Path(run)
    require_step(run, "compile")
    require_simulator(simulator)
    if threshold is not None and not (isinstance(threshold, float) and 0.0 < threshold <= 1.0):
        raise ExitgateError(f"--threshold must be in (0, 1], got {threshold!r}")
    if limit is not None and limit < 1:
        raise ExitgateError(f"--limit must be a positive number of samples, got {limit}")
    out_path = run / "sim" / ("results.json" if threshold is None else f"results-T{threshold:g}.json")
    if out_path.exists() and not force:
        raise ExitgateError(f"{out_path} exists: use --force to replace it")
    if threshold is None:
        prepare_step(run, "sim", force)
    ir, weights = load_ir(run)
    m = read_json(run / "hw" / "manifest.json")
    ds = _dataset(ir, dataset)
    x, y = ds.x_test, ds.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    n_exits = len(ir.exits)
    calibrated = m["thresholds"]["values"]
    thresholds = calibrated if threshold is None else [threshold] * (n_exits - 1)
    writes = None if threshold is None else [
        (k, ir.exits[k].decision.threshold_register(threshold), MODE_THRESHOLD)
        for k in range(n_exits - 1)]
    simdir = run / "sim"
    cache = os.environ.get("EXITGATE_SIM_CACHE")
    build = Path(build_dir) if build_dir is not None else Path(cache) if cache \
        else simdir / "build"
    t0 = time.perf_counter()
    results = {}
    for which in ("early_exit", "baseline"):
        vpath = simdir / ("top_taps.v" if which == "early_exit" else "baseline_top_taps.v")
        if not vpath.exists():
            atomic_write(vpath, emit_verilog(load_design(run, which, taps=True)[0]))
        if which == "early_exit":
            exp = expected_results(ir, weights, x, thresholds)
            kw = {"thresholds_writes": writes}
        else:
            exp = expected_results(ir, weights, x, [1.0] * (n_exits - 1),
                                   modes=[MODE_NEVER] * (n_exits - 1) + [MODE_THRESHOLD])
            kw = {"exit_index": [n_exits - 1]}
        log(f"simulate {which} on {simulator}: {len(x)} samples ...")
        results[which] = simulate(vpath, "exitgate_top", x, exp, simulator=simulator,
                                  build_dir=build, backpressure=backpressure, waves=waves,
                                  labels=y, **kw)
    r, b = results["early_exit"], results["baseline"]
    ideal = ideal_speedup(ir, [e["rate"] for e in r["exits"]])
    tp = r["throughput"]
    tp["baseline_samples_per_cycle"] = b["throughput"]["samples_per_cycle"]
    tp["speedup"] = tp["samples_per_cycle"] / tp["baseline_samples_per_cycle"]
    tp["ideal_speedup"] = ideal
    tp["work_fraction"] = 1.0 / ideal
    pred = m["predicted"]
    r["predicted"] = {
        "samples_per_cycle": pred["samples_per_cycle"],
        "baseline_samples_per_cycle": pred["baseline_samples_per_cycle"],
        "throughput_error": tp["samples_per_cycle"] / pred["samples_per_cycle"] - 1,
        "baseline_throughput_error": tp["baseline_samples_per_cycle"]
        / pred["baseline_samples_per_cycle"] - 1,
        "exits": [{"index": e["index"], "latency_cycles": e["latency_cycles"]}
                  for e in pred["exits"]],
    }
    seq = [p["exit"] for p in r["per_sample"]]
    if None not in seq and len(seq) >= 8:
        # the compiler's model on the exit sequence the RTL took (the manifest's figure is for
        # the val split's sequence, which has other exit rates): this isolates the model's error
        same = _model_throughput(run, weights, seq, m.get("buffer_depth", 16))
        r["predicted"]["same_samples"] = {
            "samples_per_cycle": same,
            "throughput_error": tp["samples_per_cycle"] / same - 1,
            "note": "the compiler's stream model on the exit sequence simulated here, measured "
                    "over the same steady-state window"}
    pace = {"early_exit": stage_loads(m["stages"], r), "baseline":
            stage_loads(m["baseline"]["stages"], b)}
    if all(pace.values()):
        r["stage_loads"] = pace
    r["thresholds"] = thresholds
    r["build_dir"] = str(build)
    r["dataset"] = ds.name
    r["dataset_spec"] = dataset or ir.meta.get("dataset")
    r["baseline"] = {k: b[k] for k in ("samples", "accuracy", "agreement", "exits", "throughput",
                                       "cycles", "wall", "errors", "activity")}
    r["seconds"] = time.perf_counter() - t0
    write_json(out_path, r)
    return r, out_path


#: below this, the busiest stage of a one-level design (the baseline) computed for less than
#: its measured pace: its stages stall each other (`stage_loads`)
COUPLED_LOAD = 0.95


def stage_loads(stages: list[dict], r: dict) -> list[dict] | None:
    """Per conv / linear / pool stage of a design (the manifest's ``stages`` rows) and its
    simulation result ``r``: its busy cycles per sample that reaches it, counted in the RTL
    (conv / linear: cycles with a MAC step, the activity counter ``mac``; pool: input beats,
    one a cycle), beside the compiler's ``cycles_per_sample``; and, for the stages every sample
    passes (level 0), its ``load``: the fraction of the measured steady-state pace it was busy
    (busy cycles x samples per cycle; deeper levels see a share of the samples that differs
    between the steady-state window and the whole run, so they get None). In a one-level
    design the stage the per-stage model makes the bottleneck should be near 1; when the
    busiest stage is well below it, stages stall each other at sample boundaries, which the
    model does not see. None without activity counters."""
    act, n = r.get("activity"), r.get("samples")
    if not act or not n:
        return None
    counts = {e["index"]: e["count"] for e in r["exits"]}
    spc = r["throughput"]["samples_per_cycle"]
    rows = []
    for st in stages:
        counter = {"conv": "mac", "linear": "mac", "pool": "in"}.get(st["kind"])
        if counter is None or st["name"] not in act:
            continue
        # a level-k stage sees the samples leaving at exit k or later
        visitors = sum(c for k, c in counts.items() if k >= st["level"])
        if not visitors:
            continue
        busy = act[st["name"]][counter] / visitors
        rows.append({"stage": st["name"], "kind": st["kind"], "level": st["level"],
                     "predicted_cycles": st["cycles_per_sample"], "busy_cycles": busy,
                     "load": busy * spc if st["level"] == 0 else None})
    return rows


def _busiest_line(which: str, rows: list[dict]) -> str:
    """The busiest level-0 stage of a design and its load; for a one-level design (the
    baseline) whether its stages stall each other (`COUPLED_LOAD`)."""
    first = [x for x in rows if x["load"] is not None]
    top = max(first, key=lambda x: x["load"])
    one_level = len(first) == len(rows)
    line = (f"{which}: busiest {'' if one_level else 'level-0 '}stage {top['stage']} "
            f"({top['kind']}) busy {100 * top['load']:.1f}% of the measured pace "
            f"({top['busy_cycles']:.0f} cycles a sample, predicted {top['predicted_cycles']})")
    if one_level and top["load"] < COUPLED_LOAD:
        near = [x["stage"] for x in rows if x["load"] >= top["load"] - 0.02]
        line += (f": {', '.join(near)} stall each other (the per-stage model does not see "
                 f"this)" if len(near) > 1 else ": it waits on its neighbours")
    return line


def _model_throughput(run: Path, weights: dict, exits: list[int], depth: int) -> float:
    from ..compiler.flow import load_graph
    from ..compiler.perf import level_holds, level_times, stage_timings, steady_throughput
    graph = load_graph(run, "early_exit")[0]
    times = level_times(stage_timings(graph, weights), graph.exits)
    return steady_throughput(times, exits, depth, level_holds(graph, weights, times))


def format_sim_table(r: dict) -> str:
    lines = [f"{'exit':>4} {'rate %':>7} {'acc %':>7} {'latency min/mean/max (cycles)':>32} "
             f"{'predicted':>10}"]
    pred = {e["index"]: e["latency_cycles"] for e in r["predicted"]["exits"]}
    for e in r["exits"]:
        lat = e.get("latency_cycles") or {}
        acc = "-" if e.get("accuracy") is None else f"{100 * e['accuracy']:.2f}"
        span = (f"{lat.get('min', '-')}/{lat.get('mean', 0):.0f}/{lat.get('max', '-')}"
                if lat else "-")
        lines.append(f"{e['index']:>4} {100 * e['rate']:>7.2f} {acc:>7} {span:>32} "
                     f"{pred.get(e['index'], '-'):>10}")
    g, t = r["agreement"], r["throughput"]
    lines.append(f"RTL accuracy {100 * r['accuracy']['rtl']:.2f}% on {r['samples']} samples; "
                 f"mismatches vs reference: class {g['class_mismatches']}, exit "
                 f"{g['exit_mismatches']}, logits {g['logit_mismatches']}")
    lines.append(f"throughput {t['samples_per_cycle'] * 1e3:.3f} samples/kcycle (predicted "
                 f"{r['predicted']['samples_per_cycle'] * 1e3:.3f}"
                 + (f"; {r['predicted']['same_samples']['samples_per_cycle'] * 1e3:.3f} for "
                    "these samples' exits" if r["predicted"].get("same_samples") else "")
                 + "), baseline "
                 f"{t['baseline_samples_per_cycle'] * 1e3:.3f} (predicted "
                 f"{r['predicted']['baseline_samples_per_cycle'] * 1e3:.3f}): speedup "
                 f"{t['speedup']:.2f}x" + (f" (ideal {t['ideal_speedup']:.2f}x)"
                                           if t.get("ideal_speedup") else ""))
    for which, rows in (r.get("stage_loads") or {}).items():
        lines.append(_busiest_line(which.replace("_", " "), rows))
    w = r["wall"]
    lines.append(f"simulated {r['cycles']['total']} cycles at {w['cycles_per_s'] / 1e3:.1f} "
                 f"kcycles/s; wall {r['seconds']:.1f} s for both designs")
    return "\n".join(lines)
