"""cocotb bench for ExitDecision's generated Verilog (top ``exit_decision``).

Reads vectors and expected results from the JSON file named by ``EXITGATE_VECTORS`` (written by
tests/hw/test_decision.py::test_cocotb_verilator from the golden model). The bench drives logits
with random idle cycles, applies random back-pressure on the output, writes the threshold register
once (while idle, after ``switch`` samples have been fully accepted) and checks every result in
order. Inputs change on the falling edge; transfers are decided from the settled values before the
rising edge.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge


def _pack_in(logit: int, width: int, first: bool, last: bool, sid: int) -> int:
    return (logit & ((1 << width) - 1)) | (int(first) << width) | (int(last) << (width + 1)) \
        | (sid << (width + 2))


@cocotb.test()
async def decision_matches_model(dut):
    cfg = json.loads(open(os.environ["EXITGATE_VECTORS"]).read())
    classes, logits, ids = cfg["classes"], cfg["logits"], cfg["ids"]
    expected = cfg["expected"]
    width = len(dut.i__payload) - 2 - 8  # data + first + last + 8-bit id
    cls_w = max(1, (classes - 1).bit_length())
    rng = random.Random(7)

    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for name in ("i__valid", "o__ready", "threshold_we", "mode_we", "threshold", "mode",
                 "i__payload"):
        getattr(dut, name).value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    beats = [(k, j) for k in range(len(logits)) for j in range(classes)]
    pos, got, cycles = 0, [], 0
    wrote = False
    while len(got) < len(expected):
        await FallingEdge(dut.clk)
        cycles += 1
        assert cycles < 200_000, f"timeout: {len(got)} of {len(expected)} results"
        write = not wrote and pos == cfg["switch"] * classes
        dut.threshold_we.value = int(write)
        dut.threshold.value = cfg["threshold"]
        wrote = wrote or write
        valid = pos < len(beats) and not write and rng.random() > 0.2
        if valid:
            k, j = beats[pos]
            dut.i__payload.value = _pack_in(logits[k][j], width, j == 0, j == classes - 1, ids[k])
        dut.i__valid.value = int(valid)
        ready = rng.random() > 0.3
        dut.o__ready.value = int(ready)
        await ReadOnly()
        if valid and int(dut.i__ready.value):
            pos += 1
        if ready and int(dut.o__valid.value):
            p = int(dut.o__payload.value)
            got.append({"id": p & 0xFF, "cls": (p >> 8) & ((1 << cls_w) - 1),
                        "exit": (p >> (8 + cls_w)) & 1, "confidence": p >> (9 + cls_w)})
            n = len(got) - 1
            assert got[n] == expected[n], f"sample {n}: got {got[n]}, expected {expected[n]}"
    dut._log.info("%d results match the golden model in %d cycles", len(got), cycles)
