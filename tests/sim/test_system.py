"""System simulation of a generated accelerator (exitgate.sim.system): its Verilog on Verilator
(and Icarus) through cocotb, scored against the integer reference: class, exit, confidence and
the logits at the exit taken (taps), under back-pressure and after runtime threshold writes.

One Verilator build serves every Verilator test (cached per Verilog hash in the pytest cache)."""

import copy
from pathlib import Path

import pytest

from exitgate.compiler.codegen import Accelerator, emit_verilog
from exitgate.compiler.graph import Fold, lower
from exitgate.numerics import MODE_NEVER, MODE_THRESHOLD
from exitgate.quant.ir import load_ir
from exitgate.sim.scoreboard import expected_results
from exitgate.sim.system import simulate

FOLDS = {"s0": Fold(4, 9), "s2": Fold(2, 16), "s3": Fold(4, 16), "s5": Fold(2, 16)}
T = 0.9
TOP = "exitgate_top"


@pytest.fixture(scope="module")
def design(trained_run, request, tmp_path_factory):
    """(ir, weights, verilog path, build dir) of the digits accelerator with logit taps."""
    ir, weights = load_ir(trained_run[0])
    graph = lower(ir, weights).with_folds(FOLDS)
    acc = Accelerator(graph, weights, [ir.exits[0].decision.threshold_register(T)],
                      buffer_depth=4, id_width=4, taps=True)  # ids wrap every 16 samples
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    root = cache.mkdir("exitgate-sim") if cache else tmp_path_factory.mktemp("exitgate-sim")
    path = tmp_path_factory.mktemp("design") / "top.v"
    path.write_text(emit_verilog(acc, TOP))
    return ir, weights, path, root


def _run(design, x, expected, **kw):
    ir, weights, path, root = design
    return simulate(path, TOP, x, expected, build_dir=root, **kw)


def _assert_clean(r, n):
    assert r["errors"] == []
    a = r["agreement"]
    assert (a["samples"], a["class_mismatches"], a["exit_mismatches"], a["logit_mismatches"],
            a["missing"], a["duplicated"]) == (n, 0, 0, 0, 0, 0)
    assert a["logits_checked"]
    assert sorted(p["id"] for p in r["per_sample"]) == list(range(n))


def test_verilator_matches_reference(design, digits):
    ir, weights, _, _ = design
    n = 36
    x, y = digits.x_test[:n], digits.y_test[:n]
    expected = expected_results(ir, weights, x, [T])
    assert {e["exit"] for e in expected} == {0, 1}, "both exits must be exercised"
    r = _run(design, x, expected, labels=y)
    _assert_clean(r, n)
    assert r["samples"] == n
    assert r["accuracy"]["rtl"] == r["accuracy"]["reference"]
    assert [e["index"] for e in r["exits"]] == [0, 1]
    assert sum(e["count"] for e in r["exits"]) == n
    for e in r["exits"]:
        lat = e["latency_cycles"]
        assert 0 < lat["min"] <= lat["mean"] <= lat["max"]
    # a sample that continues waits for the deeper segment: exit 1 is the slower one
    assert r["exits"][1]["latency_cycles"]["min"] > r["exits"][0]["latency_cycles"]["min"]
    assert 0 < r["throughput"]["samples_per_cycle"] < 1
    assert r["wall"]["cycles_per_s"] > 0
    for p in r["per_sample"]:
        want = expected[p["id"]]
        assert (p["exit"], p["cls"], p["confidence"], p["logits"]) == \
            (want["exit"], want["cls"], want["confidence"], want["logits"])
        assert p["label"] == int(y[p["id"]]) and p["latency_cycles"] > 0


def test_backpressure_loses_and_duplicates_nothing(design, digits):
    ir, weights, _, _ = design
    n = 24
    x = digits.x_test[40:40 + n]
    expected = expected_results(ir, weights, x, [T])
    free = _run(design, x, expected)
    r = _run(design, x, expected, backpressure={"idle": 0.4, "stall": 0.6, "burst": 0.002,
                                                "burst_len": 4000, "seed": 3})
    _assert_clean(r, n)
    assert r["cycles"]["total"] > free["cycles"]["total"], "the stalls must slow the stream"
    lat = lambda res: sum(p["latency_cycles"] for p in res["per_sample"])  # noqa: E731
    assert lat(r) > lat(free)


def test_runtime_threshold_write_changes_exits_without_rebuild(design, digits):
    ir, weights, _, root = design
    spec = ir.exits[0].decision
    n = 24
    x = digits.x_test[:n]
    before = expected_results(ir, weights, x, [T])
    low = expected_results(ir, weights, x, [0.5])
    never = expected_results(ir, weights, x, [T], modes=[MODE_NEVER, MODE_THRESHOLD])
    assert [e["exit"] for e in low] != [e["exit"] for e in before]
    binaries = sorted(root.glob(f"verilator-*/{TOP}"))
    stamp = {p: p.stat().st_mtime_ns for p in binaries}
    r = _run(design, x, low, thresholds_writes=[(0, spec.threshold_register(0.5), MODE_THRESHOLD)])
    _assert_clean(r, n)
    assert r["exits"][0]["count"] == sum(e["exit"] == 0 for e in low)
    r = _run(design, x, never, thresholds_writes=[(0, spec.threshold_register(T), MODE_NEVER)])
    _assert_clean(r, n)
    assert r["exits"][0]["count"] == 0 and r["exits"][1]["count"] == n
    assert stamp and {p: p.stat().st_mtime_ns for p in binaries} == stamp, "rebuilt"


def test_icarus_matches_reference_with_waves(design, digits):
    ir, weights, _, _ = design
    x = digits.x_test[:3]
    expected = expected_results(ir, weights, x, [T])
    r = _run(design, x, expected, simulator="icarus", waves=True)
    _assert_clean(r, 3)
    assert r["simulator"] == "icarus"
    assert r["waves"] and Path(r["waves"]).stat().st_size > 0


def test_scoreboard_reports_a_mutated_expectation(design, digits):
    ir, weights, _, _ = design
    n = 6
    x = digits.x_test[:n]
    expected = expected_results(ir, weights, x, [T])
    wrong = copy.deepcopy(expected)
    wrong[2]["cls"] = (wrong[2]["cls"] + 1) % 10
    wrong[4]["logits"][3] += 1
    r = _run(design, x, wrong, limit=5)
    assert r["samples"] == 5
    assert r["agreement"]["class_mismatches"] == 1
    assert r["agreement"]["logit_mismatches"] == 1
    assert r["agreement"]["exit_mismatches"] == 0
    msgs = "\n".join(r["errors"])
    assert f"sample 2: cls {expected[2]['cls']} != reference {wrong[2]['cls']}" in msgs
    assert "sample 4: logits" in msgs and str(wrong[4]["logits"]) in msgs
