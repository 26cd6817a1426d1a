import numpy as np

from exitgate.numerics import DecisionSpec
from exitgate.quant.calibrate import calibrate, summarise
from exitgate.quant.ir import IR, Exit, Node


def _toy_ir(n_exits=2):
    nodes = [Node("in", "input", (), (4,), 8, False, 0)]
    exits = []
    for k in range(n_exits):
        nodes.append(Node(f"l{k}", "linear", ("in",), (3,), 16, True, -4,
                          attrs={"weight": f"w{k}"}))
        exits.append(Exit(k, f"l{k}", DecisionSpec(classes=3, logit_frac_bits=4)))
    return IR(tuple(nodes), tuple(exits))


def _logits(rng, labels, margin, noise):
    z = rng.normal(0, noise, (len(labels), 3))
    z[np.arange(len(labels)), labels] += margin
    return np.round(z * 16).astype(np.int64)


def test_calibration_respects_the_accuracy_floor():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    early, final = _logits(rng, y, 1.0, 1.0), _logits(rng, y, 6.0, 1.0)
    ir = _toy_ir()
    c = calibrate(ir, [early, final], y, max_drop_pp=1.0)
    assert c["chosen"]["accuracy"] >= c["final_only_accuracy"] - 0.01
    rate = c["chosen"]["exits"][0]["rate"]
    assert 0 < rate < 1
    # a lower threshold than chosen (more exits) breaks the floor, unless none was lower
    th = c["thresholds"][0]
    lower = [t for t in c["curves"][0]["threshold"] if t < th]
    if lower:
        s = summarise(ir, [early, final], y, [lower[-1], 1.0])
        assert (s["accuracy"] < c["final_only_accuracy"] - 0.01
                or s["expected_macs"] >= c["chosen"]["expected_macs"])
    curve = c["curves"][0]
    assert curve["exit_rate"] == sorted(curve["exit_rate"], reverse=True)
    assert 0 <= c["float_disagreement"][0] < 0.05


def test_three_exit_joint_search():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 600)
    z = [_logits(rng, y, m, 1.0) for m in (1.5, 3.0, 6.0)]
    c = calibrate(_toy_ir(3), z, y, max_drop_pp=0.5)
    assert len(c["thresholds"]) == 2
    assert c["chosen"]["accuracy"] >= c["final_only_accuracy"] - 0.005
    assert abs(sum(e["rate"] for e in c["chosen"]["exits"]) - 1) < 1e-9


def test_ideal_speedup_is_against_the_baseline_without_the_heads(trained_run):
    """1 / E[work fraction] with a sample's work counted against the no-exit baseline, which
    computes no early head: a sample that reaches the last exit has done more than the baseline
    (its work fraction is above 1)."""
    from exitgate.quant.calibrate import baseline_macs, exit_costs, ideal_speedup
    from exitgate.quant.ir import load_ir

    ir, _ = load_ir(trained_run[0])
    costs, base = exit_costs(ir), baseline_macs(ir)
    head = 16 * 4 * 4 * 10                  # the digits exit-0 head: linear 256 -> 10
    assert costs[-1] == base + head
    assert ideal_speedup(ir, [0.0, 1.0]) == base / costs[-1] < 1
    assert ideal_speedup(ir, [1.0, 0.0]) == base / costs[0]
    r = [0.9, 0.1]
    assert np.isclose(ideal_speedup(ir, r), base / (0.9 * costs[0] + 0.1 * costs[1]))
    # the toy: two heads side by side on the input, the baseline is the last one alone
    toy = _toy_ir()
    assert exit_costs(toy) == [12, 24] and baseline_macs(toy) == 12
    assert ideal_speedup(toy, [0.5, 0.5]) == 12 / 18
