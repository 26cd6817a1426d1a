"""`exitgate compile` on a trained digits run: artefacts, manifest keys, bad input."""

import json
import shutil

import pytest

from exitgate.cli import main


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
    for k in ("lut", "ff", "dsp", "bram"):
        assert 0 <= m["resources"]["estimated"][k] <= m["budget"][k] * m["utilisation_cap"]
        assert 0 <= m["resources"]["baseline_estimated"][k] <= m["budget"][k] * m["utilisation_cap"]
    assert m["interface"]["ctrl"]["modes"]["1"] == "never exit"


def test_design_too_large_for_the_board_names_the_resource(trained_run, capsys, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(trained_run[0], run)
    assert main(["compile", str(run), "--board", "icebreaker", "--buffer-depth", "16"]) == 1
    err = capsys.readouterr().err
    assert "does not fit icebreaker: the smallest folding needs" in err
    assert "more than 85% of the board's" in err and "--board ulx3s-85f" in err


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
