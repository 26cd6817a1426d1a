"""Open-toolchain builds of the UART harness around the stand-in accelerator (the one the board
tests use: 4x4 samples, 3 exits, 10 classes), one per board with an open flow, as a table:
resources used and % of the board's device totals, Fmax vs the design clock, build time.

    .venv/bin/python bench/boards_build.py [BOARD ...]      (default: icebreaker ulx3s-85f)

Build directories: bench/out/boards/<board>/ (logs, nextpnr report, bitstream).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from exitgate.boards import get_board
from exitgate.boards.build import build

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out" / "boards"
PIXELS, EXITS, CLASSES = 16, 3, 10


def _standin():
    path = ROOT.parent / "tests" / "boards" / "boards_standin.py"
    spec = importlib.util.spec_from_file_location("boards_standin", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SumAccelerator


def _cell(used: int, total: int) -> str:
    return f"{used} ({100 * used / total:.1f}%)" if total else f"{used}"


def main(boards: list[str]) -> None:
    accelerator = _standin()
    rows = []
    for name in boards:
        profile = get_board(name)
        result = build(lambda: accelerator(exits=EXITS, classes=CLASSES, pixels=PIXELS), name,
                       OUT / name, pixels_per_sample=PIXELS, exits=EXITS)
        (OUT / name / "build.json").write_text(json.dumps(result, indent=2))
        if result["status"] != "built":
            rows.append([name, profile.device, "-", "-", "-", "-", result["status"], "-"])
            continue
        res, budget = result["resources"], profile.budget
        rows.append([
            name, profile.device,
            _cell(res["lut"], budget.lut), _cell(res["ff"], budget.ff),
            _cell(res["dsp"], budget.dsp),
            _cell(res["bram"], budget.bram) + f" {budget.bram_primitive}",
            f"{result['fmax_mhz']:.1f} / {result['clock_mhz']:g}"
            + (" ok" if result["timing_met"] else " FAIL"),
            f"{result['seconds']:.1f}",
        ])
    header = ["board", "device", "LUT (LC/COMB)", "FF", "DSP", "BRAM", "Fmax / clock MHz",
              "build s"]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print(" | ".join(str(cell).ljust(w) for cell, w in zip(row, widths)))
    print(f"\n(% of the device totals; the budget cap is {get_board(boards[0]).budget.cap:.0%}. "
          f"No PLL: design clock = board clock.)")


if __name__ == "__main__":
    import argparse

    from exitgate.boards import list_boards
    from exitgate.errors import ExitgateError

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("boards", nargs="*", metavar="BOARD", default=["icebreaker", "ulx3s-85f"],
                    help=f"boards to build for (of {', '.join(list_boards())}; default: "
                         f"icebreaker ulx3s-85f)")
    try:
        main(ap.parse_args().boards)
    except ExitgateError as e:
        sys.exit(f"boards_build.py: error: {e}")
