"""Verilator's runtime objects are compiled once per store and copied into later builds
(`exitgate.sim.objcache`, make's OBJCACHE hook); anything else, or a different compile, goes to
the compiler."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exitgate.sim import objcache

FAKE_CXX = """#!/bin/sh
# stands in for c++: records the call, writes -o's file (the flags in it) and an -MMD .d
echo "$@" >> "{log}"
out=""; prev=""
for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done
echo "object of: $@" > "$out"
case " $@ " in *" -MMD "*) echo "${{out}}: deps" > "${{out%.o}}.d";; esac
"""


@pytest.fixture
def tools(tmp_path):
    include = tmp_path / "verilator" / "include"
    include.mkdir(parents=True)
    (include / "verilated.cpp").write_text("// runtime\n")
    (include / "verilated_config.h").write_text("#define VERILATOR_VERSION 5048\n")
    log = tmp_path / "calls.log"
    cxx = tmp_path / "bin" / "fakecxx"
    cxx.parent.mkdir()
    cxx.write_text(FAKE_CXX.format(log=log))
    cxx.chmod(0o755)
    return include, str(cxx), log


def _compile(tmp_path, include, cxx, build, *flags, source="verilated.cpp"):
    """objcache as make runs it: in the build directory (``-o`` and the .d are relative)."""
    build.mkdir(exist_ok=True)
    args = [str(tmp_path / "store"), str(include), cxx, "-Os", *flags, "-MMD", "-c", "-o",
            "verilated.o", str(include / source)]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(build)
        return objcache.main(args)


def _calls(log):
    return log.read_text().count("\n") if log.exists() else 0


def test_runtime_object_is_compiled_once_and_copied_after(tmp_path, tools):
    include, cxx, log = tools
    a, b = tmp_path / "a", tmp_path / "b"
    assert _compile(tmp_path, include, cxx, a, "-DVM_TRACE=0") == 0
    assert _calls(log) == 1
    assert _compile(tmp_path, include, cxx, b, "-DVM_TRACE=0") == 0
    assert _calls(log) == 1                             # no second compile
    assert (b / "verilated.o").read_bytes() == (a / "verilated.o").read_bytes()
    assert (b / "verilated.d").read_text() == "verilated.o: deps\n"


def test_another_define_compiler_or_verilator_compiles_again(tmp_path, tools):
    include, cxx, log = tools
    _compile(tmp_path, include, cxx, tmp_path / "a", "-DVM_TRACE=0")
    _compile(tmp_path, include, cxx, tmp_path / "b", "-DVM_TRACE=1")
    assert _calls(log) == 2
    assert "-DVM_TRACE=1" in (tmp_path / "b" / "verilated.o").read_text()
    (include / "verilated_config.h").write_text("#define VERILATOR_VERSION 5050\n")
    _compile(tmp_path, include, cxx, tmp_path / "c", "-DVM_TRACE=0")
    assert _calls(log) == 3
    os.utime(cxx, ns=(1, 1))                            # a changed compiler
    _compile(tmp_path, include, cxx, tmp_path / "d", "-DVM_TRACE=0")
    assert _calls(log) == 4


def test_design_sources_and_failures_are_not_stored(tmp_path, tools):
    include, cxx, log = tools
    design = tmp_path / "a" / "Vtop.cpp"
    design.parent.mkdir()
    design.write_text("// the design\n")
    for build in ("a", "b"):
        _compile(tmp_path, include, cxx, tmp_path / build, source=str(design))
    assert _calls(log) == 2
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").glob("*.o"))
    bad = Path(cxx).with_name("failcxx")
    bad.write_text("#!/bin/sh\nexit 3\n")
    bad.chmod(0o755)
    assert _compile(tmp_path, include, str(bad), tmp_path / "c") == 3
    assert not list((tmp_path / "store").glob("*.o"))


def test_runner_passes_the_wrapper_to_make(tmp_path, monkeypatch):
    """The wrapper make runs: a script beside the store that calls this module by path."""
    from exitgate.sim import runner
    monkeypatch.setenv("EXITGATE_SIM_CACHE", str(tmp_path / "cache"))
    flag = runner._objcache_flag(tmp_path / "elsewhere" / "verilator-x")
    assert flag.startswith("OBJCACHE=")
    wrapper = Path(flag.split("=", 1)[1])
    assert wrapper.parent == tmp_path / "cache" / "verilator-objects"
    text = wrapper.read_text()
    assert sys.executable in text and "objcache.py" in text and os.access(wrapper, os.X_OK)
    out = subprocess.run([str(wrapper), "true"], capture_output=True)   # not a compile
    assert out.returncode == 0
