"""RUN directories: which step writes what, refusing to overwrite, atomic writes.

A step's results are complete when its marker file (the step's JSON) exists: it is written
last, atomically, so an interrupted step never leaves a marker a later step would trust.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .errors import ExitgateError

__all__ = ["exitgate_version", "STEPS", "prepare_step", "refuse_existing", "require_step", "write_json", "read_json",
           "atomic_write"]

# step -> (marker, artefacts it owns); in flow order
STEPS = {
    "train": ("train.json", ["config.toml", "model.pt", "ir.json", "weights.npz",
                             "calibration.json", "calibration.png", "train.json"]),
    "compile": ("hw/manifest.json", ["hw"]),
    "sim": ("sim/results.json", ["sim"]),
    "energy": ("energy.json", ["energy.json"]),
    "build": ("build/build.json", ["build"]),
    "report": ("report.json", ["report.json", "report.html", "report"]),
}
_ORDER = list(STEPS)


def exitgate_version() -> str:
    """The installed exitgate's version (recorded in flow fingerprints and reports)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("exitgate")
    except PackageNotFoundError:
        return "unknown"


def refuse_existing(run: Path, step: str) -> None:
    """Raise if `run` already holds results of `step` (changes nothing on disk)."""
    run = Path(run)
    existing = [a for a in STEPS[step][1] if (run / a).exists()]
    if existing:
        marker = run / STEPS[step][0]
        state = "" if marker.exists() else (" (incomplete: its marker " + STEPS[step][0]
                                            + " is missing, so an earlier run was interrupted)")
        where = ", or choose another --out" if step == "train" else ""
        raise ExitgateError(f"{run} already holds results of `exitgate {step}` "
                            f"({', '.join(existing)}){state}; use --force to replace them{where}")


def prepare_step(run: Path, step: str, force: bool) -> list[str]:
    """Check that `step` may write into `run`: refuse if its results exist unless `force`.
    With `force`, remove its artefacts and those of every later step (they would be stale);
    returns what was removed."""
    run = Path(run)
    if not force:
        refuse_existing(run, step)
    removed = []
    if force:
        for later in _ORDER[_ORDER.index(step):]:
            for a in STEPS[later][1]:
                p = run / a
                if p.is_dir():
                    shutil.rmtree(p)
                    removed.append(a)
                elif p.exists():
                    p.unlink()
                    removed.append(a)
    run.mkdir(parents=True, exist_ok=True)
    return removed


def require_step(run: Path, step: str) -> Path:
    """The marker of an earlier step, or an error saying which command makes it."""
    run = Path(run)
    if not run.is_dir():
        raise ExitgateError(f"run directory {run} does not exist; create it with "
                            f"`exitgate train --out {run}`")
    marker = run / STEPS[step][0]
    if not marker.is_file():
        raise ExitgateError(f"{marker} is missing: run `exitgate {step} {run}` first"
                            if step != "train" else
                            f"{marker} is missing: run `exitgate train --out {run}` first")
    return marker


def atomic_write(path: Path, data: bytes | str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1, default=_default) + "\n")


def _default(o):
    import numpy as np
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ExitgateError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExitgateError(f"{path} is corrupt ({e}); re-run the step that writes it "
                            "with --force") from None
