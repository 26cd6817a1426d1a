"""The model/training config: TOML in, validated dataclasses out, resolved TOML back.

Every key is checked: an unknown key, a value of the wrong type or out of range gives an
ExitgateError naming the key, the value and what is allowed.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import ExitgateError

__all__ = ["SegmentConfig", "ExitConfig", "ModelConfig", "TrainConfig", "CalibrationConfig",
           "Config", "load_config", "default_config_path", "dump_config", "BUILTIN_CONFIGS"]

BUILTIN_CONFIGS = {"digits": "digits.toml", "lenet28": "lenet28.toml"}
_BITS = (2, 8)


@dataclass(frozen=True)
class SegmentConfig:
    channels: int
    pool: bool = False
    weight_bits: int = 8
    act_bits: int = 8


@dataclass(frozen=True)
class ExitConfig:
    after: int          # 1-based segment index
    pool: int = 0       # 2x2 max-pools before flatten
    hidden: int = 0     # width of an optional hidden linear layer (0: none)
    weight_bits: int = 8
    act_bits: int = 8   # of the hidden layer's output


@dataclass(frozen=True)
class ModelConfig:
    segments: tuple[SegmentConfig, ...]
    exits: tuple[ExitConfig, ...]
    name: str = "model"
    classes: int = 10
    input_bits: int = 8
    input_frac_bits: int = 8


@dataclass(frozen=True)
class TrainConfig:
    mode: str = "e2e"
    epochs: int = 20
    head_epochs: int = 0          # ic-only: epochs for the early heads (0: same as epochs)
    batch_size: int = 64
    lr: float = 0.004
    seed: int = 0
    exit_weights: tuple[float, ...] = ()
    augment: bool = True          # random +-1 pixel shifts


@dataclass(frozen=True)
class CalibrationConfig:
    max_drop_pp: float = 0.5
    thresholds: tuple[float, ...] = ()   # empty: the default grid
    margin_samples: int = 1              # safety margin on the accuracy floor (see calibrate)


@dataclass(frozen=True)
class Config:
    dataset: str
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)


def default_config_path(name: str = "digits") -> Path:
    return Path(str(resources.files("exitgate.quant") / "configs" / BUILTIN_CONFIGS[name]))


def _err(where: str, msg: str) -> ExitgateError:
    return ExitgateError(f"config: {where}: {msg}")


def _take(table: dict, where: str, allowed: dict) -> dict:
    """Check keys and types of one table; `allowed` maps key -> type (or tuple of types)."""
    if not isinstance(table, dict):
        raise _err(where, f"must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise _err(where, f"unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")
    out = {}
    for key, value in table.items():
        typ = allowed[key]
        ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            raise _err(f"{where}.{key}", f"expected {name}, got {value!r}")
        out[key] = value
    return out


def _range(where: str, value, lo, hi=None):
    if value < lo or (hi is not None and value > hi):
        allowed = f">= {lo}" if hi is None else f"{lo}..{hi}"
        raise _err(where, f"{value!r} is out of range; allowed: {allowed}")


def parse_config(raw: dict, source: str = "config") -> Config:
    top = _take(raw, source, {"data": dict, "model": dict, "train": dict, "calibration": dict})
    if "model" not in top:
        raise _err(source, "missing [model] table")
    data = _take(top.get("data", {}), "data", {"dataset": str})
    m = _take(top["model"], "model", {"name": str, "classes": int, "input_bits": int,
                                      "input_frac_bits": int, "segments": list, "exits": list})
    _range("model.classes", m.get("classes", 10), 2, 1024)
    _range("model.input_bits", m.get("input_bits", 8), 1, 16)
    _range("model.input_frac_bits", m.get("input_frac_bits", 8), -16, 24)
    segs = []
    for i, s in enumerate(m.get("segments", [])):
        w = f"model.segments[{i}]"
        s = _take(s, w, {"channels": int, "pool": bool, "weight_bits": int, "act_bits": int})
        if "channels" not in s:
            raise _err(w, "missing key 'channels'")
        _range(f"{w}.channels", s["channels"], 1, 512)
        for k in ("weight_bits", "act_bits"):
            _range(f"{w}.{k}", s.get(k, 8), *_BITS)
        segs.append(SegmentConfig(**s))
    if not segs:
        raise _err("model.segments", "at least one segment is needed")
    exits = []
    for i, e in enumerate(m.get("exits", [])):
        w = f"model.exits[{i}]"
        e = _take(e, w, {"after": int, "pool": int, "hidden": int, "weight_bits": int,
                         "act_bits": int})
        if "after" not in e:
            raise _err(w, "missing key 'after'")
        if not 1 <= e["after"] <= len(segs):
            raise _err(f"{w}.after", f"there is no segment {e['after']}; "
                                     f"allowed: 1..{len(segs)} (segments count from 1)")
        _range(f"{w}.pool", e.get("pool", 0), 0, 4)
        _range(f"{w}.hidden", e.get("hidden", 0), 0, 4096)
        for k in ("weight_bits", "act_bits"):
            _range(f"{w}.{k}", e.get(k, 8), *_BITS)
        exits.append(ExitConfig(**e))
    if len(exits) < 2:
        raise _err("model.exits", f"an early-exit network needs 2 or more exits, got {len(exits)}")
    afters = [e.after for e in exits]
    if afters != sorted(afters) or len(set(afters)) != len(afters):
        raise _err("model.exits", f"exits must be after strictly increasing segments, got {afters}")
    if afters[-1] != len(segs):
        raise _err("model.exits", f"the last exit must be after the last segment ({len(segs)}), "
                                  f"got {afters[-1]}")
    model = ModelConfig(segments=tuple(segs), exits=tuple(exits),
                        **{k: v for k, v in m.items() if k not in ("segments", "exits")})

    t = _take(top.get("train", {}), "train", {
        "mode": str, "epochs": int, "head_epochs": int, "batch_size": int, "lr": float,
        "seed": int, "exit_weights": list, "augment": bool})
    if t.get("mode", "e2e") not in ("e2e", "ic-only"):
        raise _err("train.mode", f"{t['mode']!r} is not a mode; allowed: e2e, ic-only")
    _range("train.epochs", t.get("epochs", 20), 1, 10_000)
    _range("train.head_epochs", t.get("head_epochs", 0), 0, 10_000)
    _range("train.batch_size", t.get("batch_size", 64), 1, 65_536)
    _range("train.lr", t.get("lr", 0.004), 1e-7, 10.0)
    weights = t.get("exit_weights", [1.0] * len(exits))
    if len(weights) != len(exits) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in weights):
        raise _err("train.exit_weights", f"need {len(exits)} non-negative numbers (one per exit), "
                                         f"got {weights!r}")
    t["exit_weights"] = tuple(float(x) for x in weights)
    train = TrainConfig(**t)

    c = _take(top.get("calibration", {}), "calibration", {"max_drop_pp": float,
                                                          "thresholds": list,
                                                          "margin_samples": int})
    _range("calibration.margin_samples", c.get("margin_samples", 1), 0, 1000)
    _range("calibration.max_drop_pp", c.get("max_drop_pp", 0.5), 0.0, 100.0)
    th = c.get("thresholds", [])
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x <= 1 for x in th):
        raise _err("calibration.thresholds", f"thresholds must be in (0, 1], got {th!r}")
    c["thresholds"] = tuple(float(x) for x in th)
    calib = CalibrationConfig(**c)
    return Config(dataset=data.get("dataset", "digits"), model=model, train=train,
                  calibration=calib)


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a config file (default: the built-in digits config)."""
    path = Path(path) if path is not None else default_config_path()
    if not path.is_file():
        raise ExitgateError(f"config file {path} does not exist; built-in configs: "
                            + ", ".join(str(default_config_path(n)) for n in BUILTIN_CONFIGS))
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ExitgateError(f"config file {path} is not valid TOML: {e}") from None
    return parse_config(raw, source=path.name)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def dump_config(cfg: Config) -> str:
    """The resolved config as TOML (every default written out); `parse_config` reads it back."""
    d = asdict(cfg)
    lines = ["# resolved by exitgate", "[data]", f"dataset = {_toml_value(cfg.dataset)}", "",
             "[model]"]
    m = d["model"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in m.items() if k not in ("segments", "exits")]
    for kind in ("segments", "exits"):
        for item in m[kind]:
            lines += ["", f"[[model.{kind}]]"] + [f"{k} = {_toml_value(v)}" for k, v in item.items()]
    for table in ("train", "calibration"):
        lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in d[table].items()]
    return "\n".join(lines) + "\n"
