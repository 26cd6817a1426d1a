"""`exitgate compile RUN [--board NAME]`: IR -> folded early-exit accelerator and same-budget
no-exit baseline -> RUN/hw/top.v, RUN/hw/baseline/top.v, RUN/hw/manifest.json.

Passes, in order (printed with `--verbose`): lower, baseline, explore (early exit), explore
(baseline), codegen, manifest.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..boards.build import DEFAULT_TIME_LIMIT_S
from ..errors import ExitgateError
from ..quant.calibrate import ideal_speedup
from ..quant.ir import load_ir
from ..quant.reference import cascade, exit_logits
from ..runs import atomic_write, prepare_step, read_json, require_step, write_json
from .codegen import Accelerator, emit_verilog
from .dse import explore
from .graph import HwGraph, baseline, lower
from .perf import (analytic_throughput, level_fractions, level_holds, level_times,
                   path_latency, steady_throughput)

__all__ = ["run_compile", "exit_sequence", "format_fold_table", "FLOW"]

FLOW = ("lower", "baseline", "explore early-exit", "explore baseline", "codegen", "manifest")
ID_WIDTH = 8
#: conditional-buffer depths tried, largest first, when the user names none: a deeper buffer
#: rides out longer runs of hard samples (`perf.stream_throughput`) but costs block RAM
BUFFER_DEPTHS = (64, 32, 16, 8, 4, 2)
#: skid buffers are dropped when that raises a design's predicted throughput (cycles) by more
#: than this fraction: their Fmax gain on a board where they crowd out folding (the iCE40UP5K)
#: is smaller than the cycles lost
SKID_TRADE = 0.02


def exit_sequence(ir, weights, thresholds, dataset: str | None, rates=None,
                  n: int = 1000) -> tuple[np.ndarray, str]:
    """The exit index per sample that sizing assumes: the calibration (val) split's own sequence
    when the dataset is known, else an i.i.d. sequence with the calibrated exit rates."""
    if dataset:
        from ..quant.datasets import load_dataset
        try:
            ds = load_dataset(dataset)
            c = cascade(ir, exit_logits(ir, weights, ds.x_val), list(thresholds) + [1.0])
            return c.exit.astype(int), f"{dataset} val split ({len(ds.y_val)} samples)"
        except ExitgateError:
            pass
    if rates:
        rng = np.random.default_rng(0)
        return rng.choice(len(rates), size=n, p=np.asarray(rates) / sum(rates)), \
            "i.i.d. with the calibrated exit rates"
    return np.full(n, len(ir.exits) - 1), "no calibration: every sample to the final exit"


def _stage_rows(graph: HwGraph, timings) -> list[dict]:
    t = {x.name: x for x in timings}
    rows = []
    for s in graph.stages:
        row = {"name": s.name, "kind": s.kind, "level": s.level, "in_shape": list(s.in_shape),
               "out_shape": list(s.out_shape), "macs": s.macs, "cycles_per_sample": t[s.name].cycles,
               "latency_cycles": t[s.name].latency, "exit": s.exit, "src": s.src}
        if s.kind in ("conv", "linear"):
            row["fold"] = {"pe": s.fold.pe, "simd": s.fold.simd, "out_lanes": s.fold.out_lanes,
                           "soft": int(s.fold.soft)}
        rows.append(row)
    return rows


#: blocks `format_fold_table` names in its "largest blocks" line
BLOCKS_SHOWN = 5


def format_fold_table(manifest: dict) -> str:
    def mults(f):       # where a stage's products are: DSPs, LUTs (soft) or k rows in LUTs
        k = f.get("soft", 0) if f else 0
        return "" if not f else "DSP" if not k else "LUT" if k == f["pe"] else f"{k}LUT"

    lines = [f"{'stage':<7}{'kind':<10}{'level':>5}{'in':>14}{'out':>14}{'PE':>4}{'SIMD':>6}"
             f"{'lanes':>6}{'mult':>6}{'cycles':>9}  (baseline PE x SIMD)"]
    base = {s["name"]: s for s in manifest["baseline"]["stages"]}
    for s in manifest["stages"]:
        f = s.get("fold", {})
        b = base.get(s["name"], {}).get("fold")
        bs = "-" if not b else f"{b['pe']} x {b['simd']}" + (f" {mults(b)}" if b.get("soft") else "")
        lines.append(f"{s['name']:<7}{s['kind']:<10}{s['level']:>5}{str(tuple(s['in_shape'])):>14}"
                     f"{str(tuple(s['out_shape'])):>14}{f.get('pe', ''):>4}{f.get('simd', ''):>6}"
                     f"{f.get('out_lanes', ''):>6}{mults(f):>6}{s['cycles_per_sample']:>9}  {bs}")
    p = manifest["predicted"]
    r, rb = manifest["resources"]["estimated"], manifest["resources"]["baseline_estimated"]
    lines.append(f"predicted: {p['samples_per_cycle'] * 1e6:.1f} samples/Mcycle, baseline "
                 f"{p['baseline_samples_per_cycle'] * 1e6:.1f}: speedup {p['speedup']:.2f}x "
                 f"(ideal {p['ideal_speedup']:.2f}x)")
    lines.append("resources (estimated): " + ", ".join(
        f"{k.upper()} {r[k]} / baseline {rb[k]} / budget {manifest['budget'][k]}"
        for k in ("lut", "ff", "dsp", "bram")))
    blocks = manifest["resources"].get("per_block", {}).get("early_exit")
    if blocks:      # the largest blocks of the early-exit design (LUT + FF)
        top = sorted(blocks.items(), key=lambda kv: -(kv[1]["lut"] + kv[1]["ff"]))[:BLOCKS_SHOWN]
        lines.append("largest blocks (estimated, early exit, LUT/FF/DSP/BRAM): " + ", ".join(
            f"{n} {r['lut']}/{r['ff']}/{r['dsp']}/{r['bram']}" for n, r in top)
            + " (all: RUN/hw/manifest.json resources.per_block)")
    trimmed = manifest.get("sizing", {}).get("trimmed_products")
    if trimmed and any(trimmed.values()):
        lines.append(f"given back after the search (bought no speed): {trimmed['early_exit']} "
                     f"products early exit, {trimmed['baseline']} baseline")
    return "\n".join(lines)


def _trial_name(skids: bool, depth: int) -> str:
    """Key of a rejected (skid buffers, buffer depth) trial in the manifest: "16", or "16, no
    skid buffers"."""
    return f"{depth}" + ("" if skids else ", no skid buffers")


def run_compile(run: Path, board_name: str | None = None, *, force: bool = False,
                buffer_depth: int | None = None, soft_multipliers: bool = False,
                log=print) -> dict:
    """Compile a trained RUN for a board (see module docstring). ``buffer_depth``: samples each
    conditional buffer holds; None: the largest of `BUFFER_DEPTHS` at which both designs fit.
    ``soft_multipliers``: the DSE may put a stage's products in logic once the DSPs are spent
    (`exitgate.compiler.dse`; both designs, the same budget)."""
    from ..boards.profiles import DEFAULT_BOARD, get_board
    from .resources import Resources, estimate_design, harness_estimate, logic_cells

    run = Path(run)
    require_step(run, "train")
    board = get_board(board_name or DEFAULT_BOARD)
    prepare_step(run, "compile", force)
    t0 = time.perf_counter()
    ir, weights = load_ir(run)
    calib = read_json(run / "calibration.json") if (run / "calibration.json").exists() else {}
    thresholds = calib.get("thresholds", [1.0] * (len(ir.exits) - 1))
    rates = [e["rate"] for e in calib.get("chosen", {}).get("exits", [])] or None
    seq, seq_source = exit_sequence(ir, weights, thresholds, ir.meta.get("dataset"), rates)

    graph = lower(ir, weights).with_deep(board.deep_mvu).with_spram(board.budget.spram)
    base_graph = baseline(graph)
    budget = {k: getattr(board.budget, k) for k in ("lut", "ff", "dsp", "bram")}
    caps = {k: c for k, c in board.budget.caps().items() if k in budget}
    if logic_cells(Resources(), board.family) is not None:   # LUT+FF share cells (iCE40)
        budget["cells"], caps["cells"] = board.budget.lut, board.budget.cap
    family = board.family

    harness = harness_estimate(family)
    requested = buffer_depth
    rejected = {}
    # Skid buffers (Fmax) first; without them (area) only if no buffer depth fits with them.
    # Deeper conditional buffers first (throughput).
    trials = [(skids, depth) for skids in (True, False)
              for depth in ([requested] if requested is not None else BUFFER_DEPTHS)]

    def designs(skids, depth, decision_skids=False):
        def est(g):
            # what the board holds: the accelerator and the UART harness `build` wraps it in
            r = estimate_design(g, weights, family, buffer_depth=depth) + harness
            cells = logic_cells(r, family)
            return r.as_dict() | ({} if cells is None else {"cells": cells})

        def variant(g):
            return g.with_skids(skids).with_decision_skids(decision_skids)

        return (explore(variant(graph), weights, seq, budget, est, cap=caps,
                        depth=depth, soft=soft_multipliers),
                explore(variant(base_graph), weights, np.zeros(len(seq), dtype=int),
                        budget, est, cap=caps, depth=depth, soft=soft_multipliers))

    for skids, buffer_depth in trials:
        try:
            ee, bl = designs(skids, buffer_depth)
            break
        except ValueError as e:
            rejected[_trial_name(skids, buffer_depth)] = str(e)
    else:
        tried = "" if requested is not None else \
            f" at any buffer depth ({', '.join(map(str, BUFFER_DEPTHS))})"
        raise ExitgateError(f"the design does not fit {board.name}{tried}, with or without "
                            f"skid buffers: {rejected[_trial_name(skids, buffer_depth)]}; try a "
                            f"larger board (`--board ulx3s-85f`) or a smaller model")
    if skids:
        # skid buffers cost area; where the area they take would buy a faster folding (a small
        # board), the cycles count for more than the shorter ready paths: compile without them
        # when that raises either design's predicted throughput by more than `SKID_TRADE`
        # (what fits with skid buffers fits without them: they only add area)
        ee_ns, bl_ns = designs(False, buffer_depth)
        if (ee_ns.samples_per_cycle > ee.samples_per_cycle * (1 + SKID_TRADE)
                or bl_ns.samples_per_cycle > bl.samples_per_cycle * (1 + SKID_TRADE)):
            rejected[_trial_name(True, buffer_depth)] = (
                f"fits, but without skid buffers the foldings are faster (DSE stream "
                f"model): early exit "
                f"{ee_ns.samples_per_cycle * 1e6:.1f} vs {ee.samples_per_cycle * 1e6:.1f}, "
                f"baseline {bl_ns.samples_per_cycle * 1e6:.1f} vs "
                f"{bl.samples_per_cycle * 1e6:.1f} samples/Mcycle")
            skids, ee, bl = False, ee_ns, bl_ns
    if not skids:
        # without the other skid buffers, still one after each decision unit where they fit
        # at the same foldings' throughput (`HwGraph.decision_skids`)
        try:
            ee_d, bl_d = designs(False, buffer_depth, decision_skids=True)
        except ValueError as e:
            rejected[f"{buffer_depth}, decision skid buffers only"] = str(e)
        else:
            if (ee_d.samples_per_cycle >= ee.samples_per_cycle
                    and bl_d.samples_per_cycle >= bl.samples_per_cycle):
                ee, bl = ee_d, bl_d
            else:
                rejected[f"{buffer_depth}, decision skid buffers only"] = (
                    "fits, but only at slower foldings")
    if rejected:
        log(f"buffer depth {_trial_name(skids, buffer_depth)}"
            f"{' (but after the decision units)' if ee.graph.decision_skids else ''} "
            f"on {board.name}; not taken: "
            f"{'; '.join(f'{d}: {why}' for d, why in rejected.items())}")
    regs = [ir.exits[k].decision.threshold_register(t) for k, t in enumerate(thresholds)]
    hw = run / "hw"

    def per_block(g):       # the estimate of each block (without the harness), by block name
        blocks = {}
        estimate_design(g, weights, family, buffer_depth=buffer_depth, per_block=blocks)
        return {name: r.as_dict() for name, r in blocks.items()}

    acc = Accelerator(ee.graph, weights, regs, buffer_depth=buffer_depth, id_width=ID_WIDTH)
    base_acc = Accelerator(bl.graph, weights, [], buffer_depth=buffer_depth, id_width=ID_WIDTH)
    atomic_write(hw / "top.v", emit_verilog(acc))
    atomic_write(hw / "baseline" / "top.v", emit_verilog(base_acc))

    fr = level_fractions(seq, len(ir.exits))
    ideal = ideal_speedup(ir, [float((seq == k).mean()) for k in range(len(ir.exits))])
    # the model as `exitgate sim` measures: steady state, buffer slots freed when the next level
    # has read the sample (the DSE ranks foldings with the cheaper all-samples form)
    ee_times = level_times(ee.timings, len(ir.exits))
    spc = steady_throughput(ee_times, seq, buffer_depth,
                            level_holds(ee.graph, weights, ee_times))
    bspc = steady_throughput(level_times(bl.timings, 1), np.zeros(len(seq), dtype=int),
                             buffer_depth)
    manifest = {
        "board": board.name, "family": family, "device": board.device,
        "clock_mhz": board.clock_mhz,
        "budget": budget, "utilisation_cap": board.budget.cap, "utilisation_caps": caps,
        "flow": list(FLOW),
        "id_width": ID_WIDTH, "buffer_depth": buffer_depth, "skid_buffers": skids,
        "decision_skid_buffers": skids or ee.graph.decision_skids,
        "soft_multipliers": bool(soft_multipliers),
        "deep_mvu": ee.graph.deep, "spram_blocks": ee.graph.spram,
        "buffer_depth_choice": {"requested": requested, "tried": list(BUFFER_DEPTHS)
                                if requested is None else [requested], "rejected": rejected},
        "thresholds": {"values": thresholds, "registers": regs},
        "sizing": {"exit_sequence": seq_source, "level_fractions": fr,
                   "stopped": {"early_exit": ee.limited_by, "baseline": bl.limited_by},
                   "trimmed_products": {"early_exit": ee.trimmed, "baseline": bl.trimmed}},
        "stages": _stage_rows(ee.graph, ee.timings),
        "predicted": {
            "samples_per_cycle": spc,
            "baseline_samples_per_cycle": bspc,
            "speedup": spc / bspc,
            "ideal_speedup": ideal,
            "work_fraction": 1.0 / ideal,
            "analytic_samples_per_cycle": analytic_throughput(
                level_times(ee.timings, len(ir.exits)), fr),
            "exits": [{"index": k, "latency_cycles": path_latency(ee.graph, weights, k)}
                      for k in range(len(ir.exits))],
            "baseline_latency_cycles": path_latency(bl.graph, weights, 0),
        },
        # both include the UART harness (as build.json's synthesised figures do)
        "resources": {"estimated": ee.resources, "baseline_estimated": bl.resources,
                      "harness_estimated": harness.as_dict(), "includes_harness": True,
                      # where the area goes: every block's estimate (they and the harness's
                      # add up to the totals above)
                      "per_block": {"early_exit": per_block(ee.graph),
                                    "baseline": per_block(bl.graph)}},
        "baseline": {"stages": _stage_rows(bl.graph, bl.timings)},
        "interface": {
            "toplevel": "exitgate_top", "clock": "clk", "reset": "rst (synchronous, active high)",
            "stream_protocol": "valid/ready: a beat moves on a rising clock edge where both are "
                               "high; the producer holds payload and valid until accepted",
            "pixels": {"ports": ["pixels__payload", "pixels__valid", "pixels__ready"],
                       "payload": f"[0 +: {ir.input.bits}] pixel, [{ir.input.bits}] first, "
                                  f"[{ir.input.bits + 1}] last; raster order, one pixel a beat",
                       "pixels_per_sample": int(np.prod(ir.input.shape))},
            "results": {"ports": ["results__payload", "results__valid", "results__ready"],
                        "payload": "{id, exit, cls, confidence} LSB first (see "
                                   "exitgate.hw.interface.result_layout)",
                        "order": "completion order; match by id (sample number mod 2**id_width)"},
            "ctrl": {"port": "ctrl", "payload": "{we, exit, threshold, mode} LSB first",
                     "threshold_format": f"t = round(T * 2**{ir.exits[0].decision.threshold_bits})"
                                         ", 1..2**B; exit iff t * S <= 2**(E+B)",
                     "modes": {"0": "threshold test", "1": "never exit", "2": "always exit"},
                     "final_exit": "writes to the final exit are ignored"},
        },
        "seconds": time.perf_counter() - t0,
    }
    write_json(hw / "manifest.json", manifest)
    return manifest


def load_graph(run: Path, which: str = "early_exit"):
    """(folded HwGraph, IR, weights, manifest) of the design `exitgate compile` emitted."""
    from .graph import Fold

    run = Path(run)
    require_step(run, "compile")
    m = read_json(run / "hw" / "manifest.json")
    ir, weights = load_ir(run)
    graph, rows = lower(ir, weights), m["stages"]
    if which == "baseline":
        graph, rows = baseline(graph), m["baseline"]["stages"]
    folds = {r["name"]: Fold(**r["fold"]) for r in rows if "fold" in r}
    return (graph.with_folds(folds).with_skids(m.get("skid_buffers", True))
            .with_deep(m.get("deep_mvu", False)).with_spram(m.get("spram_blocks", 0))
            .with_decision_skids(m.get("decision_skid_buffers", False)), ir, weights, m)


def load_design(run: Path, which: str = "early_exit", taps: bool = False):
    """Rebuild the Accelerator that `exitgate compile` emitted, from RUN/hw/manifest.json
    (``taps=True``: the same design plus observation ports on the logits, for simulation)."""
    graph, _, weights, m = load_graph(run, which)
    regs = m["thresholds"]["registers"] if which != "baseline" else []
    return Accelerator(graph, weights, regs, buffer_depth=m["buffer_depth"],
                       id_width=m["id_width"], taps=taps), m


def harness_args(m: dict, which: str) -> dict:
    """The UART harness options of one design of a compiled RUN (manifest ``m``): pixels per
    sample, exits, initial threshold registers and modes (the final exit always exits; the
    baseline has only it)."""
    n = len(m["predicted"]["exits"]) if which == "early_exit" else 1
    regs = m["thresholds"]["registers"] if which == "early_exit" else []
    return {"pixels_per_sample": m["interface"]["pixels"]["pixels_per_sample"], "exits": n,
            "thresholds": regs + [1 << 16], "modes": [0] * (n - 1) + [2]}


def _build_one(job) -> dict:
    """One design of `run_build` (a process of its own when both run side by side)."""
    from ..boards.build import build
    from ..boards.profiles import get_board
    run, which, board_name, options = job
    acc, _ = load_design(Path(run), which)
    return build(acc, get_board(board_name), Path(run) / "build" / which, name="top", **options)


def run_build(run: Path, board_name: str | None = None, *, force: bool = False, seeds: int = 1,
              time_limit: float | None = DEFAULT_TIME_LIMIT_S, log=print) -> dict:
    """`exitgate build`: both designs in the UART harness through the open toolchain;
    ``seeds``: nextpnr seeds 1..N tried per design, the fastest placement kept;
    ``time_limit``: seconds one nextpnr run may take before it is stopped (None: no limit;
    see `exitgate.boards.build.build`)."""
    from ..boards.build import check_seeds, check_time_limit
    from ..boards.profiles import get_board

    run = Path(run)
    require_step(run, "compile")
    m = read_json(run / "hw" / "manifest.json")
    board = get_board(board_name or m["board"])
    if board.name != m["board"]:
        raise ExitgateError(f"{run}/hw was compiled for {m['board']}, not {board.name}: run "
                            f"`exitgate compile {run} --board {board.name} --force` first")
    check_seeds(seeds, board)
    check_time_limit(time_limit)
    prepare_step(run, "build", force)
    out = {"board": board.name, "family": board.family, "device": board.device}
    jobs = [(str(run), which, board.name, {**harness_args(m, which), "seeds": seeds,
                                           "time_limit": time_limit})
            for which in ("early_exit", "baseline")]
    # the two place-and-routes are single-threaded: side by side when there are cores for both
    workers = min(len(jobs), os.cpu_count() or 1)
    log(f"build early_exit and baseline for {board.name} "
        f"({'side by side' if workers > 1 else 'one after the other'}"
        f"{f'; nextpnr seeds 1..{seeds} each' if seeds > 1 else ''}"
        f"{f'; at most {time_limit / 60:g} min a place and route' if time_limit else ''}) ...")
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_build_one, jobs))
    else:
        results = [_build_one(j) for j in jobs]
    for (_, which, *_), r in zip(jobs, results):
        key = "synthesised" if which == "early_exit" else "baseline_synthesised"
        out.setdefault("resources", {})[key] = r.get("resources")
        out[which] = r
    ee = out["early_exit"]
    out["status"] = ee["status"]
    out["fmax_mhz"] = ee.get("fmax_mhz")
    out["baseline_fmax_mhz"] = out["baseline"].get("fmax_mhz")
    out["clock_mhz"] = board.clock_mhz
    write_json(run / "build" / "build.json", out)
    return out
