"""What the accelerator must produce for a batch of samples (from the integer reference), and the
scoreboard that compares results with it.

Results arrive in completion order tagged with the sample id (mod 2**id_width); the scoreboard
matches them to samples in input order per id, and reports every missing, duplicated or
mismatching sample with both values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..quant.ir import IR
from ..quant.reference import cascade, exit_logits

__all__ = ["expected_results", "Scoreboard"]


def expected_results(ir: IR, weights: dict, x_int: np.ndarray, thresholds, modes=None) -> list[dict]:
    """Per sample (input order): id, exit, cls, confidence, and the logits at that exit."""
    logits = exit_logits(ir, weights, x_int)
    th = list(thresholds) + [1.0]
    c = cascade(ir, logits, th, modes)
    out = []
    for i in range(len(x_int)):
        k = int(c.exit[i])
        out.append({"sample": i, "exit": k, "cls": int(c.cls[i]),
                    "confidence": int(c.decisions[k].confidence[i]),
                    "logits": [int(v) for v in logits[k][i]]})
    return out


@dataclass
class Scoreboard:
    expected: list[dict]
    id_width: int
    got: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    _next: dict = field(default_factory=dict)

    def add(self, result: dict) -> None:
        """One result {id, exit, cls, confidence[, cycle]} from the hardware."""
        rid = int(result["id"])
        # the k-th result with this id belongs to sample rid + k * 2**id_width
        k = self._next.get(rid, 0)
        self._next[rid] = k + 1
        sample = rid + k * (1 << self.id_width)
        if sample >= len(self.expected):
            self.errors.append(f"result for sample {sample} (id {rid}) that was never sent: {result}")
            return
        self.got[sample] = result
        want = self.expected[sample]
        for key in ("exit", "cls", "confidence"):
            if int(result[key]) != want[key]:
                self.errors.append(f"sample {sample}: {key} {int(result[key])} != reference "
                                   f"{want[key]}")

    def finish(self) -> list[str]:
        missing = [i for i in range(len(self.expected)) if i not in self.got]
        if missing:
            self.errors.append(f"{len(missing)} samples produced no result (first: {missing[:5]})")
        return self.errors

    def mismatches(self, key: str) -> int:
        return sum(1 for i, r in self.got.items() if int(r[key]) != self.expected[i][key])
