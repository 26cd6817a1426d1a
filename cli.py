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
    if args.config is None and spec != "digits":
        from .quant.config import default_config_path
        cfg = load_config(default_config_path("lenet28"))
    out = Path(args.out)
    if not args.force:
        from .runs import refuse_existing
        refuse_existing(out, "train")  # refuse before spending time on training
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


def _cmd_compile(args) -> int:
    from .compiler.flow import format_fold_table, run_compile

    m = run_compile(Path(args.run), args.board, force=args.force, buffer_depth=args.buffer_depth,
                    soft_multipliers=args.soft_multipliers)
    print(format_fold_table(m))
    lat = ", ".join(f"exit {e['index']}: {e['latency_cycles']}" for e in m["predicted"]["exits"])
    print(f"predicted unloaded latency (cycles): {lat}")
    print(f"wrote {args.run}/hw/: top.v baseline/top.v manifest.json ({m['seconds']:.1f} s)")
    return 0


def _cmd_build(args) -> int:
    from .compiler.flow import run_build

    r = run_build(Path(args.run), args.board, force=args.force, seeds=args.seeds,
                  time_limit=_time_limit_s(args.time_limit))
    for which in ("early_exit", "baseline"):
        b = r[which]
        res = b.get("resources") or {}
        fmax = b.get("fmax_mhz")
        print(f"{which:<11} {b['status']:<13} LUT {res.get('lut', '-')} FF {res.get('ff', '-')} "
              f"DSP {res.get('dsp', '-')} BRAM {res.get('bram', '-')}  Fmax "
              f"{'-' if fmax is None else f'{fmax:.1f}'} MHz (clock {b['clock_mhz']} MHz)  "
              f"{b.get('bitstream') or b.get('message', '')}")
        _print_seeds(b, indent=" " * 12)
        if b.get("synthesis_fallback"):
            print(f"{' ' * 12}yosys failed in ABC9 ({b['synthesis_fallback']['reason']}); "
                  f"synthesised again with abc mapping the LUTs")
    print(f"wrote {args.run}/build/build.json")
    return 0


def _print_seeds(b: dict, indent: str) -> None:
    """The seed sweep and time-limit lines of one design's build result, where there are any."""
    stopped = b.get("timed_out") or []
    if len(b.get("seeds") or {}) > 1 or stopped:
        tried = ", ".join(f"{sd}: " + ("stopped at the time limit" if sd in stopped else
                                       "failed" if f is None else f"{f:.1f}")
                          for sd, f in b["seeds"].items())
        kept = "router2 at seed 1" if b.get("router") == "router2" else f"seed {b['seed']}"
        print(f"{indent}nextpnr seeds (MHz) {tried}; kept {kept}")


def _time_limit_s(minutes: float) -> float | None:
    """--time-limit MIN (0: none) in seconds."""
    if not 0 <= minutes < float("inf"):
        raise ExitgateError(f"--time-limit must be a number of minutes >= 0 (0: no limit), got "
                            f"{minutes:g}")
    return minutes * 60 if minutes else None


def _cmd_energy(args) -> int:
    from .sim.energy import format_energy_table, run_energy

    e, path = run_energy(Path(args.run), args.profile, force=args.force,
                         sweep_limit=args.sweep_limit)
    print(format_energy_table(e))
    print(f"wrote {path}" + (f" and {e['figure']}" if e.get("figure") else ""))
    return 0


def _cmd_sim(args) -> int:
    from .sim.flow import format_sim_table, run_sim

    r, path = run_sim(Path(args.run), simulator=args.simulator, limit=args.limit,
                      threshold=args.threshold, dataset=args.dataset, waves=args.waves,
                      backpressure=args.backpressure, force=args.force)
    print(format_sim_table(r))
    print(f"wrote {path}")
    return 0 if not r["errors"] else 1


def _cmd_flow(args) -> int:
    from .flow import format_flow_table, run_flow

    print(f"exitgate flow -> {args.out} (board {args.board}, simulator {args.simulator})")
    r = run_flow(Path(args.out), config=args.config, dataset=args.dataset, board=args.board,
                 mode=args.mode, simulator=args.simulator, limit=args.limit,
                 profile=args.profile, buffer_depth=args.buffer_depth,
                 soft_multipliers=args.soft_multipliers, build=not args.no_build,
                 seeds=args.seeds, time_limit=_time_limit_s(args.time_limit),
                 force=args.force, progress=not args.quiet)
    print(format_flow_table(r))
    print(f"wrote {args.out}/ (report: {args.out}/report.html)")
    return 0


def _cmd_report(args) -> int:
    from .report import format_report_summary, run_report

    rep, page = run_report(Path(args.run), force=args.force)
    print(format_report_summary(rep))
    print(f"wrote {page}, {Path(args.run) / 'report.json'} and "
          f"{len(rep['report']['plots'])} plots in {Path(args.run) / 'report'}/")
    return 0


def _time_limit_arg(p) -> None:
    from .boards.build import DEFAULT_TIME_LIMIT_S
    p.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S / 60, metavar="MIN",
                   help="stop yosys or a nextpnr place and route after MIN minutes; when every "
                   "seed is stopped, route once more with nextpnr's router2 (default "
                   f"{DEFAULT_TIME_LIMIT_S / 60:g}; 0: no limit)")


def _model_args(p) -> None:
    """--config, --dataset, --mode: what `train` and `flow` train."""
    p.add_argument("--config", help="model/training TOML (default: the built-in digits config; "
                   "lenet28 for 28x28 datasets)")
    p.add_argument("--dataset", help="digits (default), mnist:DIR, fashion-mnist:DIR, "
                   "mnist-t10k:DIR")
    p.add_argument("--mode", choices=["e2e", "ic-only"], help="training mode (default: config)")


def _board_arg(p) -> None:
    from .boards.profiles import DEFAULT_BOARD, list_boards
    p.add_argument("--board", default=DEFAULT_BOARD,
                   help=f"target board ({', '.join(list_boards())}); default {DEFAULT_BOARD}")


def _soft_arg(p) -> None:
    p.add_argument("--soft-multipliers", action="store_true",
                   help="once the board's DSPs are spent, let a stage's products go into logic "
                   "(LUTs) so the folding search goes on (both designs, the same budget; more "
                   "throughput for both, usually a smaller early-exit speedup; default: DSPs "
                   "only)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="exitgate", description="Early-exit CNNs from Brevitas QAT "
                                "to verified FPGA hardware on an open toolchain.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    t = sub.add_parser("train", help="QAT-train a multi-exit CNN, export the integer IR, "
                       "check bit-exactness, calibrate thresholds")
    _model_args(t)
    t.add_argument("--out", required=True, help="RUN directory to create")
    t.add_argument("--force", action="store_true", help="replace results already in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument("--no-float", action="store_true", help="skip the float baseline model")
    t.set_defaults(func=_cmd_train)

    c = sub.add_parser("compile", help="fold the IR onto a board's budget; emit the early-exit "
                       "accelerator and the same-budget baseline as Verilog, plus a manifest")
    c.add_argument("run", metavar="RUN", help="a RUN directory made by `exitgate train`")
    _board_arg(c)
    c.add_argument("--buffer-depth", type=int,
                   help="samples each conditional buffer holds (default: the largest of 64, 32, "
                   "16, 8, 4, 2 that fits the board)")
    _soft_arg(c)
    c.add_argument("--force", action="store_true", help="replace RUN/hw")
    c.set_defaults(func=_cmd_compile)

    b = sub.add_parser("build", help="bitstreams (open toolchain) of both designs in a UART "
                       "harness; utilisation and Fmax")
    b.add_argument("run", metavar="RUN")
    b.add_argument("--board", help="must match the board compiled for (default: that board)")
    b.add_argument("--force", action="store_true", help="replace RUN/build")
    b.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="place and route each design with nextpnr seeds 1..N and keep the "
                        "fastest placement (N place-and-routes per design; default 1)")
    _time_limit_arg(b)
    b.set_defaults(func=_cmd_build)

    s = sub.add_parser("sim", help="simulate both designs on the test split (cocotb), check every "
                       "sample against the integer reference, measure latency and throughput")
    s.add_argument("run", metavar="RUN")
    s.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator")
    s.add_argument("--limit", type=int, help="simulate only the first N test samples")
    s.add_argument("--threshold", type=float, help="write this threshold (0, 1] into every early "
                   "exit's register at run time (no rebuild); results go to results-T<T>.json")
    s.add_argument("--dataset", help="dataset of the test samples (default: the run's)")
    s.add_argument("--waves", action="store_true", help="write an FST/VCD trace")
    s.add_argument("--backpressure", action="store_true",
                   help="random idle input cycles and result back-pressure")
    s.add_argument("--force", action="store_true", help="replace existing results")
    s.set_defaults(func=_cmd_sim)

    e = sub.add_parser("energy", help="energy per inference and per exit from the activity "
                       "counted in simulation x a technology profile; threshold sweep")
    e.add_argument("run", metavar="RUN")
    e.add_argument("--profile", help="technology profile: asic45nm-horowitz, ecp5, ice40up5k "
                   "(default: the compiled board's family)")
    e.add_argument("--sweep-limit", type=int, help="samples per RTL-measured sweep point "
                   "(default: all simulated samples)")
    e.add_argument("--force", action="store_true", help="replace RUN/energy.json")
    e.set_defaults(func=_cmd_energy)

    f = sub.add_parser("flow", help="the whole flow: train, compile, sim, energy, build (where "
                       "an open toolchain exists), report; resumes and skips up-to-date steps")
    _model_args(f)
    _board_arg(f)
    f.add_argument("--buffer-depth", type=int, help="samples each conditional buffer holds "
                   "(default: the compiler's choice)")
    _soft_arg(f)
    f.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator")
    f.add_argument("--limit", type=int, help="simulate only the first N test samples")
    f.add_argument("--profile", help="energy technology profile (default: the board's family)")
    f.add_argument("--no-build", action="store_true", help="skip the bitstream builds")
    f.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="build: nextpnr seeds 1..N per design, the fastest kept (default 1)")
    _time_limit_arg(f)
    f.add_argument("--out", required=True, help="RUN directory (created, or resumed)")
    f.add_argument("--force", action="store_true", help="redo every step, replacing results")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.set_defaults(func=_cmd_flow)

    r = sub.add_parser("report", help="every step's results in RUN/report.json and a "
                       "self-contained RUN/report.html with plots")
    r.add_argument("run", metavar="RUN")
    r.add_argument("--force", action="store_true", help="replace an existing report")
    r.set_defaults(func=_cmd_report)
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
