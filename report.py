"""`exitgate report RUN`: every step's results in one RUN/report.json and one self-contained
RUN/report.html (inline CSS, plots as base64 PNG data URIs, no external resources); the plots
are also written to RUN/report/*.png.

Needs `exitgate train` at least. A later step that has not run (compile, sim, energy, build)
gets a note in the page naming the command that makes it, not an error. A step's file that
lacks a key the report needs is an error naming the file and the key.

report.json layout (the contract says "all of the above, under the same key paths"):

- The top level is the *merged view*: train.json, hw/manifest.json, sim/results.json,
  energy.json and build/build.json deep-merged in that (flow) order, so every documented key
  is at its documented path: ``accuracy.quantised`` (train), ``accuracy.rtl`` (sim),
  ``predicted.samples_per_cycle`` (compile), ``throughput.speedup`` (sim),
  ``energy.mean_pj`` (energy), ``resources.estimated`` (compile) beside
  ``resources.synthesised`` (build), ``fmax_mhz`` (build), ... Dicts merge key by key; lists of
  dicts with an ``index`` (``exits``, ``predicted.exits``) merge element by element on that
  index, so ``exits[i]`` holds ``threshold`` (train), ``latency_cycles`` (sim) and
  ``energy_pj`` (energy). Where two files hold different values at one path, the later step's
  value is the merged one (it is measured closer to the hardware: ``agreement.samples`` and
  ``agreement.logit_mismatches`` are RTL vs integer reference from sim, ``exits[i].rate`` and
  ``.accuracy`` are sim's measured ones), and ``collisions`` lists every such path with each
  step's value (containers as ``<dict of N>``).
- ``sections.<step>`` (train, compile, sim, energy, build) holds each step's JSON unchanged, so
  nothing a collision hides is lost (e.g. ``sections.train.agreement`` is Brevitas vs integer
  reference).
- ``per_sample`` (sim's one row per sample) is left out everywhere; ``per_sample_summary`` has
  the per-exit latency percentiles computed from it.
- Also: ``dataset``, ``board`` (null before compile), ``steps`` (per step: file, present,
  command that makes it), ``report`` (version, page, plot files) and ``throughput_at_fmax``
  (each design's samples per second were it clocked at its own built Fmax, predicted and, after
  sim, measured, and their ratio; null until both designs are built: `at_fmax`). These names
  are reserved: no step's JSON may use them at its top level.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from .errors import ExitgateError
from .runs import (STEPS, atomic_write, exitgate_version, prepare_step, read_json, require_step,
                   write_json)

__all__ = ["run_report", "merge_results", "format_report_summary", "at_fmax"]

_SOURCES = ("train", "compile", "sim", "energy", "build")
_RESERVED = ("dataset", "board", "steps", "report", "sections", "per_sample_summary", "collisions",
             "throughput_at_fmax")
# dotted key paths the report reads from each step's JSON
_REQUIRED = {
    "train": ("dataset", "accuracy.quantised", "accuracy.quantised_final_only",
              "agreement.samples", "agreement.logit_mismatches", "exits"),
    "compile": ("board", "clock_mhz", "budget", "predicted.samples_per_cycle",
                "predicted.baseline_samples_per_cycle", "predicted.exits",
                "resources.estimated"),
    "sim": ("samples", "accuracy.rtl", "agreement.class_mismatches", "agreement.exit_mismatches",
            "agreement.logit_mismatches", "exits", "throughput.samples_per_cycle",
            "throughput.baseline_samples_per_cycle", "throughput.speedup", "per_sample"),
    "energy": ("exits", "energy.mean_pj", "energy.baseline_pj"),
    "build": ("resources",),
}
_KINDS = ("compute", "memory", "static")
_RESOURCES = ("lut", "ff", "dsp", "bram")


def _command(step: str, run: Path) -> str:
    return f"exitgate train --out {run}" if step == "train" else f"exitgate {step} {run}"


def _get(d, path: str):
    """The value at dotted `path` in `d`, or None."""
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _check(step: str, data, path: Path, run: Path) -> None:
    fix = f"re-run `{_command(step, run)} --force`"
    if not isinstance(data, dict):
        raise ExitgateError(f"{path} is not a JSON object; {fix}")
    for key in _REQUIRED[step]:
        if _get(data, key) is None:
            raise ExitgateError(f"{path} has no key '{key}' (the report needs it); {fix}")
    for key in ("exits", "predicted.exits"):
        rows = _get(data, key)
        if rows is not None and not (isinstance(rows, list) and all(
                isinstance(e, dict) and isinstance(e.get("index"), int) for e in rows)):
            raise ExitgateError(f"{path}: '{key}' must be a list of objects with an integer "
                                f"'index'; {fix}")
    if step == "energy" and any(e.get("energy_pj") is None for e in data["exits"]):
        raise ExitgateError(f"{path} has an exit without 'energy_pj'; {fix}")
    if step == "sim" and any("exit" not in s or "latency_cycles" not in s
                             for s in data["per_sample"]):
        raise ExitgateError(f"{path}: a 'per_sample' row lacks 'exit' or 'latency_cycles'; {fix}")
    clash = [k for k in _RESERVED if k in data and k not in ("dataset", "board")]
    if clash:
        raise ExitgateError(f"{path} uses the report's reserved key(s) {', '.join(clash)}")


def _brief(v):
    return f"<{type(v).__name__} of {len(v)}>" if isinstance(v, (dict, list)) else v


def _indexed(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(e, dict) and "index" in e for e in v)


def _owner(path: str, origin: dict) -> str:
    while path not in origin:
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut]
    return origin[path]


def _scalar(v) -> bool:
    return not isinstance(v, (dict, list))


def _merge(a, b, step, path, origin, collisions, may_replace=False):
    """`b` (from `step`) merged into `a`; records differing leaves in `collisions`. A nested
    dict (not the top level, not an ``index`` row) that disagrees with `b` on a scalar is one
    step's record of one measurement: `b` replaces it whole rather than mixing the two."""
    if isinstance(a, dict) and isinstance(b, dict):
        clash = [k for k in a.keys() & b.keys() if _scalar(a[k]) and _scalar(b[k])
                 and a[k] != b[k]]
        if clash and may_replace:
            for k in sorted(clash):
                _merge(a[k], b[k], step, f"{path}.{k}", origin, collisions)
            for p in [p for p in origin if p.startswith((f"{path}.", f"{path}["))]:
                del origin[p]
            origin[path] = step
            return b
        out = dict(a)
        for k, v in b.items():
            p = f"{path}.{k}" if path else k
            if k in a:
                out[k] = _merge(a[k], v, step, p, origin, collisions, may_replace=True)
            else:
                out[k], origin[p] = v, step
        return out
    if _indexed(a) and _indexed(b):
        rows = {e["index"]: e for e in a}
        for e in b:
            p = f"{path}[{e['index']}]"
            if e["index"] in rows:
                rows[e["index"]] = _merge(rows[e["index"]], e, step, p, origin, collisions)
            else:
                rows[e["index"]], origin[p] = e, step
        return [rows[i] for i in sorted(rows)]
    if a != b:
        collisions.setdefault(path, {_owner(path, origin): _brief(a)})[step] = _brief(b)
    origin[path] = step
    return b


def merge_results(sections: dict[str, dict]) -> tuple[dict, dict]:
    """Deep-merge the steps' JSON in the given order (see the module docstring);
    returns (merged, collisions)."""
    merged, origin, collisions = {}, {}, {}
    for step, data in sections.items():
        merged = _merge(merged, data, step, "", origin, collisions)
    return merged, collisions


def _latency_summary(sim: dict) -> dict:
    rows = sim["per_sample"]
    exits = []
    for k in sorted({int(s["exit"]) for s in rows}):
        lat = np.array([s["latency_cycles"] for s in rows if s["exit"] == k], dtype=float)
        exits.append({"index": k, "count": int(lat.size), "latency_cycles": {
            "min": float(lat.min()), "p50": float(np.percentile(lat, 50)),
            "p90": float(np.percentile(lat, 90)), "p99": float(np.percentile(lat, 99)),
            "max": float(lat.max())}})
    return {"samples": len(rows), "source": "sim/results.json per_sample", "exits": exits}


# ---------------------------------------------------------------- plots


def _figure(w=7.0, h=4.0, ncols=1):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, ncols, figsize=(w * ncols, h), squeeze=False)
    return fig, axes[0]


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _plot_thresholds(calib: dict, train: dict, sim: dict | None) -> bytes:
    curves = calib.get("curves") or []
    if not curves:
        raise ExitgateError("calibration.json has no 'curves'; re-run `exitgate train --force`")
    fig, axes = _figure(6.0, 4.2, len(curves))
    test = {e["index"]: e for e in train["exits"]}
    rtl = {e["index"]: e for e in (sim or {}).get("exits", [])}
    for ax, cv in zip(axes, curves):
        k, t = cv["index"], cv["threshold"]
        pct = [np.nan if v is None else 100 * v for v in cv["accuracy"]]
        ax.plot(t, [100 * v for v in cv["exit_rate"]], color="tab:blue", label="exit rate")
        ax.plot(t, pct, color="tab:green", label="accuracy of exited")
        ax.plot(t, [100 * v for v in cv["overall_accuracy"]], color="tab:orange",
                label="overall accuracy")
        th = test.get(k, {}).get("threshold")
        if th is not None:
            ax.axvline(th, ls="--", color="black", label=f"chosen T = {th:g}")
            e = test[k]
            ax.plot([th], [100 * e["rate"]], "s", color="tab:blue", mfc="none",
                    label="test split (reference)")
            if e.get("accuracy") is not None:
                ax.plot([th], [100 * e["accuracy"]], "s", color="tab:green", mfc="none")
            if k in rtl:
                ax.plot([th], [100 * rtl[k]["rate"]], "x", color="tab:blue", ms=9,
                        label=f"RTL ({sim['samples']} samples)")
                if rtl[k].get("accuracy") is not None:
                    ax.plot([th], [100 * rtl[k]["accuracy"]], "x", color="tab:green", ms=9)
        ax.set(xlabel=f"threshold T at exit {k}", ylabel="%", ylim=(0, 101),
               title=f"exit {k}: curves on the {calib.get('split', 'calibration')} split")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    return _png(fig)


def _plot_energy(energy: dict) -> bytes:
    bars = [(f"exit {e['index']}", e) for e in energy["exits"]]
    bars.append(("baseline", {"energy_pj": energy["energy"]["baseline_pj"],
                              "breakdown": _baseline_breakdown(energy)}))
    fig, (ax,) = _figure(7.0, 4.0)
    colours = {"compute": "tab:blue", "memory": "tab:orange", "static": "tab:grey",
               "other": "tab:purple"}
    labelled = set()
    for x, (name, e) in enumerate(bars):
        kinds = _get(e, "breakdown.by_kind") or {}
        parts = [(k, kinds[k]) for k in _KINDS if kinds.get(k) is not None]
        parts += [(k, v) for k, v in kinds.items() if k not in _KINDS and v is not None]
        rest = e["energy_pj"] - sum(v for _, v in parts)
        if abs(rest) > 1e-6 * max(1.0, e["energy_pj"]):
            parts.append(("other", rest))
        bottom = 0.0
        for kind, v in parts:
            ax.bar(x, v / 1e3, bottom=bottom / 1e3, color=colours.get(kind, "tab:brown"),
                   label=None if kind in labelled else kind)
            labelled.add(kind)
            bottom += v
    ax.axhline(energy["energy"]["mean_pj"] / 1e3, ls="--", color="black",
               label="early-exit mean")
    ax.set_xticks(range(len(bars)), [b[0] for b in bars])
    ax.set(ylabel="energy per sample (nJ)",
           title=f"energy per exit by kind ({energy.get('profile', 'profile ?')})")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _baseline_breakdown(energy: dict) -> dict:
    return _get(energy, "baseline.breakdown") or _get(energy, "energy.baseline_breakdown") or {}


def _pareto_rows(energy: dict) -> list[dict]:
    sweep = energy.get("sweep") or []
    given = energy.get("pareto")
    if given and all(isinstance(p, int) for p in given):
        return [sweep[i] for i in given]
    if given and all(isinstance(p, dict) for p in given):
        return given
    front, best = [], -1.0
    for r in sorted(sweep, key=lambda r: (r["mean_pj"], -r["accuracy"])):
        if r["accuracy"] > best:
            front.append(r)
            best = r["accuracy"]
    return front


def _plot_pareto(energy: dict, train: dict, sim: dict | None) -> bytes | None:
    sweep = energy.get("sweep") or []
    if not sweep:
        return None
    fig, (ax,) = _figure(7.0, 4.2)
    for measured, style in ((True, dict(marker="o", color="tab:blue")),
                            (False, dict(marker="o", mfc="none", color="tab:blue"))):
        rows = [(r.get("measured_mean_pj", r["mean_pj"]), r.get("measured_accuracy",
                                                               r["accuracy"]))
                for r in sweep if bool(r.get("measured")) == measured]
        if rows:
            ax.plot([e / 1e3 for e, _ in rows], [100 * a for _, a in rows],
                    ls="none", label="sweep, " + ("simulated" if measured else "predicted"),
                    **style)
    front = sorted(_pareto_rows(energy), key=lambda r: r["mean_pj"])
    ax.plot([r["mean_pj"] / 1e3 for r in front], [100 * r["accuracy"] for r in front], "-",
            color="tab:red", label="Pareto front")
    for r in front:
        ax.annotate(f"{r['threshold']:g}", (r["mean_pj"] / 1e3, 100 * r["accuracy"]),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    acc = _get(energy, "accuracy.early_exit") or (_get(sim, "accuracy.rtl") if sim else None)
    if acc is not None:
        ax.plot([energy["energy"]["mean_pj"] / 1e3], [100 * acc], "*", ms=13,
                color="tab:green", label="calibrated thresholds (RTL accuracy)")
    base_acc = _get(energy, "accuracy.baseline")
    ax.plot([energy["energy"]["baseline_pj"] / 1e3],
            [100 * (train["accuracy"]["quantised_final_only"] if base_acc is None else base_acc)],
            "D", color="black", label="no-exit baseline" + (" (final-only accuracy, test)"
                                                           if base_acc is None else ""))
    ax.set(xlabel="mean energy per sample (nJ)", ylabel="accuracy (%)",
           title="accuracy vs energy over thresholds (labels: T)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _plot_throughput(manifest: dict, sim: dict | None) -> bytes:
    mhz = manifest["clock_mhz"]
    p = manifest["predicted"]
    groups = [("predicted", p["samples_per_cycle"], p["baseline_samples_per_cycle"])]
    if sim:
        t = sim["throughput"]
        groups.append((f"measured ({sim['samples']} samples)", t["samples_per_cycle"],
                       t["baseline_samples_per_cycle"]))
    fig, (ax,) = _figure(7.0, 4.0)
    for i, (name, ee, bl) in enumerate(groups):
        for j, (label, v, c) in enumerate((("early exit", ee, "tab:blue"),
                                          ("baseline", bl, "tab:grey"))):
            ax.bar(i + 0.38 * (j - 0.5), v * mhz * 1e3, width=0.36, color=c,
                   label=label if i == 0 else None)
            ax.annotate(f"{v * mhz * 1e3:,.1f}", (i + 0.38 * (j - 0.5), v * mhz * 1e3),
                        ha="center", va="bottom", fontsize=8)
        ax.annotate(f"speedup {ee / bl:.2f}x", (i, 0), xytext=(0, -28),
                    textcoords="offset points", ha="center", fontsize=9)
    ax.set_xticks(range(len(groups)), [g[0] for g in groups])
    ax.set(ylabel=f"thousand samples/s at {mhz:g} MHz", title="throughput: early exit vs same-budget "
           "baseline")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _plot_latency(sim: dict, manifest: dict) -> bytes:
    rows = sim["per_sample"]
    pred = {e["index"]: e["latency_cycles"] for e in manifest["predicted"]["exits"]}
    exits = sorted({int(s["exit"]) for s in rows})
    fig, axes = _figure(4.6, 3.6, max(1, len(exits)))
    for ax, k in zip(axes, exits):
        lat = [s["latency_cycles"] for s in rows if s["exit"] == k]
        ax.hist(lat, bins=min(30, max(5, len(lat) // 3)), color=f"C{k}")
        if k in pred:
            ax.axvline(pred[k], ls="--", color="black", label=f"predicted unloaded {pred[k]}")
            ax.legend(fontsize=7)
        ax.set(xlabel="latency (cycles, first pixel in to result out)", ylabel="samples",
               title=f"exit {k}: {len(lat)} samples")
        ax.grid(alpha=0.3)
    return _png(fig)


def _plot_resources(manifest: dict, build: dict | None) -> bytes:
    total, cap = manifest["budget"], manifest.get("utilisation_cap")
    res = manifest["resources"]
    series = [("early exit, estimated", res["estimated"], "tab:blue", None),
              ("baseline, estimated", res.get("baseline_estimated"), "tab:grey", None)]
    if build:
        syn = build["resources"]
        series += [("early exit, synthesised", syn.get("synthesised"), "tab:blue", "//"),
                   ("baseline, synthesised", syn.get("baseline_synthesised"), "tab:grey", "//")]
    series = [s for s in series if s[1]]
    fig, (ax,) = _figure(7.5, 4.0)
    w = 0.8 / len(series)
    for j, (label, r, c, hatch) in enumerate(series):
        xs = [i + w * (j - (len(series) - 1) / 2) for i in range(len(_RESOURCES))]
        ys = [100 * r.get(k, 0) / total[k] if total.get(k) else 0 for k in _RESOURCES]
        ax.bar(xs, ys, width=w, color=c, hatch=hatch, edgecolor="white" if hatch else None,
               label=label)
    if cap:
        ax.axhline(100 * cap, ls="--", color="tab:red", label=f"budget cap {100 * cap:g}%")
    ax.set_xticks(range(len(_RESOURCES)),
                  [f"{k.upper()}\n(of {total.get(k, '?')})" for k in _RESOURCES])
    ax.set(ylabel="% of device", title=f"resource use vs {manifest['board']} budget")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


# ---------------------------------------------------------------- HTML

_CSS = """body{font-family:sans-serif;max-width:1100px;margin:1.5em auto;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:1.6em}table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#eee}
td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:.5em 0}
.missing{background:#fff3cd;border:1px solid #e0d4a8;padding:.5em .8em}
code{background:#f2f2f2;padding:0 .2em}"""


def _f(v, fmt="{}", scale=1.0) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return html.escape(str(v))
    return fmt.format(v * scale if scale != 1.0 else v)


def _table(head: list[str], rows: list[list]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _missing(run: Path, step: str) -> str:
    return (f'<p class="missing">Not available yet: {html.escape(STEPS[step][0])} is missing; '
            f"run <code>{html.escape(_command(step, run))}</code>.</p>")


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f'<p class="missing">No data for the plot "{html.escape(alt)}".</p>'
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,' \
           f'{base64.b64encode(png).decode()}">'


def _accuracy_rows(tr: dict, sim: dict | None) -> list[list]:
    a, g = tr["accuracy"], tr["agreement"]
    n = tr.get("splits", {}).get("test")
    rows = [["float model (test, early exits at chosen T)", _f(a.get("float"), "{:.2f}%", 100)],
            ["quantised, integer reference (test)", _f(a["quantised"], "{:.2f}%", 100)],
            ["quantised, final exit only (test)", _f(a["quantised_final_only"], "{:.2f}%", 100)],
            ["Brevitas vs integer reference: samples with a logit mismatch",
             f"{g['logit_mismatches']} of {g['samples']}"]]
    if sim:
        s = sim["agreement"]
        rows += [[f"RTL ({sim['samples']} of {_f(n)} test samples)",
                  _f(sim["accuracy"]["rtl"], "{:.2f}%", 100)],
                 ["integer reference on the same samples",
                  _f(sim["accuracy"].get("reference"), "{:.2f}%", 100)],
                 ["RTL vs reference mismatches: class / exit / logits",
                  f"{s['class_mismatches']} / {s['exit_mismatches']} / {s['logit_mismatches']}"
                  f" of {sim['samples']}"]]
    return rows


def _exit_rows(tr, manifest, sim, energy) -> list[list]:
    pred = {e["index"]: e for e in (manifest or {}).get("predicted", {}).get("exits", [])}
    rtl = {e["index"]: e for e in (sim or {}).get("exits", [])}
    en = {e["index"]: e for e in (energy or {}).get("exits", [])}
    rows = []
    for e in tr["exits"]:
        k = e["index"]
        lat = rtl.get(k, {}).get("latency_cycles") or {}
        final = k == len(tr["exits"]) - 1
        rows.append([str(k), "final" if final else _f(e.get("threshold"), "{:g}"), _f(e.get("rate"), "{:.2f}%", 100),
                     _f(e.get("accuracy"), "{:.2f}%", 100), _f(e.get("macs")),
                     _f(rtl.get(k, {}).get("rate"), "{:.2f}%", 100),
                     _f(rtl.get(k, {}).get("accuracy"), "{:.2f}%", 100),
                     _f(pred.get(k, {}).get("latency_cycles")),
                     _f(lat.get("mean"), "{:.0f}") + (f" ({lat['min']}-{lat['max']})"
                                                      if "min" in lat else ""),
                     _f(en.get(k, {}).get("energy_pj"), "{:,.0f}")])
    return rows


def _throughput_rows(manifest, sim) -> list[list]:
    p, mhz = manifest["predicted"], manifest["clock_mhz"]
    t = (sim or {}).get("throughput", {})

    def rate(v):
        return "-" if v is None else f"{v * 1e3:.3f} ({v * mhz * 1e6:,.0f}/s)"
    return [["early exit", rate(p["samples_per_cycle"]), rate(t.get("samples_per_cycle"))],
            ["baseline", rate(p["baseline_samples_per_cycle"]),
             rate(t.get("baseline_samples_per_cycle"))],
            ["speedup", _f(p.get("speedup"), "{:.2f}x"), _f(t.get("speedup"), "{:.2f}x")],
            ["ideal speedup (work saved)", _f(p.get("ideal_speedup"), "{:.2f}x"),
             _f(t.get("ideal_speedup"), "{:.2f}x")]]


def at_fmax(manifest: dict, sim: dict | None, build: dict | None) -> dict | None:
    """Samples per second of each design clocked at its own built Fmax: the cycles (predicted by
    compile; measured by sim, when it has run) times the clock each netlist reached, and the
    speedup they give, which counts the early-exit design's Fmax against the baseline's as well
    as its cycles. None until both designs have an Fmax."""
    build = build or {}
    f_ee, f_b = build.get("fmax_mhz"), build.get("baseline_fmax_mhz")
    if not f_ee or not f_b:
        return None

    def rates(ee, base):
        if ee is None or base is None:
            return None
        return {"early_exit_per_s": ee * f_ee * 1e6, "baseline_per_s": base * f_b * 1e6,
                "speedup": ee * f_ee / (base * f_b)}
    p, t = manifest["predicted"], (sim or {}).get("throughput", {})
    return {"fmax_mhz": {"early_exit": f_ee, "baseline": f_b},
            "predicted": rates(p["samples_per_cycle"], p["baseline_samples_per_cycle"]),
            "measured": rates(t.get("samples_per_cycle"), t.get("baseline_samples_per_cycle"))}


def _build_rows(build: dict) -> list[list]:
    """Per design: how nextpnr got there (`exitgate.boards.build`: every seed's Fmax, the seed
    kept, router1 or the router2 fallback, the seeds stopped at the time limit)."""
    rows = []
    for name, label in (("early_exit", "early exit"), ("baseline", "baseline")):
        d = build.get(name) or {}
        if "seeds" not in d and "router" not in d:
            continue
        stopped = [str(sd) for sd in d.get("timed_out") or []]     # (JSON keys are text)
        seeds = ", ".join(f"{k}: " + ("stopped" if str(k) in stopped else _f(v))
                          for k, v in (d.get("seeds") or {}).items())
        limit = d.get("time_limit_s")
        rows.append([label, seeds or "-", _f(d.get("seed")), _f(d.get("router")),
                     ", ".join(stopped) or "none",
                     "none" if limit is None else f"{limit / 60:g} min",
                     _f(d.get("seconds"), "{:.0f}")])
    return rows


def _resource_rows(manifest, build) -> list[list]:
    est, total = manifest["resources"], manifest["budget"]
    cap = manifest.get("utilisation_cap") or 1.0
    syn = (build or {}).get("resources") or {}
    return [[k.upper(), _f(_get(est, f"estimated.{k}")), _f(_get(syn, f"synthesised.{k}")),
             _f(_get(est, f"baseline_estimated.{k}")),
             _f(_get(syn, f"baseline_synthesised.{k}")),
             _f(int(total[k] * cap) if total.get(k) is not None else None), _f(total.get(k))]
            for k in _RESOURCES]


def _energy_rows(energy) -> list[list]:
    rows = []
    for e in energy["exits"]:
        kinds = _get(e, "breakdown.by_kind") or {}
        rows.append([f"exit {e['index']}", _f(e.get("rate"), "{:.2f}%", 100),
                     _f(e["energy_pj"], "{:,.0f}")] + [_f(kinds.get(k), "{:,.0f}") for k in _KINDS])
    kinds = _baseline_breakdown(energy).get("by_kind") or {}
    en = energy["energy"]
    rows.append(["baseline (no exit)", "", _f(en["baseline_pj"], "{:,.0f}")]
                + [_f(kinds.get(k), "{:,.0f}") for k in _KINDS])
    rows.append(["early exit, mean", "", _f(en["mean_pj"], "{:,.0f}"), "", "", ""])
    ratio = en.get("ratio", en["mean_pj"] / en["baseline_pj"] if en["baseline_pj"] else None)
    rows.append(["mean / baseline", "", _f(ratio, "{:.3f}"), "", "", ""])
    return rows


def _page(run: Path, rep: dict, s: dict, plots: dict[str, bytes | None]) -> str:
    tr, m, sim, en, b = (s.get(k) for k in _SOURCES)
    esc = html.escape
    parts = [f"<h1>exitgate report: {esc(tr.get('model', ''))} on {esc(rep['dataset'])}"
             f"{' for ' + esc(rep['board']) if rep['board'] else ''}</h1>",
             f"<p>RUN <code>{esc(str(run))}</code>, exitgate {exitgate_version()}.</p>",
             "<h2>Steps</h2>",
             _table(["step", "file", "status"], [
                 [k, f"<code>{esc(v['file'])}</code>", "present" if v["present"] else
                  f"missing: run <code>{esc(v['command'])}</code>"]
                 for k, v in rep["steps"].items()]),
             "<h2>Accuracy and agreement</h2>", _table(["what", "value"],
                                                       _accuracy_rows(tr, sim)),
             "<h2>Exits</h2>",
             _table(["exit", "threshold", "rate (ref)", "accuracy (ref)", "MACs", "rate (RTL)",
                     "accuracy (RTL)", "latency predicted", "latency RTL mean (min-max)",
                     "energy (pJ)"], _exit_rows(tr, m, sim, en)),
             "<h3>Accuracy and exit rate vs threshold</h3>", _img(plots.get("thresholds"),
                                                                  "accuracy vs threshold")]
    parts.append("<h2>Throughput</h2>")
    if m:
        parts += [_table(["design", "predicted samples/kcycle", "measured samples/kcycle"],
                         _throughput_rows(m, sim)), _img(plots["throughput"], "throughput")]
    if not m or not sim:
        parts.append(_missing(run, "compile" if not m else "sim"))
    parts.append("<h2>Latency per exit</h2>")
    parts.append(_img(plots["latency"], "latency") if sim and m
                 else _missing(run, "compile" if not m else "sim"))
    parts.append("<h2>Energy</h2>")
    if en:
        parts += [f"<p>Profile <code>{esc(str(en.get('profile', '-')))}</code>, "
                  f"clock {_f(en.get('clock_mhz'), '{:g}')} MHz.</p>",
                  _table(["", "rate", "energy (pJ)"] + [f"{k} (pJ)" for k in _KINDS],
                         _energy_rows(en)),
                  _img(plots["energy"], "energy per exit"),
                  "<h3>Accuracy-energy Pareto front</h3>", _img(plots["pareto"], "pareto")]
    else:
        parts.append(_missing(run, "energy"))
    parts.append("<h2>Resources</h2>")
    if m:
        parts.append(_table(["resource", "early exit est.", "early exit synth.",
                             "baseline est.", "baseline synth.", "budget (cap)", "device"],
                            _resource_rows(m, b)))
        if b:
            parts.append(f"<p>Fmax: early exit {_f(b.get('fmax_mhz'), '{:.1f}')} MHz, baseline "
                         f"{_f(b.get('baseline_fmax_mhz'), '{:.1f}')} MHz; design clock "
                         f"{_f(b.get('clock_mhz', m['clock_mhz']), '{:g}')} MHz; build status "
                         f"{_f(b.get('status'))}.</p>")
            if rep.get("throughput_at_fmax"):
                cycles, x = _at_fmax_rates(rep)
                parts.append(f"<p>At each design's own Fmax ({cycles} cycles): early exit "
                             f"{x['early_exit_per_s']:,.0f} samples/s, baseline "
                             f"{x['baseline_per_s']:,.0f} samples/s: {x['speedup']:.2f}x.</p>")
            rows = _build_rows(b)
            if rows:
                parts.append(_table(["design", "nextpnr seeds (MHz)", "kept", "router",
                                     "stopped at the time limit", "time limit", "build s"], rows))
        parts.append(_img(plots["resources"], "resources"))
    if not b:
        parts.append(_missing(run, "compile" if not m else "build"))
    title = esc(f"exitgate report {run.name}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}'
            f"</title><style>{_CSS}</style></head><body>\n" + "\n".join(parts)
            + "\n</body></html>\n")


# ---------------------------------------------------------------- the step


def _load(run: Path) -> dict:
    sections = {}
    for step in _SOURCES:
        path = run / STEPS[step][0]
        if path.is_file():
            data = read_json(path)
            _check(step, data, path, run)
            sections[step] = data
    return sections


def run_report(run: Path, force: bool = False, log=print) -> tuple[dict, Path]:
    """Write RUN/report.json, RUN/report.html and RUN/report/*.png; returns (report.json's
    dict, the path of report.html)."""
    run = Path(run)
    require_step(run, "train")
    prepare_step(run, "report", force)
    s = _load(run)
    tr, m, sim, en, b = (s.get(k) for k in _SOURCES)
    calib = read_json(run / "calibration.json") if (run / "calibration.json").is_file() else None
    plots = {"thresholds": _plot_thresholds(calib, tr, sim) if calib else None}
    if m:
        plots["throughput"] = _plot_throughput(m, sim)
        plots["resources"] = _plot_resources(m, b)
        if sim:
            plots["latency"] = _plot_latency(sim, m)
    if en:
        plots["energy"] = _plot_energy(en)
        plots["pareto"] = _plot_pareto(en, tr, sim)
    files = []
    for name, png in plots.items():
        if png is not None:
            atomic_write(run / "report" / f"{name}.png", png)
            files.append(f"report/{name}.png")
    slim = {k: {kk: vv for kk, vv in v.items() if kk != "per_sample"} for k, v in s.items()}
    merged, collisions = merge_results(slim)
    rep = {"report": {"exitgate_version": exitgate_version(), "html": "report.html", "plots": files},
           "dataset": tr["dataset"], "board": m["board"] if m else None,
           "steps": {k: {"file": STEPS[k][0], "present": k in s, "command": _command(k, run)}
                     for k in _SOURCES}}
    rep.update({k: v for k, v in merged.items() if k not in rep})
    rep["throughput_at_fmax"] = at_fmax(m, sim, b) if m else None
    rep["per_sample_summary"] = _latency_summary(sim) if sim else None
    rep["sections"] = slim
    rep["collisions"] = collisions
    page = run / "report.html"
    atomic_write(page, _page(run, rep, s, plots))
    write_json(run / "report.json", rep)  # written last: the step's completion marker
    log(f"report: {len(files)} plots, steps present: {', '.join(s)}")
    return rep, page


def _at_fmax_rates(rep: dict) -> tuple[str, dict]:
    """("measured" | "predicted", that entry of ``throughput_at_fmax``): measured once sim ran."""
    fast = rep["throughput_at_fmax"]
    return ("measured", fast["measured"]) if fast["measured"] else ("predicted",
                                                                    fast["predicted"])


def format_report_summary(rep: dict) -> str:
    """A few lines for the terminal: headline numbers and what is still missing."""
    a = rep.get("accuracy", {})
    lines = [f"accuracy: quantised {_f(a.get('quantised'), '{:.2f}%', 100)}, RTL "
             f"{_f(a.get('rtl'), '{:.2f}%', 100)}; speedup measured "
             f"{_f(_get(rep, 'throughput.speedup'), '{:.2f}x')}, predicted "
             f"{_f(_get(rep, 'predicted.speedup'), '{:.2f}x')}; energy mean/baseline "
             f"{_f(_get(rep, 'energy.mean_pj'), '{:,.1f}', 1e-3)} / "
             f"{_f(_get(rep, 'energy.baseline_pj'), '{:,.1f}', 1e-3)} nJ; Fmax "
             f"{_f(rep.get('fmax_mhz'), '{:.1f}')} MHz"
             + (f" (at each design's own Fmax: {_at_fmax_rates(rep)[1]['speedup']:.2f}x)"
                if rep.get("throughput_at_fmax") else "")]
    missing = [v["command"] for v in rep["steps"].values() if not v["present"]]
    if missing:
        lines.append("not yet in the report: " + "; ".join(f"`{c}`" for c in missing))
    return "\n".join(lines)
