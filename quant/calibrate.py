"""Threshold calibration with the fixed-point decision rule the hardware uses.

For every non-final exit, over a grid of thresholds: exit rate, accuracy of the samples leaving
there, overall accuracy and expected MACs per sample (the other exits at their chosen
thresholds). The chosen thresholds maximise early exiting (minimise expected MACs) while overall
accuracy stays within `max_drop_pp` percentage points of final-exit-only accuracy. Also measured:
how often the fixed-point decision disagrees with the float softmax test ``p_max >= T``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..numerics import float_confidence
from .ir import IR, exit_users, macs_of
from .reference import cascade

__all__ = ["DEFAULT_GRID", "exit_costs", "baseline_macs", "ideal_speedup", "summarise",
           "calibrate", "plot_calibration"]

DEFAULT_GRID = tuple(np.round(np.concatenate([np.arange(0.30, 0.90, 0.02),
                                              np.arange(0.90, 0.99, 0.005),
                                              [0.99, 0.993, 0.996, 0.998, 0.999, 1.0]]), 4))


def exit_costs(ir: IR) -> list[int]:
    """MACs a sample costs if it leaves at exit k (everything needed for exits 0..k)."""
    users = exit_users(ir)
    return [sum(macs_of(n, ir) for n in ir.nodes if users[n.name] and min(users[n.name]) <= k)
            for k in range(len(ir.exits))]


def baseline_macs(ir: IR) -> int:
    """MACs a sample costs in the network without its early exits (the final exit's path alone):
    what the no-exit baseline computes."""
    users, final = exit_users(ir), len(ir.exits) - 1
    return sum(macs_of(n, ir) for n in ir.nodes if final in users[n.name])


def ideal_speedup(ir: IR, rates) -> float:
    """The ideal speedup of the early-exit network over the no-exit baseline at these exit rates
    (fraction of samples leaving at each exit): 1 / E[work fraction], a sample's work being its
    MACs (`exit_costs`) over the baseline's (`baseline_macs`). It is the speedup at equal MACs
    per cycle in both designs. A sample leaving at exit k has also paid for the heads of exits
    0..k-1, which the baseline never computes, so a late sample's work fraction is above 1
    (calibration's ``macs_fraction`` divides by the early-exit network's own full cost
    instead)."""
    costs = exit_costs(ir)
    return baseline_macs(ir) / sum(r * c for r, c in zip(rates, costs))


def summarise(ir: IR, logits: list[np.ndarray], labels: np.ndarray, thresholds,
              costs: list[int] | None = None) -> dict:
    """Accuracy, per-exit rate and accuracy, expected MACs at the given thresholds."""
    costs = costs or exit_costs(ir)
    c = cascade(ir, logits, thresholds)
    n = len(labels)
    exits = []
    for k in range(len(ir.exits)):
        sel = c.exit == k
        exits.append({"index": k, "threshold": float(thresholds[k]) if k < len(ir.exits) - 1
                      else None, "samples": int(sel.sum()), "rate": float(sel.mean()),
                      "accuracy": float((c.cls[sel] == labels[sel]).mean()) if sel.any() else None,
                      "macs": costs[k]})
    macs = float(sum(e["rate"] * costs[e["index"]] for e in exits))
    return {"samples": n, "accuracy": float((c.cls == labels).mean()), "exits": exits,
            "expected_macs": macs, "macs_fraction": macs / costs[-1]}


def _disagreement(ir: IR, logits, k: int, threshold: float) -> float:
    spec = ir.exits[k].decision
    c = cascade(ir, [logits[k], logits[k]], [threshold, 1.0])
    fixed = c.decisions[0].exit
    flt = float_confidence(logits[k], spec.logit_frac_bits) >= threshold
    return float((fixed != flt).mean())


@dataclass
class _Table:
    """Per exit: correct (N,) and, per grid threshold, the fixed-point exit mask (G, N)."""
    correct: list
    masks: list


def _tables(ir, logits, labels, grid) -> _Table:
    correct, masks = [], []
    for k, z in enumerate(logits):
        correct.append(z.argmax(1) == labels)
        if k < len(logits) - 1:
            masks.append(np.stack([cascade(ir, [z, z], [t, 1.0]).decisions[0].exit
                                   for t in grid]))
    return _Table(correct, masks)


def _search(tab: _Table, costs, floor_acc, grid):
    """Grid index per non-final exit minimising expected MACs with accuracy >= floor_acc."""
    n = len(tab.correct[0])
    best, best_key = None, None
    idx_sets = [range(len(grid))] * len(tab.masks)
    if len(tab.masks) > 2:  # keep the joint search small: every 3rd grid point
        idx_sets = [range(0, len(grid), 3)] * len(tab.masks)
    for combo in itertools.product(*idx_sets):
        pending = np.ones(n, dtype=bool)
        right, macs = 0, 0.0
        for k, gi in enumerate(combo):
            leave = pending & tab.masks[k][gi]
            right += int(tab.correct[k][leave].sum())
            macs += leave.sum() * costs[k]
            pending &= ~leave
        right += int(tab.correct[-1][pending].sum())
        macs += pending.sum() * costs[-1]
        acc = right / n
        if acc + 1e-12 < floor_acc:
            continue
        key = (macs, -acc)
        if best_key is None or key < best_key:
            best, best_key = combo, key
    return best


def calibrate(ir: IR, logits: list[np.ndarray], labels: np.ndarray, max_drop_pp: float = 0.5,
              grid=DEFAULT_GRID, margin_samples: int = 1) -> dict:
    """Choose thresholds on a calibration split; returns the calibration record (JSON-ready).

    The accuracy floor is raised by `margin_samples` samples of the calibration split: picking the
    lowest threshold that just meets the floor on one split is biased towards that split (the
    selection itself overfits it), and one sample of margin keeps the drop within budget on
    unseen data in our measurements (bench/quant_bench.py)."""
    grid = tuple(float(t) for t in grid)
    costs = exit_costs(ir)
    final_acc = float((logits[-1].argmax(1) == labels).mean())
    floor_acc = final_acc - max_drop_pp / 100.0 + margin_samples / len(labels)
    tab = _tables(ir, logits, labels, grid)
    combo = _search(tab, costs, floor_acc, grid)
    if combo is None:  # cannot happen with 1.0 in the grid unless exits are wildly wrong
        combo = tuple([len(grid) - 1] * len(tab.masks))
    chosen = [grid[i] for i in combo] + [1.0]
    curves = []
    for k in range(len(ir.exits) - 1):
        rows = []
        for t in grid:
            th = list(chosen)
            th[k] = t
            s = summarise(ir, logits, labels, th, costs)
            rows.append((t, s["exits"][k]["rate"], s["exits"][k]["accuracy"], s["accuracy"],
                         s["expected_macs"], _disagreement(ir, logits, k, t)))
        t, rate, acc, overall, macs, dis = zip(*rows)
        curves.append({"index": k, "threshold": list(t), "exit_rate": list(rate),
                       "accuracy": list(acc), "overall_accuracy": list(overall),
                       "expected_macs": list(macs), "float_disagreement": list(dis)})
    at = summarise(ir, logits, labels, chosen, costs)
    return {
        "samples": int(len(labels)),
        "max_drop_pp": max_drop_pp,
        "margin_samples": margin_samples,
        "final_only_accuracy": final_acc,
        "exit_macs": costs,
        "thresholds": chosen[:-1],
        "chosen": at,
        "float_disagreement": [_disagreement(ir, logits, k, chosen[k])
                               for k in range(len(ir.exits) - 1)],
        "curves": curves,
    }


def plot_calibration(calib: dict, path, title: str = "") -> None:
    """Exit rate, exit accuracy and overall accuracy vs threshold, one panel per early exit."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = calib["curves"]
    fig, axes = plt.subplots(1, len(curves), figsize=(6.0 * len(curves), 4.2), squeeze=False)
    for ax, cv, th in zip(axes[0], curves, calib["thresholds"]):
        t = cv["threshold"]
        acc = [np.nan if a is None else 100 * a for a in cv["accuracy"]]
        ax.plot(t, [100 * r for r in cv["exit_rate"]], label="exit rate (%)", color="tab:blue")
        ax.plot(t, acc, label="accuracy of exited (%)", color="tab:green")
        ax.plot(t, [100 * a for a in cv["overall_accuracy"]], label="overall accuracy (%)",
                color="tab:orange")
        ax.axhline(100 * (calib["final_only_accuracy"] - calib["max_drop_pp"] / 100), ls=":",
                   color="grey", label="final-only accuracy - max drop")
        ax.axvline(th, ls="--", color="black", label=f"chosen T = {th:g}")
        ax.set_xlabel(f"threshold T at exit {cv['index']} (fixed-point decision)")
        ax.set_ylabel("%")
        ax.set_ylim(0, 101)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle(title or "exitgate threshold calibration")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
