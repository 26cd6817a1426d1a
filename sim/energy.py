"""`exitgate energy RUN`: energy per inference and per exit, from the activity the RTL counted
in simulation times a technology profile -> RUN/energy.json and RUN/energy.png.

Activity comes from the counters the simulated design carries (`Accelerator(..., taps=True)`,
`exitgate.compiler.codegen.activity_units`), read at the end of `exitgate sim`: per stage the
MAC cycles, stream beats in and out, weight-ROM read enables and active cycles; per conditional
buffer the beats written and read. The work of a dense CNN stage does not depend on the data,
so a stage's count divided by the samples that reached it (its *visitors*) is each visitor's
count; `activity_check` asserts that the division is exact and equals the analytic count of the
IR (MACs = MAC cycles x PE x SIMD = `exitgate.quant.ir.macs_of`).

Energy (all in pJ), per stage and kind, with a `Profile` (``sim/profiles/*.json``):

    compute  MACs x (mul(weight bits, input bits) + add(accumulator bits)), one add per output
             value (bias/requantise), pool compares, the decision's max/sum adds and t*S multiply
    memory   bits moved x memory energy per bit: weight-ROM words used (one per MAC cycle),
             operand chunks read (SIMD x input bits per MAC cycle), input beats written into the
             stage's buffer (conv: also the two previous rows read from its line buffer), pool
             line-buffer traffic, conditional-buffer beats written and read
    static   static power x the design's steady-state time per sample (1 / measured samples per
             cycle at the design clock), the same for every sample

A stage's dynamic energy is charged to its visitors; energy per exit k is the sum over the
stages a sample leaving at k passed through, plus static. Cycles on which a weight ROM is
read-enabled without a chunk (``wrom_en`` minus ``mac``: none as the MVUs are built now, they
read only for a chunk) would use no data, so they are reported (``rom_idle_enables``) but not
charged. Baseline: the no-exit design on the same samples.
The threshold sweep uses the reference's exit decisions and these per-exit energies, with
throughput from `exitgate.compiler.perf.stream_throughput`; a few thresholds are also run on
the RTL (runtime threshold register, no rebuild) and measured.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ExitgateError
from ..runs import prepare_step, read_json, require_step, write_json

__all__ = ["Profile", "list_profiles", "load_profile", "default_profile", "design_units",
           "activity_check", "energy_of", "run_energy", "format_energy_table", "pareto"]

PROFILE_DIR = Path(__file__).parent / "profiles"
SWEEP = (0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 1.0)
MEASURED = (0.5, 0.9, 0.99)
GOAL = {"ratio_max": 0.4, "accuracy_loss_pp_max": 0.5}


@dataclass(frozen=True)
class Profile:
    """A technology profile: operation energies (pJ) with their bit-width scaling, memory energy
    per bit, static power (mW). ``data``: the whole file, sources and estimates included."""

    name: str
    energy_pj: dict
    static_mw: float
    data: dict

    def add(self, bits: int) -> float:
        e = self.energy_pj
        return e["add8"] + (e["add32"] - e["add8"]) * (bits - 8) / 24

    def mul(self, a_bits: int, b_bits: int) -> float:
        e = self.energy_pj
        p = math.log2(e["mul32"] / e["mul8"]) / 2
        return e["mul8"] * (math.sqrt(a_bits * b_bits) / 8) ** p

    @property
    def mem_bit(self) -> float:
        return self.energy_pj["memory_access_64b"] / 64

    def mac(self, w_bits: int, a_bits: int, acc_bits: int, soft: bool = False) -> float:
        """A multiply-accumulate; ``soft``: its multiply built in logic (`Fold.soft`), which
        costs the profile's ``soft_mul_factor`` (default 1) times a multiply where it uses
        its hard multiplier."""
        mul = self.mul(w_bits, a_bits)
        if soft:
            mul *= self.energy_pj.get("soft_mul_factor", 1.0)
        return mul + self.add(acc_bits)


def list_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def load_profile(name: str) -> Profile:
    path = PROFILE_DIR / f"{name}.json"
    if not path.is_file():
        raise ExitgateError(f"unknown energy profile {name!r}; profiles: "
                            f"{', '.join(list_profiles())}")
    d = json.loads(path.read_text())
    return Profile(d["name"], dict(d["energy_pj"]), float(d["static_mw"]), d)


def default_profile(family: str | None) -> str:
    """The profile for a board family (ecp5 -> ecp5, ice40 -> ice40up5k); otherwise the ASIC."""
    for name in list_profiles():
        if family in load_profile(name).data.get("families", []):
            return name
    return "asic45nm-horowitz"


@dataclass(frozen=True)
class Unit:
    """A counted unit of a design: its kind, the level whose samples pay for it, the bit widths
    its energy needs, and its analytic per-visitor counts."""

    name: str
    kind: str          # conv, linear, pool, decision, cbuf
    level: int
    p: dict
    per_sample: dict   # counter -> analytic count per visitor (cbuf "out": per continuing sample)


def design_units(run: Path, which: str = "early_exit") -> tuple[list[Unit], dict]:
    """The counted units of the compiled design ``which`` (early_exit / baseline), and
    {"macs_ir": per stage, from the IR} for the check."""
    from ..compiler.codegen import build_blocks
    from ..hw.stream import beats_of
    from ..quant.ir import macs_of

    from ..compiler.flow import load_graph

    graph, ir, weights, _ = load_graph(run, which)
    blocks, fmt = build_blocks(graph, weights, analysis=True)
    units, macs_ir = [], {}
    for st in graph.stages:
        if st.kind == "decision":
            w = blocks[st.src].acc_width
            units.append(Unit(st.name, "decision", st.level, {"logit_bits": w},
                              {"in": graph.classes, "out": 1}))
            continue
        lanes, bits, _ = fmt[st.src]
        k = graph.buffer_before(st)
        if k is not None:
            shape = graph.stage(st.src).out_shape
            units.append(Unit(f"cbuf{k}", "cbuf", k, {"beat_bits": lanes * (bits + 2)},
                              {"in": beats_of(shape, lanes), "out": beats_of(shape, lanes)}))
        blk = blocks[st.name]
        in_beats = beats_of(st.in_shape, lanes)
        if st.kind == "pool":
            units.append(Unit(st.name, "pool", st.level, {"lanes": lanes, "bits": bits},
                              {"in": in_beats, "out": beats_of(st.out_shape, lanes)}))
            continue
        pixels = st.out_shape[1] * st.out_shape[2] if st.kind == "conv" else 1
        out_lanes = 1 if blk.shift is None else blk.out_lanes
        macs_ir[st.name] = sum(macs_of(ir.node(n), ir) for n in st.nodes)
        units.append(Unit(st.name, st.kind, st.level, {
            "pe": blk.pe, "simd": blk.simd, "weight_bits": blk.weight_bits, "in_bits": bits,
            "in_lanes": lanes, "acc_bits": blk.acc_width, "out_lanes": out_lanes,
            "soft_rows": blk.soft},
            {"mac": blk.nf * blk.sf * pixels, "in": in_beats,
             "out": st.out_shape[0] * pixels // out_lanes}))
    return units, {"macs_ir": macs_ir, "levels": graph.exits}


def _visitors(exits: list[int], level: int) -> int:
    return sum(1 for e in exits if e >= level)


def activity_check(units: list[Unit], counts: dict, exits: list[int], macs_ir: dict) -> dict:
    """Measured counts per visitor against the analytic ones. ``exits``: the hardware exit of
    every sample (all 0 for the baseline). Returns {unit: {counter: {measured, visitors,
    per_sample, analytic, ok}}, "ok": all agree, "macs": {stage: {measured, ir, ok}}}."""
    out, ok = {}, True
    for u in units:
        row = {}
        for c, want in u.per_sample.items():
            level = u.level + 1 if (u.kind == "cbuf" and c == "out") else u.level
            n, got = _visitors(exits, level), int(counts.get(u.name, {}).get(c, -1))
            per = (got // n if got % n == 0 else got / n) if n else None
            good = (got == 0) if n == 0 else (got % n == 0 and got // n == want)
            ok &= good
            row[c] = {"measured": got, "visitors": n, "per_sample": per, "analytic": want,
                      "ok": good}
        out[u.name] = row
    macs = {}
    for u in units:
        if u.kind in ("conv", "linear"):
            per = out[u.name]["mac"]["per_sample"]
            got = None if per is None else per * u.p["pe"] * u.p["simd"]
            good = got is None or got == macs_ir[u.name]
            ok &= good
            macs[u.name] = {"measured": got, "ir": macs_ir[u.name], "ok": good}
    out["macs"], out["ok"] = macs, ok
    return out


def _charges(u: Unit, c: dict, prof: Profile) -> list[tuple[int, str, float]]:
    """(level, kind, pJ) of a unit's counted activity."""
    p, mb = u.p, prof.mem_bit
    if u.kind in ("conv", "linear"):
        macs = c["mac"] * p["pe"] * p["simd"]
        soft = c["mac"] * p.get("soft_rows", 0) * p["simd"]     # multiplies built in logic
        compute = (macs - soft) * prof.mac(p["weight_bits"], p["in_bits"], p["acc_bits"]) \
            + soft * prof.mac(p["weight_bits"], p["in_bits"], p["acc_bits"], soft=True) \
            + c["out"] * p["out_lanes"] * prof.add(p["acc_bits"])
        line = 2 if u.kind == "conv" else 0
        memory = (c["mac"] * (p["pe"] * p["simd"] * p["weight_bits"] + p["simd"] * p["in_bits"])
                  + c["in"] * p["in_lanes"] * p["in_bits"] * (1 + line)) * mb
        return [(u.level, "compute", compute), (u.level, "memory", memory)]
    if u.kind == "pool":
        return [(u.level, "compute", c["in"] * p["lanes"] * prof.add(p["bits"])),
                (u.level, "memory", c["in"] * p["lanes"] * p["bits"] * mb)]
    if u.kind == "cbuf":
        return [(u.level, "memory", c["in"] * p["beat_bits"] * mb),
                (u.level + 1, "memory", c["out"] * p["beat_bits"] * mb)]
    if u.kind == "decision":
        return [(u.level, "compute", c["in"] * 2 * prof.add(p["logit_bits"])
                 + c["out"] * prof.mul(17, 17))]
    raise ValueError(u.kind)


def static_pj(prof: Profile, clock_mhz: float, samples_per_cycle: float) -> float:
    """Static energy per sample: static power x cycles per sample at the design clock."""
    return prof.static_mw * 1e3 / (clock_mhz * samples_per_cycle)


def energy_of(units, counts, exits, prof: Profile, clock_mhz: float, samples_per_cycle: float,
              levels: int) -> dict:
    """Per exit (index 0..levels-1) {energy_pj, breakdown {by_kind, by_stage}}, and the mean over
    the samples (``exits``: the hardware exit of each)."""
    n = len(exits)
    stat = static_pj(prof, clock_mhz, samples_per_cycle)
    per_exit = []
    for k in range(levels):
        kinds, stages = {"compute": 0.0, "memory": 0.0, "static": stat}, {}
        for u in units:
            for level, kind, pj in _charges(u, counts[u.name], prof):
                v = _visitors(exits, level)
                if level <= k and v:
                    kinds[kind] += pj / v
                    stages[u.name] = stages.get(u.name, 0.0) + pj / v
        per_exit.append({"energy_pj": sum(kinds.values()),
                         "breakdown": {"by_kind": kinds, "by_stage": stages}})
    total_dyn = sum(pj for u in units for _, _, pj in _charges(u, counts[u.name], prof))
    idle = {u.name: counts[u.name]["wrom_en"] - counts[u.name]["mac"]
            for u in units if u.kind in ("conv", "linear")}
    return {"exits": per_exit, "mean_pj": total_dyn / n + stat, "static_pj": stat,
            "rom_idle_enables": idle}


def pareto(rows: list[dict]) -> list[int]:
    """Indices of the rows no other row beats on (higher accuracy, lower mean_pj)."""
    front = []
    for i, r in enumerate(rows):
        dominated = any(o["accuracy"] >= r["accuracy"] and o["mean_pj"] <= r["mean_pj"]
                        and (o["accuracy"] > r["accuracy"] or o["mean_pj"] < r["mean_pj"])
                        for o in rows)
        if not dominated:
            front.append(i)
    return front


def _sweep_rows(run, results, units, counts, prof, clock, thresholds, measured, limit, log):
    """Threshold sweep rows (see module docstring)."""
    import numpy as np

    from ..compiler.perf import level_times, stage_timings, stream_throughput
    from ..numerics import MODE_THRESHOLD
    from ..quant.datasets import load_dataset
    from .scoreboard import expected_results
    from .system import simulate

    from ..compiler.flow import load_graph

    graph, ir, weights, m = load_graph(run, "early_exit")
    macs_ir = design_units(run)[1]["macs_ir"]
    times = level_times(stage_timings(graph, weights), graph.exits)
    ds = load_dataset(results.get("dataset_spec") or ir.meta.get("dataset")
                      or results.get("dataset"))
    n = results["samples"]
    x, y = ds.x_test[:n], ds.y_test[:n]
    k_last = len(ir.exits) - 1
    build = Path(results.get("build_dir") or run / "sim" / "build")
    if not build.is_dir():
        build = run / "sim" / "build"
    calibrated = results.get("thresholds") or []
    t_cal = calibrated[0] if calibrated and len(set(calibrated)) == 1 else None
    rows = []
    for t in sorted(set(thresholds) | set(measured) | ({t_cal} - {None})):
        exp = expected_results(ir, weights, x, [t] * k_last)
        exits = [e["exit"] for e in exp]
        acc = float(np.mean([e["cls"] == int(v) for e, v in zip(exp, y)]))
        spc_pred = stream_throughput(times, np.array(exits), m["buffer_depth"])
        row = {"threshold": t, "accuracy": acc,
               "exit_rates": [exits.count(k) / n for k in range(graph.exits)],
               "samples_per_cycle_predicted": spc_pred, "measured": False}
        spc = spc_pred
        if t == t_cal:  # the calibrated thresholds: measured by `exitgate sim` itself
            spc = results["throughput"]["samples_per_cycle"]
            e = energy_of(units, counts, _hw_exits(results), prof, clock, spc, graph.exits)
            row.update(measured=True, measured_samples=n, samples_per_cycle_measured=spc,
                       measured_mean_pj=e["mean_pj"], measured_accuracy=results["accuracy"][
                           "rtl"], calibrated=True,
                       activity_ok=activity_check(units, counts, _hw_exits(results), macs_ir)[
                           "ok"])
        elif t in measured:
            nn = n if limit is None else min(limit, n)
            writes = [(k, ir.exits[k].decision.threshold_register(t), MODE_THRESHOLD)
                      for k in range(k_last)]
            log(f"measure T={t:g} on the RTL ({nn} samples) ...")
            r = simulate(run / "sim" / "top_taps.v", "exitgate_top", x, exp, build_dir=build,
                         thresholds_writes=writes, labels=y, limit=nn)
            if r["errors"] or not r["activity"]:
                raise ExitgateError(f"the RTL sweep at T={t:g} failed: "
                                    f"{(r['errors'] or ['no activity counters'])[0]}")
            got = [p["exit"] for p in r["per_sample"]]
            spc = r["throughput"]["samples_per_cycle"]
            e = energy_of(units, r["activity"], got, prof, clock, spc, graph.exits)
            chk = activity_check(units, r["activity"], got, macs_ir)
            row.update(measured=True, measured_samples=nn, samples_per_cycle_measured=spc,
                       measured_mean_pj=e["mean_pj"], measured_accuracy=r["accuracy"]["rtl"],
                       activity_ok=chk["ok"])
        per_exit = energy_of(units, counts, _hw_exits(results), prof, clock, spc,
                             graph.exits)["exits"]
        row["samples_per_cycle"] = spc
        row["mean_pj"] = sum(rate * pe["energy_pj"] for rate, pe in zip(row["exit_rates"],
                                                                         per_exit))
        rows.append(row)
    return rows


def _active_idle(counts: dict) -> dict:
    """{unit: {active, idle}} cycles over the whole simulation (idle = cycles - active)."""
    total = counts["all"]["cycles"]
    return {u: {"active": c["active"], "idle": total - c["active"]}
            for u, c in counts.items() if "active" in c}


def _hw_exits(results: dict) -> list[int]:
    return [p["exit"] for p in results["per_sample"]]


def _headline(units_ee, units_b, r, prof, clock, levels) -> dict:
    b = r["baseline"]
    e = energy_of(units_ee, r["activity"], _hw_exits(r), prof, clock,
                  r["throughput"]["samples_per_cycle"], levels)
    eb = energy_of(units_b, b["activity"], [0] * b["samples"], prof, clock,
                   b["throughput"]["samples_per_cycle"], 1)
    return {"ee": e, "baseline": eb, "ratio": e["mean_pj"] / eb["mean_pj"]}


def run_energy(run: Path, profile: str | None = None, *, force: bool = False,
               measured: tuple = MEASURED, sweep: tuple = SWEEP, sweep_limit: int | None = None,
               figure: bool = True, log=print) -> tuple[dict, Path]:
    """`exitgate energy`: see the module docstring. Returns (energy.json dict, its path)."""
    t0 = time.perf_counter()
    run = Path(run)
    require_step(run, "sim")
    if profile is not None:
        load_profile(profile)  # an unknown name fails before anything is touched
    r = read_json(run / "sim" / "results.json")
    if not r.get("activity") or not r.get("baseline", {}).get("activity"):
        raise ExitgateError(f"{run}/sim/results.json has no activity counters (simulated by an "
                            f"older exitgate): run `exitgate sim {run} --force` first")
    if r["errors"] or r["baseline"]["errors"]:
        raise ExitgateError(f"{run}/sim/results.json records simulation errors; fix them before "
                            "estimating energy")
    m = read_json(run / "hw" / "manifest.json")
    name = profile or default_profile(m.get("family"))
    prof = load_profile(name)
    prepare_step(run, "energy", force)
    clock = float(m["clock_mhz"])
    units_ee, info = design_units(run, "early_exit")
    units_b, info_b = design_units(run, "baseline")
    levels = info["levels"]
    exits_hw = _hw_exits(r)
    check = activity_check(units_ee, r["activity"], exits_hw, info["macs_ir"])
    check_b = activity_check(units_b, r["baseline"]["activity"], [0] * r["baseline"]["samples"],
                             info_b["macs_ir"])
    if not (check["ok"] and check_b["ok"]):
        log("warning: counted activity differs from the analytic counts (see energy.json "
            "activity)")
    heads = {p: _headline(units_ee, units_b, r, load_profile(p), clock, levels)
             for p in list_profiles()}
    h = heads[name]
    acc_b = r["baseline"]["accuracy"]["rtl"]
    exits = []
    for ex, pe in zip(r["exits"], h["ee"]["exits"]):
        exits.append({"index": ex["index"], "count": ex["count"], "rate": ex["rate"],
                      "accuracy": ex["accuracy"], "energy_pj": pe["energy_pj"],
                      "breakdown": pe["breakdown"]})
    loss_pp = 100 * (acc_b - r["accuracy"]["rtl"])
    e_list = [x["energy_pj"] for x in exits]
    deeper = all(a < b for a, b in zip(e_list, e_list[1:]))
    rows = _sweep_rows(run, r, units_ee, r["activity"], prof, clock, sweep, measured,
                       sweep_limit, log)
    base_pj = h["baseline"]["mean_pj"]
    for row in rows:
        row["ratio"] = row["mean_pj"] / base_pj
        row["accuracy_loss_pp"] = 100 * (acc_b - row["accuracy"])
    out = {
        "profile": name,
        "profile_title": prof.data.get("title"),
        "clock_mhz": clock,
        "samples": r["samples"],
        "dataset": r.get("dataset"),
        "thresholds": r.get("thresholds"),
        "exits": exits,
        "energy": {"mean_pj": h["ee"]["mean_pj"], "baseline_pj": base_pj, "ratio": h["ratio"],
                   "static_pj": h["ee"]["static_pj"], "baseline_static_pj": h["baseline"][
                       "static_pj"],
                   "baseline_breakdown": h["baseline"]["exits"][0]["breakdown"]},
        "accuracy": {"early_exit": r["accuracy"]["rtl"], "baseline": acc_b,
                     "loss_pp": loss_pp},
        "throughput": {"samples_per_cycle": r["throughput"]["samples_per_cycle"],
                       "baseline_samples_per_cycle": r["throughput"][
                           "baseline_samples_per_cycle"]},
        "goal": dict(GOAL, ratio=h["ratio"], loss_pp=loss_pp, deeper_exits_cost_more=deeper,
                     met=h["ratio"] <= GOAL["ratio_max"]
                     and loss_pp <= GOAL["accuracy_loss_pp_max"] and deeper),
        "activity": {"ok": check["ok"] and check_b["ok"], "early_exit": check,
                     "baseline": check_b, "counts": r["activity"],
                     "baseline_counts": r["baseline"]["activity"],
                     "cycles": _active_idle(r["activity"]),
                     "baseline_cycles": _active_idle(r["baseline"]["activity"]),
                     "rom_idle_enables": h["ee"]["rom_idle_enables"],
                     "baseline_rom_idle_enables": h["baseline"]["rom_idle_enables"]},
        "sweep": rows,
        "pareto": pareto(rows),
        "profiles": {p: {"exits_pj": [x["energy_pj"] for x in v["ee"]["exits"]],
                         "mean_pj": v["ee"]["mean_pj"], "baseline_pj": v["baseline"]["mean_pj"],
                         "ratio": v["ratio"], "title": load_profile(p).data.get("title")}
                     for p, v in heads.items()},
    }
    if figure:
        out["figure"] = _figure(run / "energy.png", out)
    out["seconds"] = time.perf_counter() - t0
    path = run / "energy.json"
    write_json(path, out)
    return out, path


def _figure(path: Path, e: dict) -> str:
    """Energy per exit, mean and baseline for every profile (log scale), and the sweep."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profs = e["profiles"]
    fig, axes = plt.subplots(1, len(profs) + 1, figsize=(4 * (len(profs) + 1), 3.6))
    for ax, (name, v) in zip(axes, profs.items()):
        labels = [f"exit {k}" for k in range(len(v["exits_pj"]))] + ["mean", "baseline"]
        vals = [x / 1e3 for x in v["exits_pj"] + [v["mean_pj"], v["baseline_pj"]]]
        ax.bar(labels, vals, color=["C0"] * len(v["exits_pj"]) + ["C2", "C3"])
        ax.set_title(f"{name}: mean {v['ratio']:.2f}x baseline", fontsize=9)
        ax.set_ylabel("nJ per inference")
    ax = axes[-1]
    xs = [row["mean_pj"] / 1e3 for row in e["sweep"]]
    ys = [100 * row["accuracy"] for row in e["sweep"]]
    ax.plot(xs, ys, ".", color="0.6")
    front = sorted(e["pareto"], key=lambda i: xs[i])
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "o-", color="C0", label="Pareto")
    ax.axvline(e["energy"]["baseline_pj"] / 1e3, color="C3", ls="--", label="baseline")
    ax.set_xlabel(f"mean nJ per inference ({e['profile']})")
    ax.set_ylabel("accuracy %")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def format_energy_table(e: dict) -> str:
    lines = [f"profile {e['profile']} ({e['profile_title']}), clock {e['clock_mhz']:g} MHz, "
             f"{e['samples']} samples",
             f"{'exit':>4} {'rate %':>7} {'acc %':>7} {'energy nJ':>10} {'compute':>9} "
             f"{'memory':>9} {'static':>9}"]
    for x in e["exits"]:
        k = x["breakdown"]["by_kind"]
        acc = "-" if x["accuracy"] is None else f"{100 * x['accuracy']:.2f}"
        lines.append(f"{x['index']:>4} {100 * x['rate']:>7.2f} {acc:>7} "
                     f"{x['energy_pj'] / 1e3:>10.3f} {k['compute'] / 1e3:>9.3f} "
                     f"{k['memory'] / 1e3:>9.3f} {k['static'] / 1e3:>9.3f}")
    en, a = e["energy"], e["accuracy"]
    lines.append(f"mean {en['mean_pj'] / 1e3:.3f} nJ vs no-exit baseline "
                 f"{en['baseline_pj'] / 1e3:.3f} nJ: {en['ratio']:.3f}x; accuracy loss "
                 f"{a['loss_pp']:.2f} pp")
    for name, v in e["profiles"].items():
        per = " / ".join(f"{x / 1e3:.3f}" for x in v["exits_pj"])
        lines.append(f"  {name:<18} per exit {per} nJ, mean {v['mean_pj'] / 1e3:.3f}, baseline "
                     f"{v['baseline_pj'] / 1e3:.3f}: {v['ratio']:.3f}x")
    lines.append(f"activity vs IR: {'all counts agree' if e['activity']['ok'] else 'MISMATCH'}")
    front = [e["sweep"][i] for i in e["pareto"]]
    lines.append("Pareto (T: acc %, ratio): " + ", ".join(
        f"{row['threshold']:g}{'*' if row['measured'] else ''}: {100 * row['accuracy']:.2f}, "
        f"{row['ratio']:.2f}x" for row in front) + "   (* measured on the RTL)")
    return "\n".join(lines)
