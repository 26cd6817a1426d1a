"""`exitgate flow`: train -> compile -> sim -> energy -> build -> report in one RUN directory,
resumable, skipping what is already up to date.

Each step has a *fingerprint*: a hash of the files it reads (e.g. compile reads ir.json,
weights.npz, calibration.json), of the flow's parameters that affect it (board, simulator, ...),
of the exitgate version and of the exitgate code the step runs (`_CODE`: its subpackages'
sources and data, so that a changed compiler recompiles even at the same version). ``RUN/flow.json`` records, per step, the fingerprint its results
were made from. On a re-run a step is skipped when its marker (the step's JSON, written last,
see `exitgate.runs`) exists and its fingerprint is unchanged; otherwise it is redone, which
also removes the (now stale) results of every later step. A step that was interrupted has no
marker, so it is redone from scratch: a half-written artefact is never taken for a good one.

The flow's parameters (config, dataset, board, ...) are recorded in flow.json too: re-running
with different ones would silently replace results made for something else, so it is refused
unless ``--force`` (which redoes every step). A RUN made step by step with the single commands
(no flow.json) is refused the same way.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from .boards.build import DEFAULT_TIME_LIMIT_S, check_seeds, check_time_limit
from .errors import ExitgateError
from .runs import STEPS, exitgate_version, read_json, write_json

__all__ = ["FLOW_STEPS", "run_flow", "format_flow_table"]

FLOW_STEPS = ("train", "compile", "sim", "energy", "build", "report")
FLOW_FILE = "flow.json"

# files each step reads (relative to RUN), beyond the flow parameters
_INPUTS = {
    "train": [],
    "compile": ["ir.json", "weights.npz", "calibration.json"],
    "sim": ["hw/manifest.json", "hw/top.v", "hw/baseline/top.v", "ir.json", "weights.npz"],
    "energy": ["sim/results.json", "hw/manifest.json"],
    "build": ["hw/manifest.json", "hw/top.v", "hw/baseline/top.v"],
    "report": ["train.json", "calibration.json", "hw/manifest.json", "sim/results.json",
               "energy.json", "build/build.json"],
}
# flow parameters each step depends on
_PARAMS = {
    "train": ("config_text", "dataset", "mode"),
    "compile": ("board", "buffer_depth", "soft_multipliers"),
    "sim": ("simulator", "limit"),
    "energy": ("profile",),
    "build": ("board", "seeds"),
    "report": (),
}


# the exitgate code each step runs (paths relative to the package; directories: every .py,
# .json and .toml file below them)
_CODE = {
    "train": ("quant", "numerics.py", "runs.py"),
    "compile": ("compiler", "hw", "boards", "quant/ir.py", "quant/reference.py", "numerics.py"),
    "sim": ("sim", "compiler", "hw", "boards", "quant", "numerics.py"),
    "energy": ("sim", "compiler", "hw", "numerics.py"),
    "build": ("boards", "compiler", "hw", "numerics.py"),
    "report": ("report.py",),
}
_PACKAGE = Path(__file__).resolve().parent


def code_files(step: str) -> list[Path]:
    """The source and data files of the exitgate code ``step`` runs (`_CODE`), sorted."""
    files = []
    for rel in _CODE[step]:
        path = _PACKAGE / rel
        if path.is_dir():
            files += [f for f in path.rglob("*") if f.suffix in (".py", ".json", ".toml")
                      and "__pycache__" not in f.parts]
        elif path.is_file():
            files.append(path)
    return sorted(files)


def _hash_file(h, path: Path) -> None:
    if not path.is_file():
        h.update(f"{path.name}:absent".encode())
        return
    h.update(f"{path.name}:{path.stat().st_size}:".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def fingerprint(run: Path, step: str, params: dict) -> str:
    h = hashlib.sha256()
    h.update(f"exitgate {exitgate_version()} {step}\n".encode())
    h.update(json.dumps({k: params.get(k) for k in _PARAMS[step]}, sort_keys=True).encode())
    for rel in _INPUTS[step]:
        _hash_file(h, run / rel)
    for path in code_files(step):
        h.update(str(path.relative_to(_PACKAGE) if path.is_relative_to(_PACKAGE)
                     else path).encode())
        _hash_file(h, path)
    return h.hexdigest()


def _resolve(config, dataset):
    """(Config, dataset spec, config file text) as `exitgate train` resolves them; the text is
    part of the train step's fingerprint, so an edited config is a change."""
    from .quant.config import default_config_path, load_config
    path = Path(config) if config else default_config_path()
    cfg = load_config(path)
    spec = dataset or cfg.dataset
    if config is None and spec != "digits":
        path = default_config_path("lenet28")
        cfg = load_config(path)
    return cfg, spec, path.read_text()


def _check_params(run: Path, params: dict, force: bool) -> dict:
    """flow.json's record, after refusing a RUN made for other parameters (unless force)."""
    path = run / FLOW_FILE
    if not run.exists():
        return {"params": params, "steps": {}}
    if not run.is_dir():
        raise ExitgateError(f"--out {run} exists and is not a directory")
    if force:
        return {"params": params, "steps": {}}
    if not path.exists():
        existing = [a for s in STEPS.values() for a in s[1] if (run / a).exists()]
        if existing:
            raise ExitgateError(f"{run} holds results not made by `exitgate flow` "
                                f"({', '.join(existing[:4])}{', ...' if len(existing) > 4 else ''}"
                                "); use --force to redo every step there, or choose another --out")
        return {"params": params, "steps": {}}
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("params"), dict) \
            or not isinstance(record.get("steps"), dict):
        raise ExitgateError(f"{path} is corrupt (no params/steps); re-run with --force")
    old = record["params"]
    changed = [k for k in params if k != "config_text" and old.get(k) != params[k]]
    if old.get("config_text") != params["config_text"]:
        changed.append("config (file contents)")
    if changed:
        what = ", ".join(f"{k} {old.get(k)!r} -> {params[k]!r}" if k in params else k
                         for k in changed)
        raise ExitgateError(f"{run} was made by `exitgate flow` with other settings ({what}); "
                            "use --force to redo it with these, or choose another --out")
    return record


def run_flow(out: Path, *, config: str | None = None, dataset: str | None = None,
             board: str | None = None, mode: str | None = None, simulator: str = "verilator",
             limit: int | None = None, profile: str | None = None,
             buffer_depth: int | None = None, soft_multipliers: bool = False,
             build: bool = True, seeds: int = 1, time_limit: float | None = DEFAULT_TIME_LIMIT_S,
             force: bool = False, progress: bool = True, log=print) -> dict:
    """Run (or resume) the whole flow in RUN directory `out`; returns flow.json's dict with a
    ``summary`` of each step (status done/skipped/not-available, seconds). ``seeds`` and
    ``time_limit`` go to the build step (`exitgate.compiler.flow.run_build`); the time limit
    is not a setting of the run (it changes how long a build may take, not what it makes)."""
    from .boards.profiles import DEFAULT_BOARD, get_board

    out = Path(out)
    prof = get_board(board or DEFAULT_BOARD)                       # unknown board: fail before any work
    cfg, spec, config_text = _resolve(config, dataset)
    if limit is not None and limit < 1:
        raise ExitgateError(f"--limit must be a positive number of samples, got {limit}")
    check_seeds(seeds if build else 1, prof)
    check_time_limit(time_limit)
    if simulator not in ("verilator", "icarus"):
        raise ExitgateError(f"--simulator must be verilator or icarus, got {simulator!r}")
    params = {"config": str(Path(config).resolve()) if config else None,
              "config_text": config_text, "dataset": spec, "mode": mode,
              "board": prof.name, "simulator": simulator, "limit": limit, "profile": profile,
              "buffer_depth": buffer_depth, "build": build,
              # None unless asked for: runs recorded before the option match
              "soft_multipliers": True if soft_multipliers else None,
              "seeds": seeds if seeds > 1 else None}
    record = _check_params(out, params, force)
    out.mkdir(parents=True, exist_ok=True)
    record["params"] = params
    write_json(out / FLOW_FILE, record)

    steps = [s for s in FLOW_STEPS if s != "build" or build]
    summary = []
    redo_rest = force
    t_all = time.perf_counter()
    for n, step in enumerate(steps, 1):
        marker = out / STEPS[step][0]
        fp = fingerprint(out, step, params)
        prev = record["steps"].get(step, {})
        if not redo_rest and marker.is_file() and prev.get("fingerprint") == fp:
            log(f"[{n}/{len(steps)}] {step}: up to date, skipped")
            summary.append({"step": step, "status": "skipped", "seconds": 0.0,
                            "detail": prev.get("detail", "")})
            continue
        log(f"[{n}/{len(steps)}] {step} ...")
        t0 = time.perf_counter()
        # redo: the step's own partial or stale results go (and, through prepare_step, every
        # later step's); the fingerprints of later steps no longer describe anything
        for later in steps[steps.index(step):]:
            record["steps"].pop(later, None)
        write_json(out / FLOW_FILE, record)
        detail = _STEP_FUNCS[step](out, cfg=cfg, spec=spec, params=params, prof=prof,
                                   progress=progress, log=log, time_limit=time_limit)
        secs = time.perf_counter() - t0
        # the fingerprint of the inputs the step actually read (train's depend on params only)
        record["steps"][step] = {"fingerprint": fingerprint(out, step, params),
                                 "seconds": secs, "detail": detail,
                                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(out / FLOW_FILE, record)
        log(f"[{n}/{len(steps)}] {step}: done in {secs:.1f} s — {detail}")
        summary.append({"step": step, "status": "done", "seconds": secs, "detail": detail})
        redo_rest = True          # later steps read what this one just wrote
    record["summary"] = summary
    record["seconds"] = time.perf_counter() - t_all
    return record


def _train(out, *, cfg, spec, params, progress, log, **_):
    from .quant.datasets import load_dataset
    from .quant.flow import run_train
    ds = load_dataset(spec)
    log(f"  {cfg.model.name} on {ds.name} (train {len(ds.y_train)}, val {len(ds.y_val)}, "
        f"test {len(ds.y_test)})")
    r = run_train(cfg, ds, out, force=True, mode=params["mode"], progress=progress,
                  log=lambda *a: None)
    acc = r["accuracy"]
    return (f"quantised {100 * acc['quantised']:.2f}% (float {100 * acc['float']:.2f}%), "
            f"{r['agreement']['logit_mismatches']} logit mismatches"
            if acc.get("float") is not None else f"quantised {100 * acc['quantised']:.2f}%")


def _compile(out, *, params, log, **_):
    from .compiler.flow import run_compile
    kw = {} if params["buffer_depth"] is None else {"buffer_depth": params["buffer_depth"]}
    m = run_compile(out, params["board"], force=True, log=lambda *a: None,
                    soft_multipliers=bool(params.get("soft_multipliers")), **kw)
    p = m["predicted"]
    return (f"{m['board']}: predicted {1e3 * p['samples_per_cycle']:.3f} samples/kcycle, "
            f"{p['samples_per_cycle'] / p['baseline_samples_per_cycle']:.2f}x the baseline")


def _sim(out, *, params, log, **_):
    from .sim.flow import run_sim
    r, _ = run_sim(out, simulator=params["simulator"], limit=params["limit"], force=True,
                   log=lambda m: log(f"  {m}"))
    g, t = r["agreement"], r["throughput"]
    mism = g["class_mismatches"] + g["exit_mismatches"] + (g["logit_mismatches"] or 0)
    if r["errors"] or mism:
        raise ExitgateError(f"the RTL disagrees with the integer reference ({mism} mismatches; "
                            f"first: {(r['errors'] or ['-'])[0]}); see {out}/sim/results.json")
    return (f"RTL {100 * r['accuracy']['rtl']:.2f}% on {r['samples']} samples, 0 mismatches, "
            f"speedup {t['speedup']:.2f}x")


def _energy(out, *, params, log, **_):
    from .sim.energy import run_energy
    e, _ = run_energy(out, profile=params["profile"], force=True, log=lambda *a: None)
    en = e["energy"]
    return (f"{e.get('profile', '?')}: mean {en['mean_pj'] / 1e3:.1f} nJ vs baseline "
            f"{en['baseline_pj'] / 1e3:.1f} nJ ({en['mean_pj'] / en['baseline_pj']:.2f}x)")


def _build(out, *, params, prof, log, time_limit, **_):
    from .compiler.flow import run_build
    r = run_build(out, params["board"], force=True, seeds=params["seeds"] or 1,
                  time_limit=time_limit, log=lambda m: log(f"  {m}"))
    parts = []
    for which in ("early_exit", "baseline"):
        b = r[which]
        fmax = b.get("fmax_mhz")
        parts.append(f"{which} {b['status']}" + (f" Fmax {fmax:.1f} MHz" if fmax else "")
                     + (" (router2: router1 stopped at the time limit)"
                        if b.get("router") == "router2" else ""))
    return "; ".join(parts) if prof.open_flow else f"{prof.name}: sources only (no open flow)"


def _report(out, *, log, **_):
    from .report import run_report
    _, path = run_report(out, force=True, log=lambda *a: None)
    return f"{path}"


_STEP_FUNCS = {"train": _train, "compile": _compile, "sim": _sim, "energy": _energy,
               "build": _build, "report": _report}


def format_flow_table(record: dict) -> str:
    rows = record.get("summary", [])
    lines = [f"{'step':<8} {'status':<8} {'seconds':>8}  result"]
    for r in rows:
        lines.append(f"{r['step']:<8} {r['status']:<8} {r['seconds']:>8.1f}  {r['detail']}")
    lines.append(f"{'total':<8} {'':<8} {record.get('seconds', 0.0):>8.1f}")
    return "\n".join(lines)
