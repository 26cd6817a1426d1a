"""System simulation: a generated accelerator's Verilog on Verilator (or Icarus) through cocotb,
every result scored against the integer reference, with latency and throughput measured.

``simulate(verilog, toplevel, samples, expected, ...)`` builds the design (cached per Verilog hash
by `exitgate.sim.runner.run_cocotb`, so a threshold sweep does not rebuild), streams the samples'
pixels back to back (raster order, one pixel per beat) through `exitgate.sim.bench`, and returns
a dict with the keys of ``sim/results.json`` (ARCHITECTURE section 4) except the baseline and
speedup keys of ``throughput``, which the caller fills from a second, baseline run.

Port layouts come from the Verilog (``pixels__payload``, ``results__payload``, ``ctrl`` and, for
a design generated with ``Accelerator(..., taps=True)``, the ``logits{k}__*`` observation ports
and the ``activity__<unit>__<counter>`` counters)
and `exitgate.hw.interface`: results are {id, exit, cls, confidence} LSB first, ctrl is
{we, exit, threshold, mode} LSB first with a 17-bit threshold field.

Cycle numbers: cycle n is the n-th rising edge after the ctrl writes. A sample's latency is the
result's transfer cycle minus its first pixel's transfer cycle. ``throughput.samples_per_cycle``
is the steady-state rate: results completed over the middle half of the run (by completion
order) divided by the cycles between them, so pipeline fill and drain do not count;
``samples_per_cycle_overall`` is N / (cycles from the first pixel to the last result).
``per_sample[i]``: id (the sample's index in input order; the hardware id is id mod
2**id_width), label, exit, cls, confidence, latency_cycles, first_cycle, result_cycle and, with
taps, the logits at the exit the reference takes. ``activity`` (taps only): the design's
activity counters read one cycle after the last result, {unit: {counter: count}} (see
`exitgate.compiler.codegen.activity_units`); counted from reset, so the few cycles of reset and
ctrl writes are in ``all.cycles``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..hw.interface import CONFIDENCE_WIDTH
from .runner import design_hash, run_cocotb
from .scoreboard import Scoreboard

__all__ = ["simulate", "port_widths", "DesignPorts", "BACKPRESSURE"]

#: back-pressure mode: P(idle input cycle between beats), P(results__ready low on a cycle),
#: P(a stall of 1..burst_len cycles starting on a cycle: long enough to fill every buffer), seed
BACKPRESSURE = {"idle": 0.3, "stall": 0.5, "burst": 0.0005, "burst_len": 6000, "seed": 1}
_THRESHOLD_FIELD = CONFIDENCE_WIDTH   # ctrl's threshold field: threshold_bits + 1 = 17
_MODE_WIDTH = 2


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def port_widths(verilog_text: str, toplevel: str) -> dict[str, int]:
    """{port name: width} of the module ``toplevel`` in Verilog text written by Amaranth/Yosys."""
    m = re.search(rf"^module {re.escape(toplevel)}\s*\(.*?^endmodule", verilog_text,
                  re.S | re.M)
    if m is None:
        raise ValueError(f"no module {toplevel!r} in the Verilog")
    ports = {}
    for d in re.finditer(r"^\s*(?:input|output)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
                         r"(?:\[(\d+):(\d+)\]\s*)?(\w+)\s*;", m.group(0), re.M):
        hi, lo, name = d.groups()
        ports[name] = abs(int(hi) - int(lo)) + 1 if hi is not None else 1
    return ports


class DesignPorts:
    """Field layouts of an accelerator's ports, from their widths (see module docstring).

    classes: the number of classes (sets the cls field width); the exit field width follows from
    the ctrl port, the id width from what is left of the result payload.
    """

    def __init__(self, widths: dict[str, int], classes: int):
        need = ("pixels__payload", "results__payload", "ctrl", "clk", "rst")
        missing = [p for p in need if p not in widths]
        if missing:
            raise ValueError(f"not an exitgate accelerator: ports {missing} missing "
                             f"(has {sorted(widths)})")
        self.widths = widths
        self.input_bits = widths["pixels__payload"] - 2
        self.exit_w = widths["ctrl"] - 1 - _THRESHOLD_FIELD - _MODE_WIDTH
        self.cls_w = _bits(classes)
        self.id_w = widths["results__payload"] - self.exit_w - self.cls_w - CONFIDENCE_WIDTH
        if self.exit_w < 1 or self.id_w < 1:
            raise ValueError(f"port widths {widths} do not fit the accelerator interface "
                             f"with {classes} classes")
        self.activity = sorted(p for p in widths if re.fullmatch(r"activity__\w+__\w+", p))
        self.taps = sorted((p[:-len("__payload")] for p in widths
                            if re.fullmatch(r"logits\d+__payload", p)),
                           key=lambda n: int(n[len("logits"):]))

    def pixel(self, value: int, first: bool, last: bool) -> int:
        b = self.input_bits
        return (int(value) & ((1 << b) - 1)) | (int(first) << b) | (int(last) << (b + 1))

    def ctrl(self, exit: int, threshold: int, mode: int) -> int:
        if not 0 <= exit < 1 << self.exit_w:
            raise ValueError(f"ctrl write to exit {exit}: the design has a {self.exit_w}-bit "
                             "exit field")
        if not 0 <= threshold < 1 << _THRESHOLD_FIELD or mode not in (0, 1, 2):
            raise ValueError(f"ctrl write: threshold must be in 0..{(1 << _THRESHOLD_FIELD) - 1} "
                             f"and mode 0, 1 or 2, got {threshold}, {mode}")
        return 1 | exit << 1 | threshold << (1 + self.exit_w) \
            | mode << (1 + self.exit_w + _THRESHOLD_FIELD)

    def result(self, word: int) -> dict:
        out, shift = {}, 0
        for name, w in (("id", self.id_w), ("exit", self.exit_w), ("cls", self.cls_w),
                        ("confidence", CONFIDENCE_WIDTH)):
            out[name] = (word >> shift) & ((1 << w) - 1)
            shift += w
        return out

    def logit_beat(self, tap: str, word: int) -> tuple[int, bool, bool, int]:
        """(logit, first, last, id) of a tap beat."""
        w = self.widths[f"{tap}__payload"] - 2 - self.id_w
        v = word & ((1 << w) - 1)
        v -= (v >> (w - 1)) << w
        return v, bool(word >> w & 1), bool(word >> (w + 1) & 1), word >> (w + 2)


def _count_exits(verilog_text: str, toplevel: str) -> int | None:
    """Number of decision units (``decision{k}`` submodules) in Amaranth-generated Verilog."""
    ks = {int(k) for k in re.findall(rf"^module \\?{re.escape(toplevel)}\.decision(\d+)\b",
                                     verilog_text, re.M)}
    return max(ks) + 1 if ks else None


def _stats(values) -> dict | None:
    if not values:
        return None
    return {"min": int(min(values)), "mean": float(np.mean(values)), "max": int(max(values))}


def _throughput(firsts: list[int], done: list[int]) -> dict:
    """Rates from transfer cycles: overall (results / cycles from the first pixel to the last
    result) and steady state (results over the middle half of the run, by completion)."""
    n = len(done)
    if n == 0:
        return {"samples_per_cycle": None, "samples_per_cycle_overall": None}
    done = sorted(done)
    overall = n / (done[-1] - firsts[0] + 1)
    lo, hi = n // 4, n - 1 - n // 4
    steady = (hi - lo) / (done[hi] - done[lo]) if hi > lo and done[hi] > done[lo] else overall
    return {"samples_per_cycle": steady, "samples_per_cycle_overall": overall,
            "steady_state_window": [lo, hi]}


def _logits_by_sample(ports: DesignPorts, taps: list, id_w: int) -> list[dict]:
    """Per tap (exit): {sample index: [logits]}. Samples reach an exit in input order, so a
    sample's logits with id r belong to the next sample index = r (mod 2**id_w) after the
    previous one seen at that exit."""
    out, mod = [], 1 << id_w
    for name, beats in zip(ports.taps, taps):
        samples, cur, prev = {}, [], -1
        for _, word in beats:
            v, first, last, rid = ports.logit_beat(name, word)
            if first:
                cur = []
            cur.append(v)
            if last:
                s = prev + 1 + (rid - prev - 1) % mod
                samples[s] = cur
                prev = s
        out.append(samples)
    return out


def simulate(verilog_path, toplevel: str, samples, expected: list[dict], *,
             simulator: str = "verilator", build_dir, thresholds_writes=None,
             backpressure=False, waves: bool = False, limit: int | None = None,
             labels=None, exit_index=None, timeout_cycles: int = 100_000) -> dict:
    """Simulate the accelerator in ``verilog_path`` (top module ``toplevel``) on ``samples``
    (integer pixels, (N, 1, H, W)) and score it against ``expected`` (from
    `exitgate.sim.scoreboard.expected_results`, same thresholds as the design holds).

    thresholds_writes: [(exit, t, mode)] ctrl writes made after reset, before the stream (t the
    register value, mode 0 threshold / 1 never / 2 always). backpressure: False, True
    (`BACKPRESSURE`) or a dict {idle, stall, seed}. waves: FST (Verilator) / VCD (Icarus) trace in
    build_dir. limit: simulate only the first ``limit`` samples. labels: true classes (for
    accuracy). exit_index: for each hardware exit, the exit index `expected` and the output use
    (default: the same; a baseline design whose only exit is the IR's final exit passes
    ``[len(ir.exits) - 1]`` with expected from modes that never exit early).
    Returns the results dict (see module docstring); ``errors`` lists every mismatch.
    """
    verilog_path = Path(verilog_path).resolve()
    build_dir = Path(build_dir).resolve()
    x = np.asarray(samples)
    n = len(x) if limit is None else min(int(limit), len(x))
    x, expected = x[:n], list(expected[:n])
    if len(expected) != n:
        raise ValueError(f"expected has {len(expected)} entries for {n} samples")
    labels = None if labels is None else [int(v) for v in np.asarray(labels)[:n]]
    text = verilog_path.read_text()
    classes = len(expected[0]["logits"]) if expected and "logits" in expected[0] else None
    if classes is None:
        raise ValueError("expected entries need 'logits' (use expected_results)")
    ports = DesignPorts(port_widths(text, toplevel), classes)
    hw_exits = _count_exits(text, toplevel) or max((e["exit"] for e in expected), default=0) + 1
    exit_index = list(range(hw_exits)) if exit_index is None else [int(k) for k in exit_index]
    if len(exit_index) != hw_exits:
        raise ValueError(f"exit_index has {len(exit_index)} entries; the design has "
                         f"{hw_exits} exits")

    bp = BACKPRESSURE if backpressure is True else (backpressure or {})
    pixels_per_sample = int(np.prod(x.shape[1:])) if n else 0
    beats = [ports.pixel(p, j == 0, j == pixels_per_sample - 1)
             for s in x for j, p in enumerate(s.reshape(-1))]
    build_dir.mkdir(parents=True, exist_ok=True)
    design = design_hash(text, {})[:12]
    # a directory of this simulation's own: simulations sharing a build cache (two `exitgate
    # sim`s, parallel test workers) never read each other's bench files
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=build_dir))
    seen_path, cfg_path = run_dir / "seen.json", run_dir / "bench.json"
    cfg = {"beats": beats, "firsts": pixels_per_sample, "results": n,
           "ctrl": [ports.ctrl(int(k), int(t), int(m)) for k, t, m in (thresholds_writes or [])],
           "taps": ports.taps, "activity": ports.activity, "idle": float(bp.get("idle", 0.0)),
           "stall": float(bp.get("stall", 0.0)), "burst": float(bp.get("burst", 0.0)),
           "burst_len": int(bp.get("burst_len", 1)), "seed": int(bp.get("seed", 0)),
           "timeout": int(timeout_cycles), "out": str(seen_path)}
    cfg_path.write_text(json.dumps(cfg))
    t0 = time.perf_counter()
    sim_build = build_dir / f"{simulator}-{design}"
    run_cocotb(verilog_path, toplevel, "exitgate.sim.bench", sim_build, simulator=simulator,
               test_dir=run_dir, waves=waves, extra_env={"EXITGATE_SIM_JSON": str(cfg_path)})
    wall = time.perf_counter() - t0
    seen = json.loads(seen_path.read_text())
    out = _score(seen, ports, x, expected, labels, exit_index, wall, simulator, bp,
                 thresholds_writes)
    if waves:       # the run directory stays: it holds the trace
        traces = [p for d in (run_dir, sim_build) for ext in ("fst", "vcd")
                  for p in d.glob(f"*.{ext}") if p.stat().st_mtime >= time.time() - wall - 1]
        out["waves"] = str(max(traces, key=lambda p: p.stat().st_mtime)) if traces else None
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return out


def _score(seen, ports, x, expected, labels, exit_index, wall, simulator, bp, writes) -> dict:
    n = len(expected)
    hw_expected = [dict(e, exit=exit_index.index(e["exit"]) if e["exit"] in exit_index else -1)
                   for e in expected]
    sb = Scoreboard(hw_expected, id_width=ports.id_w)
    firsts = seen["firsts"]
    done_at = {}
    for cycle, word in seen["results"]:
        r = ports.result(word)
        r["cycle"] = cycle
        before = set(sb.got)
        sb.add(r)
        new = set(sb.got) - before
        if new:
            done_at[new.pop()] = cycle
    errors = sb.finish()
    if len(seen["results"]) < n:
        errors.append(f"the bench stopped after {seen['cycles']} cycles with no progress: "
                      f"{seen['beats_sent']} of {n * int(np.prod(x.shape[1:]))} pixels accepted, "
                      f"{len(seen['results'])} of {n} results")
    duplicated = len(seen["results"]) - len(sb.got)
    logits = _logits_by_sample(ports, seen["taps"], ports.id_w) if ports.taps else None

    per_sample, logit_mismatches = [], 0 if logits is not None else None
    for i in range(n):
        r, want = sb.got.get(i), expected[i]
        row = {"id": i, "label": labels[i] if labels is not None else None,
               "exit": exit_index[r["exit"]] if r and r["exit"] < len(exit_index) else None,
               "cls": r["cls"] if r else None, "confidence": r["confidence"] if r else None,
               "latency_cycles": done_at[i] - firsts[i] if i in done_at and i < len(firsts)
               else None,
               "first_cycle": firsts[i] if i < len(firsts) else None,
               "result_cycle": done_at.get(i)}
        if logits is not None:
            hw_k = exit_index.index(want["exit"]) if want["exit"] in exit_index else None
            got = logits[hw_k].get(i) if hw_k is not None and hw_k < len(logits) else None
            row["logits"] = got
            if got != want["logits"]:
                logit_mismatches += 1
                errors.append(f"sample {i}: logits at exit {want['exit']} {got} != reference "
                              f"{want['logits']}")
        per_sample.append(row)

    def mism(key):
        return sum(1 for i in range(n) if per_sample[i][key] != expected[i][key])

    exits = []
    for k in exit_index:
        rows = [p for p in per_sample if p["exit"] == k]
        lat = [p["latency_cycles"] for p in rows if p["latency_cycles"] is not None]
        acc = (sum(p["cls"] == p["label"] for p in rows) / len(rows)) if rows and labels else None
        exits.append({"index": k, "count": len(rows), "rate": len(rows) / n if n else 0.0,
                      "accuracy": acc, "latency_cycles": _stats(lat)})
    correct = [p["cls"] == p["label"] for p in per_sample] if labels is not None else None
    ref_correct = [e["cls"] == y for e, y in zip(expected, labels)] if labels is not None else None
    cycles = seen["cycles"]
    sim_wall = seen["wall_s"]
    return {
        "samples": n,
        "simulator": simulator,
        "accuracy": {"rtl": float(np.mean(correct)) if correct else None,
                     "reference": float(np.mean(ref_correct)) if ref_correct else None},
        "agreement": {"samples": len(sb.got), "class_mismatches": mism("cls"),
                      "exit_mismatches": mism("exit"), "confidence_mismatches": mism("confidence"),
                      "logit_mismatches": logit_mismatches, "logits_checked": logits is not None,
                      "missing": n - len(sb.got), "duplicated": max(duplicated, 0)},
        "exits": exits,
        "throughput": _throughput(firsts, list(done_at.values())),
        "cycles": {"total": cycles, "first_pixel": firsts[0] if firsts else None,
                   "last_result": max(done_at.values()) if done_at else None},
        "wall": {"total_s": wall, "sim_s": sim_wall, "build_and_startup_s": wall - sim_wall,
                 "cycles_per_s": cycles / sim_wall if sim_wall > 0 else None},
        "stimulus": {"backpressure": dict(bp), "ctrl_writes": [list(w) for w in (writes or [])]},
        "errors": errors,
        "activity": _activity(seen.get("activity") or {}),
        "per_sample": per_sample,
    }


def _activity(raw: dict) -> dict | None:
    """{"activity__<unit>__<counter>": n} -> {unit: {counter: n}} (None without counters)."""
    out: dict[str, dict] = {}
    for name, value in raw.items():
        _, unit, counter = name.split("__")
        out.setdefault(unit, {})[counter] = int(value)
    return out or None
