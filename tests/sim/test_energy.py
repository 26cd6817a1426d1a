"""`exitgate energy` on a compiled and simulated digits run: the activity the RTL counted agrees
with the IR's analytic counts, the energy arithmetic adds up, deeper exits cost strictly more,
the sweep's RTL-measured points agree with the per-exit model, and bad input is refused.

The run is a copy of the session's compiled run, simulated on a few samples here, with the
Verilator builds cached in the pytest cache (one build per design across test sessions)."""

import json
import math
import shutil

import pytest

from exitgate.cli import main
from exitgate.quant.ir import exit_users, load_ir, macs_of
from exitgate.sim.energy import (Profile, Unit, default_profile, energy_of, list_profiles,
                                 load_profile, pareto)

N = 30  # tests/conftest.py SIMULATED_SAMPLES


@pytest.fixture(scope="module")
def energy_run(simulated_run, tmp_path_factory):
    run = shutil.copytree(simulated_run, tmp_path_factory.mktemp("energy") / "run")
    return run, json.loads((run / "energy.json").read_text())


def test_counted_activity_matches_the_ir(energy_run):
    run, e = energy_run
    ir, _ = load_ir(run)
    a = e["activity"]
    assert a["ok"]
    for which in ("early_exit", "baseline"):
        for stage, row in a[which]["macs"].items():
            assert row["measured"] == row["ir"] and row["ok"], (which, stage)
    # per exit: the MACs counted at the stages a sample passes = the IR's cost of that exit
    exit_macs = json.loads((run / "calibration.json").read_text())["exit_macs"]
    per_level, units = {}, a["early_exit"]
    manifest = json.loads((run / "hw" / "manifest.json").read_text())
    for st in manifest["stages"]:
        if st["name"] in units["macs"]:
            per_level.setdefault(st["level"], 0)
            per_level[st["level"]] += units["macs"][st["name"]]["measured"]
    for k, want in enumerate(exit_macs):
        assert sum(v for lv, v in per_level.items() if lv <= k) == want
    # the baseline computes the final exit's path only
    users = exit_users(ir)
    final = len(ir.exits) - 1
    want_b = sum(macs_of(n, ir) for n in ir.nodes if final in users[n.name])
    assert sum(r["measured"] for r in a["baseline"]["macs"].values()) == want_b
    # every sample's beats went through every level-0 stage; cbuf reads only for continuing
    cb = units["cbuf0"]
    assert cb["in"]["visitors"] == N
    assert cb["out"]["visitors"] == e["exits"][1]["count"]


def test_energy_adds_up(energy_run):
    run, e = energy_run
    prof = load_profile(e["profile"])
    assert e["profile"] == default_profile("ecp5") == "ecp5"
    mean = sum(x["rate"] * x["energy_pj"] for x in e["exits"])
    assert math.isclose(mean, e["energy"]["mean_pj"], rel_tol=1e-9)
    spc = e["throughput"]["samples_per_cycle"]
    static = prof.static_mw * 1e-3 / (e["clock_mhz"] * 1e6 * spc) * 1e12
    for x in e["exits"]:
        b = x["breakdown"]
        assert math.isclose(sum(b["by_kind"].values()), x["energy_pj"], rel_tol=1e-9)
        assert math.isclose(b["by_kind"]["compute"] + b["by_kind"]["memory"],
                            sum(b["by_stage"].values()), rel_tol=1e-9)
        assert math.isclose(b["by_kind"]["static"], static, rel_tol=1e-9)
    assert math.isclose(e["energy"]["ratio"], e["energy"]["mean_pj"] / e["energy"]["baseline_pj"])
    assert set(e["profiles"]) == set(list_profiles())


def test_deeper_exits_cost_strictly_more_and_less_than_baseline(energy_run):
    _, e = energy_run
    assert [x["index"] for x in e["exits"]] == [0, 1]
    assert e["exits"][0]["count"] > 0 and e["exits"][1]["count"] > 0
    assert e["goal"]["deeper_exits_cost_more"]
    for name, p in e["profiles"].items():
        assert all(a < b for a, b in zip(p["exits_pj"], p["exits_pj"][1:])), name
        assert p["mean_pj"] < p["baseline_pj"], name
    # exit 0 samples never pay for the second segment
    assert "s3" not in e["exits"][0]["breakdown"]["by_stage"]
    assert e["exits"][1]["breakdown"]["by_stage"]["s3"] > 0


def test_sweep_measured_points_agree_with_the_per_exit_model(energy_run):
    _, e = energy_run
    rows = e["sweep"]
    measured = [r for r in rows if r["measured"]]
    assert len(measured) >= 3
    for r in measured:
        assert r["activity_ok"]
        assert math.isclose(r["measured_mean_pj"], r["mean_pj"], rel_tol=1e-9), r
    ts = [r["threshold"] for r in rows]
    assert ts == sorted(ts)
    front = [rows[i] for i in e["pareto"]]
    assert front and all(not (o["accuracy"] >= f["accuracy"] and o["mean_pj"] < f["mean_pj"])
                         for f in front for o in rows)
    # a higher threshold sends more samples deeper: the exit-0 rate never rises
    r0 = [r["exit_rates"][0] for r in rows]
    assert all(a >= b for a, b in zip(r0, r0[1:]))


def test_profile_scaling_matches_the_cited_points():
    p = load_profile("asic45nm-horowitz")
    assert math.isclose(p.add(8), 0.03) and math.isclose(p.add(32), 0.1)
    assert math.isclose(p.mul(8, 8), 0.2) and math.isclose(p.mul(32, 32), 3.1)
    assert math.isclose(p.mem_bit * 64, 10.0)
    assert p.mul(8, 8) < p.mul(8, 16) < p.mul(16, 16)
    for name in list_profiles():
        d = load_profile(name).data
        assert d["sources"] and d["estimates"], name


def test_energy_of_by_hand():
    prof = Profile("t", {"add8": 1.0, "add32": 4.0, "mul8": 2.0, "mul32": 32.0,
                         "memory_access_64b": 64.0}, static_mw=2.0, data={})
    units = [Unit("c", "conv", 0, {"pe": 2, "simd": 3, "weight_bits": 8, "in_bits": 8,
                                   "in_lanes": 1, "acc_bits": 8, "out_lanes": 2}, {}),
             Unit("b", "cbuf", 0, {"beat_bits": 10}, {}),
             Unit("l", "linear", 1, {"pe": 1, "simd": 1, "weight_bits": 8, "in_bits": 8,
                                     "in_lanes": 1, "acc_bits": 32, "out_lanes": 1}, {})]
    counts = {"c": {"mac": 4, "in": 2, "out": 1, "wrom_en": 9},
              "b": {"in": 6, "out": 3}, "l": {"mac": 5, "in": 3, "out": 1, "wrom_en": 9}}
    exits = [0, 0, 1]  # 3 samples, one continues
    e = energy_of(units, counts, exits, prof, clock_mhz=10.0, samples_per_cycle=0.1, levels=2)
    # conv: 24 MACs x (2 + 1) + 1 beat x 2 lanes x add8 ; memory per bit 1 pJ:
    # 4 x (6 x 8 + 3 x 8) + 2 x 1 x 8 x 3 = 336
    conv = 24 * 3 + 2 + 336
    cb_in, cb_out = 60, 30
    lin = 5 * (2 + 4) + 4 + 5 * (8 + 8) + 3 * 8
    static = 2.0 * 1e3 / (10.0 * 0.1)   # 2 mW x 1 us
    assert math.isclose(e["exits"][0]["energy_pj"], (conv + cb_in) / 3 + static)
    assert math.isclose(e["exits"][1]["energy_pj"], (conv + cb_in) / 3 + cb_out + lin + static)
    assert math.isclose(e["mean_pj"], (conv + cb_in + cb_out + lin) / 3 + static)
    assert e["rom_idle_enables"] == {"c": 5, "l": 4}


def test_pareto():
    rows = [{"accuracy": 0.9, "mean_pj": 10}, {"accuracy": 0.95, "mean_pj": 20},
            {"accuracy": 0.9, "mean_pj": 15}, {"accuracy": 0.96, "mean_pj": 20}]
    assert pareto(rows) == [0, 3]


def test_cli_errors(energy_run, trained_run, capsys):
    run, _ = energy_run
    assert main(["energy", str(trained_run[0])]) == 1
    assert "sim/results.json is missing: run `exitgate sim" in capsys.readouterr().err
    assert main(["energy", str(run), "--profile", "tpu", "--force"]) == 1
    err = capsys.readouterr().err
    assert "unknown energy profile 'tpu'; profiles: asic45nm-horowitz, ecp5, ice40up5k" in err
    assert main(["energy", str(run)]) == 1
    assert "use --force" in capsys.readouterr().err
    before = json.loads((run / "energy.json").read_text())
    assert main(["energy", str(run), "--profile", "asic45nm-horowitz", "--force",
                 "--sweep-limit", "8"]) == 0
    out = capsys.readouterr().out
    assert "profile asic45nm-horowitz" in out and "activity vs IR: all counts agree" in out
    e = json.loads((run / "energy.json").read_text())
    assert e["profile"] == "asic45nm-horowitz"
    assert math.isclose(e["profiles"]["ecp5"]["mean_pj"], before["energy"]["mean_pj"])


def test_soft_multiplies_cost_the_profiles_factor():
    """A unit's soft rows (`Fold.soft`) charge their multiplies at ``soft_mul_factor`` times the
    profile's multiply; the ECP5 profile's factor is its own soft-logic / hard-block gap ratio."""
    prof = Profile("t", {"add8": 1.0, "add32": 4.0, "mul8": 2.0, "mul32": 32.0,
                         "memory_access_64b": 64.0, "soft_mul_factor": 3.0}, static_mw=0.0,
                   data={})
    p = {"pe": 2, "simd": 3, "weight_bits": 8, "in_bits": 8, "in_lanes": 1, "acc_bits": 8,
         "out_lanes": 2}
    counts = {"c": {"mac": 4, "in": 2, "out": 1, "wrom_en": 4}}

    def compute(soft_rows):
        e = energy_of([Unit("c", "conv", 0, {**p, "soft_rows": soft_rows}, {})], counts, [0],
                      prof, clock_mhz=10.0, samples_per_cycle=0.1, levels=1)
        return e["exits"][0]["energy_pj"]

    # 4 chunks x 3 products a row: a soft row's 12 multiplies cost 3 x 2 pJ instead of 2 pJ
    assert math.isclose(compute(1) - compute(0), 12 * (3 * 2.0 - 2.0))
    assert math.isclose(compute(2) - compute(0), 24 * (3 * 2.0 - 2.0))
    ecp5 = load_profile("ecp5")
    assert math.isclose(ecp5.mac(8, 8, 20, soft=True) - ecp5.mac(8, 8, 20), ecp5.mul(8, 8))
