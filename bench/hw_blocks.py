"""Per-block hardware table: generated Verilog lines, yosys synth_ice40 resources, and designed vs
measured initiation interval (Amaranth simulator, back-to-back samples, no back-pressure).

    .venv/bin/python bench/hw_blocks.py [NAME ...]

Adding a block is adding one entry to `BLOCKS`: a function returning a `BenchBlock`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
from amaranth.back import verilog
from amaranth.sim import Simulator

from exitgate.boards import synth
from exitgate.hw.beats import beat_payloads
from exitgate.hw.conv import Conv2dStage
from exitgate.hw.linear import LinearStage
from exitgate.hw.pool import MaxPool2x2
from exitgate.hw.simstream import sink, source


@dataclass
class BenchBlock:
    """One representative configuration: the component, its designed II, and how to measure it.

    ``measure()`` returns the measured II in the same unit as ``designed_ii`` (``ii_unit``), or
    None for blocks without a throughput figure."""
    config: str
    component: object
    designed_ii: float | None
    ii_unit: str
    measure: Callable[[], float] | None


def measure_stream(component, payloads, beats_per_sample: int, units_per_sample: int,
                   samples: int) -> float:
    """Cycles per unit (pixel or sample) between the first output beats of samples 1 and N-1."""
    got, cycles = [], []
    sim = Simulator(component)
    sim.add_clock(1e-6)
    sim.add_testbench(source(component.i, payloads, random.Random(0)))
    sim.add_testbench(sink(component.o, samples * beats_per_sample, got, random.Random(1),
                           cycles=cycles))
    sim.run()
    firsts = cycles[::beats_per_sample]
    return (firsts[-1] - firsts[1]) / ((samples - 2) * units_per_sample)


def _rng():
    return np.random.default_rng(0)


def conv_block() -> BenchBlock:
    rng = _rng()
    c, h, w, cout = 8, 8, 8, 16
    dut = Conv2dStage(rng.integers(-7, 8, (cout, c, 3, 3)), rng.integers(-500, 500, cout),
                      (c, h, w), weight_bits=4, shift=6, out_bits=8, relu=True, pe=4, simd=8,
                      in_lanes=4, out_lanes=4)
    x = rng.integers(0, 256, (4, c, h, w))
    beats = h * w * cout // 4
    return BenchBlock(
        f"C{c} {h}x{w} -> {cout}, w4 a8, PE4 SIMD8", dut, dut.initiation_interval, "cyc/pixel",
        lambda: measure_stream(dut, beat_payloads(x, 4), beats, h * w, 4))


def pool_block() -> BenchBlock:
    c, h, w = 16, 8, 8
    dut = MaxPool2x2((c, h, w), lanes=4)
    x = _rng().integers(0, 256, (4, c, h, w))
    beats = (h // 2) * (w // 2) * c // 4
    return BenchBlock(f"C{c} {h}x{w}, 4 lanes", dut, dut.initiation_interval, "cyc/pixel",
                      lambda: measure_stream(dut, beat_payloads(x, 4), beats,
                                             (h // 2) * (w // 2), 4))


def linear_block(logits: bool) -> Callable[[], BenchBlock]:
    def build() -> BenchBlock:
        rng = _rng()
        shape, cout = (16, 4, 4), (10 if logits else 32)
        n = int(np.prod(shape))
        dut = LinearStage(rng.integers(-7, 8, (cout, n)), rng.integers(-500, 500, cout), shape,
                          weight_bits=4, shift=None if logits else 7, relu=not logits,
                          pe=2, simd=16, in_lanes=4)
        x = rng.integers(0, 256, (5, *shape))
        beats = cout // dut.out_lanes
        kind = "logits" if logits else "hidden"
        return BenchBlock(f"{n} -> {cout} {kind}, w4 a8, PE2 SIMD16", dut,
                          dut.initiation_interval, "cyc/sample",
                          lambda: measure_stream(dut, beat_payloads(x, 4), beats, 1, 5))
    return build


# name -> builder. The decision unit, conditional buffer and merge append their entries here.
BLOCKS: dict[str, Callable[[], BenchBlock]] = {
    "conv3x3": conv_block,
    "maxpool2x2": pool_block,
    "linear": linear_block(logits=False),
    "linear_logits": linear_block(logits=True),
}


def decision_block() -> BenchBlock:
    from exitgate.hw.decision import ExitDecision
    from exitgate.numerics import DecisionSpec
    spec = DecisionSpec(classes=10, logit_frac_bits=4, threshold_bits=8)
    dut = ExitDecision(spec, logit_width=16, id_width=8, threshold=200)
    z = _rng().integers(-2000, 2000, (8, spec.classes))
    beats = [{"data": [int(v)], "first": j == 0, "last": j == spec.classes - 1, "id": k}
             for k, row in enumerate(z) for j, v in enumerate(row)]
    return BenchBlock("10 classes, 16-bit logits, B=8 E=12", dut, dut.initiation_interval,
                      "cyc/sample", lambda: measure_stream(dut, beats, 1, 1, len(z)))


def _measure_cond_buffer(dut, samples: int) -> float:
    """Cycles per beat, all samples continuing, decisions offered early."""
    bps = dut.beats_per_sample
    beats = [{"data": [b % 256] * 4, "first": b == 0, "last": b == bps - 1}
             for _ in range(samples) for b in range(bps)]
    got, cycles = [], []
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source(dut.i, beats))
    sim.add_testbench(source(dut.decision, [{"exit": 0}] * samples))
    sim.add_testbench(sink(dut.o, len(beats), got, cycles=cycles))
    sim.run()
    return (cycles[-1] - cycles[0]) / (len(cycles) - 1)


def cond_buffer_block() -> BenchBlock:
    from exitgate.hw.cond_buffer import ConditionalBuffer
    from exitgate.hw.stream import activation_signature
    dut = ConditionalBuffer(activation_signature(4, 8), beats_per_sample=64, depth=4)
    return BenchBlock("4x8-bit lanes, 64 beats/sample, 4 samples", dut, dut.initiation_interval,
                      "cyc/beat", lambda: _measure_cond_buffer(dut, 8))


def _measure_merge(dut, per_input: int) -> float:
    got, cycles = [], []
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for k in range(dut.n):
        sim.add_testbench(source(dut.i[k], [{"id": j, "cls": 0, "confidence": 0}
                                            for j in range(per_input)]))
    sim.add_testbench(sink(dut.o, dut.n * per_input, got, cycles=cycles))
    sim.run()
    return (cycles[-1] - cycles[0]) / (len(cycles) - 1)


def merge_block() -> BenchBlock:
    from exitgate.hw.merge import ExitMerge
    dut = ExitMerge(3, id_width=8, cls_width=4, confidence_width=9)
    return BenchBlock("3 exits, round-robin", dut, dut.initiation_interval, "cyc/result",
                      lambda: _measure_merge(dut, 20))


BLOCKS.update({
    "decision": decision_block,
    "cond_buffer": cond_buffer_block,
    "merge": merge_block,
})


def synthesise(verilog_text: str) -> dict:
    """yosys ``synth_ice40 -dsp`` cell counts: lut, ff, dsp, bram (`exitgate.boards.synth`)."""
    res = synth.synthesise(verilog_text, "ice40", options="-dsp")
    return {k: res[k] for k in ("lut", "ff", "dsp", "bram")}


def main(names: list[str]) -> None:
    names = names or list(BLOCKS)
    head = (f"{'block':<14} {'configuration':<36} {'v lines':>7} {'LUT':>6} {'FF':>6} {'DSP':>4} "
            f"{'BRAM':>4} {'II design':>10} {'II meas.':>9}  unit")
    print(head)
    print("-" * len(head))
    for name in names:
        block = BLOCKS[name]()
        text = verilog.convert(block.component, name="top")
        res = synthesise(text)
        measured = block.measure() if block.measure else None
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"{name:<14} {block.config:<36} {len(text.splitlines()):>7} {res['lut']:>6} "
              f"{res['ff']:>6} {res['dsp']:>4} {res['bram']:>4} {fmt(block.designed_ii):>10} "
              f"{fmt(measured):>9}  {block.ii_unit}", flush=True)


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help=f"blocks to measure (default: all of {', '.join(BLOCKS)})")
    names = ap.parse_args().names
    unknown = [n for n in names if n not in BLOCKS]
    if unknown:
        ap.error(f"unknown block(s) {', '.join(unknown)}: use one of {', '.join(BLOCKS)}")
    main(names)
