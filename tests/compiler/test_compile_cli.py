"""`exitgate compile` on a trained digits run: artefacts, manifest keys, bad input."""

import json
import shutil

import pytest

from exitgate.cli import main
from exitgate.compiler.flow import format_fold_table


@pytest.fixture(scope="module")
def compiled(compiled_run):
    return compiled_run


def test_compile_writes_both_designs_and_the_manifest(compiled):
    hw = compiled / "hw"
    for f in ("top.v", "baseline/top.v", "manifest.json"):
        assert (hw / f).is_file()
    assert "module exitgate_top" in (hw / "top.v").read_text()
    m = json.loads((hw / "manifest.json").read_text())
    for key in ("board", "clock_mhz", "stages"):
        assert key in m
    p = m["predicted"]
    assert p["samples_per_cycle"] > p["baseline_samples_per_cycle"] > 0
    assert 1 < p["speedup"] <= p["ideal_speedup"] * 1.05
    assert [e["index"] for e in p["exits"]] == [0, 1]
    assert p["exits"][0]["latency_cycles"] < p["exits"][1]["latency_cycles"]
    caps = m["utilisation_caps"]
    assert caps == {"lut": 0.85, "ff": 0.85, "dsp": 1.0, "bram": 1.0}     # ulx3s-85f
    # the products the search gave back because they bought no speed
    trimmed = m["sizing"]["trimmed_products"]
    assert set(trimmed) == {"early_exit", "baseline"} and min(trimmed.values()) >= 0
    for k in ("lut", "ff", "dsp", "bram"):
        assert 0 <= m["resources"]["estimated"][k] <= m["budget"][k] * caps[k]
        assert 0 <= m["resources"]["baseline_estimated"][k] <= m["budget"][k] * caps[k]
    # every block's estimate, and with the harness's they add up to each design's total
    for design, total in (("early_exit", "estimated"), ("baseline", "baseline_estimated")):
        blocks = m["resources"]["per_block"][design]
        assert {"s0", "s3", "s5", "decision0"} <= set(blocks)
        for k in ("lut", "ff", "dsp", "bram"):
            assert (sum(b[k] for b in blocks.values()) + m["resources"]["harness_estimated"][k]
                    == m["resources"][total][k]), (design, k)
    # the early exit's head, its decision unit and conditional buffer are not in the baseline
    assert {"s2", "decision1", "cbuf0"} <= set(m["resources"]["per_block"]["early_exit"])
    assert not {"s2", "decision1", "cbuf0"} & set(m["resources"]["per_block"]["baseline"])
    # and `exitgate compile` names the largest of them
    ee = m["resources"]["per_block"]["early_exit"]
    biggest = max(ee, key=lambda n: ee[n]["lut"] + ee[n]["ff"])
    (line,) = [x for x in format_fold_table(m).splitlines() if x.startswith("largest blocks")]
    assert f": {biggest} {ee[biggest]['lut']}/{ee[biggest]['ff']}/" in line
    # no --buffer-depth: the largest that fits, and the ULX3S has room for the largest
    assert m["buffer_depth"] == 64
    assert m["buffer_depth_choice"] == {"requested": None, "tried": [64, 32, 16, 8, 4, 2],
                                        "rejected": {}}
    assert m["interface"]["ctrl"]["modes"]["1"] == "never exit"
    # the ULX3S (ECP5) gets the MVUs' deep pipeline, and the emitted Verilog has it: a second
    # operand register ("pre") in every MVU
    assert m["deep_mvu"] is True
    assert "pre_flag0" in (hw / "top.v").read_text()
    assert "pre_flag0" in (hw / "baseline" / "top.v").read_text()


def test_design_too_large_for_the_board_names_the_resource(trained_run, capsys, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(trained_run[0], run)
    assert main(["compile", str(run), "--board", "icebreaker", "--buffer-depth", "16"]) == 1
    err = capsys.readouterr().err
    assert "does not fit icebreaker, with or without skid buffers: the smallest folding needs" \
        in err
    # at depth 16 the conditional buffer's block RAM is what does not fit (hard blocks: 100%)
    assert "BRAM, more than 100% of the board's 30" in err and "--board ulx3s-85f" in err


def test_compile_refuses_to_overwrite(compiled, capsys):
    before = (compiled / "hw" / "manifest.json").read_text()
    assert main(["compile", str(compiled), "--board", "ulx3s-85f"]) == 1
    assert "already holds results of `exitgate compile`" in capsys.readouterr().err
    assert (compiled / "hw" / "manifest.json").read_text() == before


def test_unknown_board_lists_boards(trained_run, capsys, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(trained_run[0], run)
    assert main(["compile", str(run), "--board", "de10"]) == 1
    err = capsys.readouterr().err
    assert "unknown board 'de10'" in err and "icebreaker" in err and "ulx3s-85f" in err
    assert not (run / "hw").exists()


def test_missing_train_step(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    assert main(["compile", str(tmp_path / "r")]) == 1
    assert "train.json is missing: run `exitgate train --out" in capsys.readouterr().err


def test_buffer_depth_is_the_largest_that_fits(trained_run, tmp_path):
    """Without --buffer-depth the compiler tries 64, 32, ..., 2 and keeps the first at which both
    designs fit: on a board whose block RAM holds the smallest folding at depth 4 but not 8,
    that is 4, and the deeper ones are recorded as rejected for block RAM."""
    import dataclasses

    from exitgate.boards.profiles import get_board
    from exitgate.compiler.flow import run_compile
    from exitgate.compiler.graph import Fold, lower
    from exitgate.compiler.resources import estimate_design, harness_estimate
    from exitgate.quant.ir import load_ir

    ir, weights = load_ir(trained_run[0])
    g = lower(ir, weights)
    g = g.with_folds({s.name: Fold(1, 1, 1) for s in g.stages if s.kind in ("conv", "linear")})
    # the board holds the accelerator and the UART harness
    bram = {d: estimate_design(g, weights, "ice40", buffer_depth=d).bram
            + harness_estimate("ice40").bram for d in (16, 8, 4)}
    assert bram[16] > bram[8] > bram[4]
    board = get_board("icebreaker")
    small = dataclasses.replace(board, budget=dataclasses.replace(
        board.budget, lut=100_000, ff=100_000, bram=bram[4]))
    run = tmp_path / "r"
    shutil.copytree(trained_run[0], run)
    logged = []
    m = run_compile(run, small, log=logged.append)
    assert m["buffer_depth"] == 4
    assert m["deep_mvu"] is False and "pre_flag0" not in (run / "hw" / "top.v").read_text()
    choice = m["buffer_depth_choice"]
    assert choice["requested"] is None and list(choice["rejected"]) == ["64", "32", "16", "8"]
    assert all("BRAM" in why for why in choice["rejected"].values())
    assert m["resources"]["estimated"]["bram"] <= bram[4]
    assert any("buffer depth 4" in line for line in logged)
    # an explicit depth is kept, and refused if it does not fit
    m8 = run_compile(run, dataclasses.replace(small, budget=dataclasses.replace(
        small.budget, bram=bram[8])), force=True, buffer_depth=8, log=logged.append)
    assert m8["buffer_depth"] == 8 and m8["buffer_depth_choice"]["rejected"] == {}
    with pytest.raises(Exception, match=r"does not fit icebreaker, with or without skid "
                                        r"buffers: the smallest folding needs "
                                        rf"{bram[16]} BRAM, more than 100% of the board's"):
        run_compile(run, small, force=True, buffer_depth=16)


def test_skid_buffers_do_not_cost_throughput(trained_run, tmp_path):
    """On an iCE40 with room for the skid buffers only at the smallest folding, compile drops
    them, takes the faster folding and says why."""
    import dataclasses
    import math
    import re

    from exitgate.boards.profiles import get_board
    from exitgate.compiler.flow import run_compile
    from exitgate.compiler.graph import lower
    from exitgate.compiler.resources import estimate_design, harness_estimate, logic_cells
    from exitgate.quant.ir import load_ir
    ir, weights = load_ir(trained_run[0])
    smallest = estimate_design(lower(ir, weights).with_skids(True), weights, "ice40",
                               buffer_depth=2) + harness_estimate("ice40")
    board = get_board("icebreaker")      # logic cells just enough for the skid buffers (at 85%)
    lut = math.ceil(logic_cells(smallest, "ice40") / board.budget.cap) + 20
    roomier = dataclasses.replace(board, budget=dataclasses.replace(board.budget, lut=lut))
    run = tmp_path / "r"
    shutil.copytree(trained_run[0], run)
    m = run_compile(run, roomier, log=lambda *_: None)
    assert m["skid_buffers"] is False and m["deep_mvu"] is False
    why = m["buffer_depth_choice"]["rejected"][str(m["buffer_depth"])]
    assert why.startswith("fits, but without skid buffers the foldings are faster (DSE"), why
    # no skid buffer but the pools' (after s4, after each output of s1's fork:
    # `HwGraph.skid_after`, `fork_skids`), the decisions' into the conditional buffer and, where
    # compile chose them, those after the decision units (`HwGraph.decision_skids`)
    names = set(re.findall(r"\s(skid_\w+) \(", (run / "hw" / "top.v").read_text()))
    always = {"skid_s4", "skid_fork_s1_0", "skid_fork_s1_1", "skid_dec0"}
    after = {"skid_d0", "skid_d1"} if m["decision_skid_buffers"] else set()
    assert names == always | after, names
    folds = [s["fold"]["pe"] * s["fold"]["simd"] for s in m["stages"] if "fold" in s]
    assert max(folds) > 1              # the area the skid buffers would take went to folding
