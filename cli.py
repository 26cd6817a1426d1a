"""The `exitgate` command line: a thin layer over the subpackages.

Every user-facing problem is an ExitgateError, printed as one line `exitgate: error: ...` with
exit status 1 (2 for bad command-line syntax); never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import ExitgateError

__all__ = ["main", "build_parser"]


def _cmd_train(args) -> int:
    from .quant.config import load_config
    from .quant.datasets import load_dataset

    cfg = load_config(args.config)
    spec = args.dataset or cfg.dataset
    if spec in ("mnist", "fashion-mnist", "mnist-t10k"):
        raise ExitgateError(f"--dataset {spec} needs a directory: {spec}:DIR")
    if args.config is None and spec != "digits":
        from .quant.config import default_config_path
        cfg = load_config(default_config_path("lenet28"))
    out = Path(args.out)
    if not args.force:
        from .runs import prepare_step
        prepare_step(out, "train", force=False)  # refuse before spending time on training
    ds = load_dataset(spec)
    from .quant.flow import format_train_table, run_train

    print(f"exitgate train: {cfg.model.name} on {ds.name} "
          f"(train {len(ds.y_train)}, val {len(ds.y_val)}, test {len(ds.y_test)}) -> {out}")
    result = run_train(cfg, ds, out, force=args.force, mode=args.mode,
                       progress=not args.quiet, float_baseline=not args.no_float)
    print(format_train_table(result))
    print(f"wrote {out}/: config.toml model.pt ir.json weights.npz calibration.json "
          f"calibration.png train.json ({result['seconds']['total']:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="exitgate", description="Early-exit CNNs from Brevitas QAT "
                                "to verified FPGA hardware on an open toolchain.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    t = sub.add_parser("train", help="QAT-train a multi-exit CNN, export the integer IR, "
                       "check bit-exactness, calibrate thresholds")
    t.add_argument("--config", help="model/training TOML (default: the built-in digits config; "
                   "lenet28 for 28x28 datasets)")
    t.add_argument("--dataset", help="digits (default), mnist:DIR, fashion-mnist:DIR, "
                   "mnist-t10k:DIR")
    t.add_argument("--mode", choices=["e2e", "ic-only"], help="training mode (default: config)")
    t.add_argument("--out", required=True, help="RUN directory to create")
    t.add_argument("--force", action="store_true", help="replace results already in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument("--no-float", action="store_true", help="skip the float baseline model")
    t.set_defaults(func=_cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ExitgateError as e:
        print(f"exitgate: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("exitgate: interrupted; the step's results are incomplete and were not marked "
              "done (re-run it with --force)", file=sys.stderr)
        return 130
