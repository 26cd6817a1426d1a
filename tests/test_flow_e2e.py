"""The real `exitgate flow`, end to end on digits (a short training, a few dozen samples
simulated on Verilator, no bitstream build), then re-run: every step up to date and skipped.
The training is the session fixtures', so the Verilog is theirs too and the simulator builds come
from the session's shared cache (tests/conftest.py); Icarus, the second simulator, is covered by
tests/sim/test_system.py (on the same designs it is far slower than Verilator: about two minutes
of the suite for this flow's samples and sweep, measured)."""

import json

from exitgate.cli import main
from exitgate.quant.config import default_config_path


def test_flow_end_to_end_then_resume(tmp_path, capsys):
    cfg = tmp_path / "quick.toml"
    # the session fixtures' training (tests/conftest.py small_config): the same weights, so the
    # same Verilog, whose simulator builds the session may already have
    cfg.write_text(default_config_path().read_text().replace("epochs = 100", "epochs = 12"))
    out = tmp_path / "run"
    argv = ["flow", "--config", str(cfg), "--out", str(out), "--board", "ulx3s-85f",
            "--limit", "24", "--no-build", "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    for step in ("train", "compile", "sim", "energy", "report"):
        assert f"] {step}: done" in text
    for f in ("train.json", "hw/manifest.json", "sim/results.json", "energy.json",
              "report.json", "report.html", "flow.json"):
        assert (out / f).is_file(), f
    sim = json.loads((out / "sim" / "results.json").read_text())
    assert sim["samples"] == 24
    g = sim["agreement"]
    assert g["class_mismatches"] == g["exit_mismatches"] == g["logit_mismatches"] == 0
    energy = json.loads((out / "energy.json").read_text())
    assert energy["energy"]["mean_pj"] < energy["energy"]["baseline_pj"]
    rec = json.loads((out / "flow.json").read_text())
    assert set(rec["steps"]) == {"train", "compile", "sim", "energy", "report"}

    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.count("up to date, skipped") == 5
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items() if p.name != "flow.json")
