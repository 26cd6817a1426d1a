"""Post-place-and-route Fmax of one hardware block, without building a whole accelerator.

    .venv/bin/python bench/fmax_blocks.py [--family ecp5|ice40] [--freq MHZ] [--out DIR] [NAME ...]
    .venv/bin/python bench/fmax_blocks.py --list

    sys.path.insert(0, "bench"); from fmax_blocks import measure_fmax
    r = measure_fmax(component, "ecp5", out_dir="/tmp/mvu")  # {fmax_mhz, critical_from, ...}

`measure_fmax` wraps a `wiring.Component` in `FmaxShell` so that only the block's own paths
limit the clock:

    32-bit LFSR, XORed with (din pin -> FF) -> shift chain (one FF per In bit) -> every In signal
    every Out signal -> capture FF -> XOR chain (one FF per bit) -> pipelined 4-input XOR tree
                                                                -> FF -> dout pin

"In" and "Out" are the flows seen from the block (`Signature.flatten`), so the ``ready`` of an
Out stream is driven from the shift chain too (random back-pressure logic stays in), and the
``ready`` of an In stream is captured. Every shell path is FF -> at most one LUT4 -> FF, shorter
than any real block path. The XOR chain in front of the tree keeps duplicated or complementary
Out bits (which yosys merges) from cancelling in the XOR and taking their logic away with them.

The clock comes from one pin. Resets follow the amaranth platforms the real builds use: ECP5
(`LatticePlatform`) makes ``sync`` reset-less (GSR initialises the flip-flops); iCE40
(`SiliconBluePlatform`) drives ``sync``'s reset from a synchroniser, here two FFs from a ``rst``
pin. The shell's own registers are in a reset-less domain on the same clock.

The flow is the one `exitgate.boards.build` runs through the amaranth platforms: RTLIL (if yosys
fails on it, amaranth's Verilog of the same design, as `exitgate.boards.synth` reads, with a
warning), plain ``synth_ecp5`` / ``synth_ice40`` (abc9 is yosys' default mapper for both; no
``-dsp`` on iCE40, so multipliers stay in LUTs as on the board), then nextpnr with ``--freq``,
``--report`` and ``--timing-allow-fail`` (no bitstream). Defaults: ECP5 ``--85k --package
CABGA381 --speed 6`` (the ULX3S-85F), iCE40 ``--up5k --package sg48`` (the iCEBreaker). Tools are
the yowasp ones, found as `exitgate build` finds them (``YOSYS`` / ``NEXTPNR_ECP5`` /
``NEXTPNR_ICE40`` override). yowasp tools see only paths under their working directory, so they run in ``out_dir``
with relative file names. Nothing here times IO: the pins are unconstrained.

The result (`measure_fmax`):

    fmax_mhz        nextpnr's achieved Fmax of the clock (report "fmax")
    critical_from   first source cell of the worst clock-to-clock path (report "critical_paths");
    critical_to     its last sink cell. Block cells are named ``dut.<signal>...``, shell cells
                    ``shell_...`` (a shell endpoint means the path enters or leaves the block)
    critical_ns     the path's total delay (sum of its segments)
    critical_path   the distinct cells along it, in order
    critical_sources  the HDL source lines (file:line) of its nets, as nextpnr reports them
    utilisation     {lut, ff, dsp, bram} as `exitgate.boards.build` counts them (iCE40 lut:
                    packed logic cells ICESTORM_LC; iCE40 ff: SB_DFF* from yosys), shell included
    shell_ff        flip-flops the shell adds (subtract from ff for the block alone)
    cells           nextpnr's full {cell type: {used, available}}
    seconds         wall time of synthesis + place and route (also synth_s, pnr_s)
    frontend        "rtlil" or "verilog" (then ``warning`` says why)
    clock_mhz, timing_met, family, device, package, out_dir, logs (command.txt in out_dir has the
    exact tool command lines)

Adding a block is adding one entry to `BLOCKS`: a zero-argument function returning a component.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from amaranth.back import rtlil, verilog
from amaranth.hdl import Cat, ClockDomain, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from exitgate.boards.build import _require_tools, read_nextpnr_report, tool_env_var
from exitgate.boards.synth import counts_from_cells, synth_commands
from exitgate.errors import ExitgateError
from exitgate.sim.tools import tool_env

OUT = Path(__file__).with_name("out") / "fmax"
FAMILIES = ("ecp5", "ice40")

# family -> (default device, default package, yosys synth command, nextpnr tool, env override)
_FLOW = {
    "ecp5": ("85k", "CABGA381", "nextpnr-ecp5"),
    "ice40": ("up5k", "sg48", "nextpnr-ice40"),
}
_LFSR_TAPS = (31, 21, 1, 0)   # x^32 + x^22 + x^2 + x + 1, maximal length
_XOR_FANIN = 4                # one LUT4 per XOR-tree node


class FmaxShell(wiring.Component):
    """A block between an LFSR-fed input shift chain and a registered XOR-reduced output (see the
    module docstring). Ports: ``clk``, ``din``, ``dout`` and, with ``reset``, ``rst``."""

    def __init__(self, dut: wiring.Component, *, reset: bool):
        if not isinstance(dut, wiring.Component):
            raise TypeError(f"the block must be an amaranth.lib.wiring.Component, got {dut!r}")
        self.dut, self.reset = dut, reset
        self.inputs, self.outputs = [], []      # (path, value) in signature order
        for path, member, value in dut.signature.flatten(dut):
            side = self.inputs if member.flow == In else self.outputs
            side.append(("__".join(map(str, path)), Value.cast(value)))
        self.in_bits = sum(len(v) for _, v in self.inputs)
        self.out_bits = sum(len(v) for _, v in self.outputs)
        if not self.out_bits:
            raise ExitgateError("the block has no Out signals: nothing would be kept to time")
        ports = {"clk": In(1), "din": In(1), "dout": Out(1)}
        if reset:
            ports["rst"] = In(1)
        super().__init__(ports)

    @property
    def shell_ff(self) -> int:
        """Flip-flops of the shell itself (din FF, LFSR, chain, capture, XOR chain and tree)."""
        tree, n = 0, self.out_bits
        while n > 1:
            n = -(-n // _XOR_FANIN)
            tree += n
        return (1 + 32 + self.in_bits + 2 * self.out_bits + tree
                + (2 if self.reset else 0) + (1 if self.out_bits == 1 else 0))

    def elaborate(self, platform):
        m = Module()
        m.domains.shell = shell = ClockDomain("shell", reset_less=True)
        m.domains.sync = sync = ClockDomain("sync", reset_less=not self.reset)
        m.d.comb += [sync.clk.eq(self.clk), shell.clk.eq(self.clk)]
        if self.reset:                        # like amaranth's iCE40 reset synchroniser
            rst_meta, rst_sync = Signal(name="shell_rst_meta"), Signal(name="shell_rst_sync")
            m.d.shell += [rst_meta.eq(self.rst), rst_sync.eq(rst_meta)]
            m.d.comb += sync.rst.eq(rst_sync)
        m.submodules.dut = self.dut

        din = Signal(name="shell_din")
        lfsr = Signal(32, init=0xACE1_2345, name="shell_lfsr")
        feedback = Cat(*(lfsr[tap] for tap in _LFSR_TAPS)).xor()     # one LUT4
        m.d.shell += [din.eq(self.din), lfsr.eq(Cat(feedback, lfsr[:-1]))]
        if self.in_bits:
            chain = Signal(self.in_bits, name="shell_in")
            m.d.shell += chain.eq(Cat(lfsr[-1] ^ din, chain[:-1]))
            m.d.comb += Cat(*(v for _, v in self.inputs)).eq(chain)

        captured = Signal(self.out_bits, name="shell_out")
        m.d.shell += captured.eq(Cat(*(v for _, v in self.outputs)))
        mixed = Signal(self.out_bits, name="shell_mix")
        m.d.shell += mixed.eq(captured ^ Cat(mixed[-1], mixed[:-1]))
        level, depth = mixed, 0
        if len(level) == 1:
            level = self._stage(m, [level[0]], 0)
        while len(level) > 1:
            groups = [level[k:k + _XOR_FANIN] for k in range(0, len(level), _XOR_FANIN)]
            level = self._stage(m, [g.xor() for g in groups], depth)
            depth += 1
        m.d.comb += self.dout.eq(level[0])
        return m

    @staticmethod
    def _stage(m, values, depth):
        reg = Signal(len(values), name=f"shell_xor{depth}")
        m.d.shell += reg.eq(Cat(*values))
        return reg


def _tool(tool: str, env: dict) -> str:
    """The path `exitgate.boards.build` would run ``tool`` from (yowasp's, or the env var's)."""
    _require_tools([tool], env)
    return env.get(tool_env_var(tool), tool)


def _run(cmd, cwd: Path, env: dict, log: Path, what: str) -> float:
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
        raise ExitgateError(f"{what} failed (exit status {proc.returncode}): see {log}; "
                            f"last output: {tail}")
    return time.monotonic() - start


def _synthesise(shell, out: Path, yosys: str, env: dict, synth: list[str]):
    """yosys ``synth`` (commands, `exitgate.boards.synth.synth_commands`) of the shell from RTLIL
    (what the amaranth platforms give yosys), or, if yosys fails on that, from amaranth's
    Verilog of it. Returns (frontend, log name, warning)."""
    warning = None
    for frontend, source, read in (("rtlil", "top.il", "read_rtlil"),
                                   ("verilog", "top.v", "read_verilog")):
        convert = rtlil.convert if frontend == "rtlil" else verilog.convert
        (out / source).write_text(convert(shell, name="top"))
        (out / "top.ys").write_text(f"{read} {source}\n" + "\n".join(synth)
                                    + "\ntee -q -o stat.json stat -json\nwrite_json top.json\n")
        log = f"yosys_{frontend}.log"
        try:
            _run([yosys, "-q", "-l", log, "top.ys"], out, env, out / "yosys.out",
                 f"yosys {synth[0].split()[0]} ({frontend})")
            return frontend, log, warning
        except ExitgateError as exc:
            last = " ".join((out / log).read_text(errors="replace").strip().splitlines()[-1:])
            if frontend == "verilog":
                raise ExitgateError(f"{exc}; {last}") from None
            warning = (f"yosys failed on the RTLIL ({last}; see {out / log}): synthesised "
                       f"amaranth's Verilog of the same design instead")
            print(f"[fmax] warning: {warning}", file=sys.stderr, flush=True)


def _critical_path(report: dict):
    """(from cell, to cell, total ns, cells, sources) of the longest clock-to-clock path in the
    report; sources are the HDL locations nextpnr gives for the path's nets."""
    paths = [p for p in report.get("critical_paths", []) if p.get("path")]
    if not paths:
        return None, None, None, [], []
    def total(p):
        return sum(float(seg.get("delay", 0.0)) for seg in p["path"])
    same = [p for p in paths if p.get("from") == p.get("to") and "async" not in str(p.get("from"))]
    worst = max(same or paths, key=total)
    cells, sources = [], []
    for seg in worst["path"]:
        for end in ("from", "to"):
            cell = seg.get(end, {}).get("cell")
            if cell and (not cells or cells[-1] != cell):
                cells.append(cell)
        sources += [s for s in seg.get("sources", [])      # not yosys' own techmap files
                    if s not in sources and Path(s.split(":")[0]).is_file()]
    return (worst["path"][0]["from"]["cell"], worst["path"][-1]["to"]["cell"],
            round(total(worst), 3), cells, sources)


def measure_fmax(component, family: str = "ecp5", device: str | None = None,
                 out_dir=None, freq_mhz: float = 125, *, package: str | None = None,
                 synth_opts: str = "", seed: int = 1) -> dict:
    """Synthesise, place and route ``component`` inside `FmaxShell` for ``family`` and return
    its Fmax, critical path and utilisation (see module docstring). ``device`` / ``package`` are
    nextpnr's (``85k``/``CABGA381``, ``up5k``/``sg48`` by default); ``out_dir`` keeps the RTLIL,
    netlist, logs and report (default ``bench/out/fmax/<Class>-<family>``)."""
    if family not in _FLOW:
        raise ExitgateError(f"no open place and route for family {family!r}: use one of "
                            f"{', '.join(FAMILIES)}")
    default_device, default_package, pnr_name = _FLOW[family]
    device, package = device or default_device, package or default_package
    out = Path(out_dir if out_dir is not None
               else OUT / f"{type(component).__name__}-{family}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = tool_env()
    yosys = _tool("yosys", env)
    nextpnr = _tool(pnr_name, env)

    shell = FmaxShell(component, reset=family == "ice40")
    for stale in ("top.json", "report.json", "stat.json", "top.il", "top.v"):
        (out / stale).unlink(missing_ok=True)
    start = time.monotonic()
    frontend, log, warning = _synthesise(shell, out, yosys, env,
                                         synth_commands(family, "top", synth_opts))
    synth_s = time.monotonic() - start

    cmd = [nextpnr, "--quiet", "--log", "nextpnr.log", f"--{device.lower()}",
           "--package", package, "--json", "top.json", "--freq", f"{freq_mhz:g}",
           "--report", "report.json", "--timing-allow-fail", "--seed", str(seed)]
    cmd += (["--speed", "6", "--lpf-allow-unconstrained"] if family == "ecp5"
            else ["--pcf-allow-unconstrained"])
    try:
        pnr_s = _run(cmd, out, env, out / "nextpnr.out", pnr_name)
    except ExitgateError as exc:
        text = (out / "nextpnr.log").read_text(errors="replace")
        over = [f"{cell} {used}/{avail}" for cell, used, avail
                in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", text, re.M)
                if int(used) > int(avail)]
        if over:
            raise ExitgateError(f"the block does not fit {family} {device}: {', '.join(over)} "
                                f"(see {out / 'nextpnr.log'}); try a bigger device, a smaller "
                                f"configuration, or on iCE40 synth_opts '-dsp'") from None
        raise exc
    (out / "command.txt").write_text(
        f"cd {out}\n{yosys} -q -l {log} top.ys\n{' '.join(cmd)}\n")

    counted, cells, fmax, report = read_nextpnr_report(family, out / "report.json")
    if "ff" not in counted:                 # iCE40: a logic cell holds a LUT and a FF
        stat = json.loads((out / "stat.json").read_text())["design"]["num_cells_by_type"]
        counted["ff"] = counts_from_cells(stat, family)["ff"]
    utilisation = {key: counted[key] for key in ("lut", "ff", "dsp", "bram")}
    source, sink, path_ns, path_cells, path_sources = _critical_path(report)
    return {"fmax_mhz": fmax, "critical_from": source, "critical_to": sink,
            "critical_ns": path_ns, "utilisation": utilisation,
            "seconds": round(synth_s + pnr_s, 1),
            "synth_s": round(synth_s, 1), "pnr_s": round(pnr_s, 1),
            "critical_path": path_cells, "critical_sources": path_sources,
            "shell_ff": shell.shell_ff, "cells": cells,
            "clock_mhz": freq_mhz, "timing_met": fmax is not None and fmax >= freq_mhz,
            "family": family, "device": device, "package": package, "out_dir": str(out),
            "frontend": frontend, "warning": warning,
            "logs": {"yosys": str(out / log), "nextpnr": str(out / "nextpnr.log"),
                     "report": str(out / "report.json")}}


# ---------------------------------------------------------------------------------------------
# Representative configurations (the same shapes as bench/hw_blocks.py where there is one).

def _rng():
    return np.random.default_rng(0)


def _mvu(pe: int, simd: int):
    from exitgate.hw.mvu import MatrixVectorUnit, accumulator_width
    rng = _rng()
    rows, n = 32, 64
    w = rng.integers(-127, 128, (rows, n))
    b = rng.integers(-1000, 1000, rows)
    acc = accumulator_width(w, b, 8, False)
    return MatrixVectorUnit(w, b, in_width=8, in_signed=False, weight_bits=8, pe=pe, simd=simd,
                            acc_width=acc, shift=8, out_bits=8, relu=True)


def mvu_block():
    """MatrixVectorUnit 32 x 64, 8-bit unsigned inputs, 8-bit weights, PE4 SIMD8, requantised
    (shift 8, 8-bit ReLU output). Too big for an iCE40 UP5K without DSPs: see mvu_small."""
    return _mvu(4, 8)


class OnPlatform(wiring.Component):
    """``dut`` elaborated for ``platform`` (its ``elaborate`` gets that platform object, as in a
    board build) inside a design `measure_fmax` elaborates without one; the ports are forwarded.
    For blocks whose hardware depends on the platform (the MVU's ECP5 DSP products)."""

    def __init__(self, dut: wiring.Component, platform):
        self.dut, self.platform = dut, platform
        super().__init__(dut.signature)

    def elaborate(self, platform):
        from amaranth.hdl import Elaboratable, Fragment

        dut, target = self.dut, self.platform

        class Pinned(Elaboratable):
            def elaborate(self, _platform):
                return Fragment.get(dut, target)

        m = Module()
        m.submodules.dut = Pinned()
        wiring.connect(m, wiring.flipped(self), dut)
        return m


def mvu_dsp_block():
    """The mvu block elaborated for the ULX3S-85F (ECP5 platform): each product a MULT18X18D with
    its input and output registers in use instead of fabric operand/product registers. ECP5
    only."""
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return OnPlatform(mvu_block(), ULX3S_85F_Platform())


def mvu_small_block():
    """The same MatrixVectorUnit at PE2 SIMD4 (8 multipliers: fits an iCE40 UP5K)."""
    return _mvu(2, 4)


def conv_block():
    """Conv2dStage C8 8x8 -> 16, w4 a8, PE4 SIMD8, 4 lanes in and out (bench/hw_blocks.py)."""
    from exitgate.hw.conv import Conv2dStage
    rng = _rng()
    c, h, w, cout = 8, 8, 8, 16
    return Conv2dStage(rng.integers(-7, 8, (cout, c, 3, 3)), rng.integers(-500, 500, cout),
                       (c, h, w), weight_bits=4, shift=6, out_bits=8, relu=True, pe=4, simd=8,
                       in_lanes=4, out_lanes=4)


def pool_block():
    """MaxPool2x2 C16 8x8, 4 lanes of 8 bits."""
    from exitgate.hw.pool import MaxPool2x2
    return MaxPool2x2((16, 8, 8), lanes=4)


def decision_block(store: str = "double"):
    """ExitDecision, 10 classes, 16-bit logits, B=8 (bench/hw_blocks.py)."""
    from exitgate.hw.decision import ExitDecision
    from exitgate.numerics import DecisionSpec
    spec = DecisionSpec(classes=10, logit_frac_bits=4, threshold_bits=8)
    return ExitDecision(spec, logit_width=16, id_width=8, threshold=200, store=store)


def decision_single_block():
    """The same ExitDecision with one logit store (store="single": smaller, II 2C-1)."""
    return decision_block("single")


def cond_buffer_block():
    """ConditionalBuffer, 4 x 8-bit lanes, 64 beats a sample, 4 samples."""
    from exitgate.hw.cond_buffer import ConditionalBuffer
    from exitgate.hw.stream import activation_signature
    return ConditionalBuffer(activation_signature(4, 8), beats_per_sample=64, depth=4)


def linear_block():
    """LinearStage 256 -> 32 hidden, w4 a8, PE2 SIMD16, 4 lanes in (bench/hw_blocks.py)."""
    from exitgate.hw.linear import LinearStage
    rng = _rng()
    shape, cout = (16, 4, 4), 32
    n = int(np.prod(shape))
    return LinearStage(rng.integers(-7, 8, (cout, n)), rng.integers(-500, 500, cout), shape,
                       weight_bits=4, shift=7, relu=True, pe=2, simd=16, in_lanes=4)


def merge_block():
    """ExitMerge of 3 exits, round-robin (an array of In streams)."""
    from exitgate.hw.merge import ExitMerge
    return ExitMerge(3, id_width=8, cls_width=4, confidence_width=9)


BLOCKS: dict[str, Callable[[], wiring.Component]] = {
    "mvu": mvu_block,
    "mvu_dsp": mvu_dsp_block,
    "mvu_small": mvu_small_block,
    "conv3x3": conv_block,
    "maxpool2x2": pool_block,
    "decision": decision_block,
    "decision_single": decision_single_block,
    "cond_buffer": cond_buffer_block,
    "linear": linear_block,
    "merge": merge_block,
}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"blocks (default: all of "
                    f"{', '.join(BLOCKS)})")
    ap.add_argument("--family", choices=FAMILIES, default="ecp5")
    ap.add_argument("--device", help="nextpnr device option without dashes (85k, 25k, up5k...)")
    ap.add_argument("--package", help="nextpnr package (default CABGA381 / sg48)")
    ap.add_argument("--synth-opts", default="", metavar="OPTS",
                    help="extra synth_<family> options, e.g. '-dsp' (iCE40 SB_MAC16)")
    ap.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default 1)")
    ap.add_argument("--freq", type=float, default=125, help="target clock in MHz (default 125)")
    ap.add_argument("--out", type=Path, default=OUT,
                    help=f"build directories go to OUT/<name>-<family> (default {OUT})")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--list", action="store_true", help="list the blocks and exit")
    args = ap.parse_args(argv)
    if args.list:
        for name, fn in BLOCKS.items():
            print(f"{name:<12} {' '.join((fn.__doc__ or '').split())}")
        return []
    unknown = [n for n in args.names if n not in BLOCKS]
    if unknown:
        ap.error(f"unknown block(s) {', '.join(unknown)}: choose from {', '.join(BLOCKS)}")
    rows = []
    for name in args.names or list(BLOCKS):
        print(f"[fmax] {name} ({args.family}): elaborating, synthesising, placing and routing "
              f"in {args.out / f'{name}-{args.family}'} ...", file=sys.stderr, flush=True)
        try:
            r = measure_fmax(BLOCKS[name](), args.family, args.device,
                             args.out / f"{name}-{args.family}", args.freq, package=args.package,
                             synth_opts=args.synth_opts, seed=args.seed)
        except ExitgateError as exc:
            print(f"[fmax] {name}: {exc}", file=sys.stderr, flush=True)
            rows.append({"block": name, "family": args.family, "error": str(exc)})
            continue
        print(f"[fmax] {name}: {r['fmax_mhz']} MHz in {r['seconds']} s (synth {r['synth_s']} s, "
              f"pnr {r['pnr_s']} s)", file=sys.stderr, flush=True)
        rows.append({"block": name, **r})
    print("\n| block | family | Fmax MHz | LUT | FF (shell) | DSP | BRAM | critical path "
          "from -> to (ns) | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['block']} | {r['family']} | failed | | | | | {r['error']} | |")
            continue
        u = r["utilisation"]
        print(f"| {r['block']} | {r['family']} | {r['fmax_mhz']} | {u['lut']} | {u['ff']} "
              f"({r['shell_ff']}) | {u['dsp']} | {u['bram']} | `{r['critical_from']}` -> "
              f"`{r['critical_to']}` ({r['critical_ns']}) | {r['seconds']} |")
    print()
    for r in rows:
        if r.get("critical_sources"):
            print(f"{r['block']}: critical path nets from {', '.join(r['critical_sources'])}")
        if r.get("warning"):
            print(f"{r['block']}: {r['warning']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    sys.exit(1 if any("error" in r for r in main()) else 0)
