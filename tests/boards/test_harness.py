"""UartHarness in the Amaranth simulator: UART bits in (golden model), result frames out, checked
against a stand-in accelerator's Python model; and the host-side protocol codec."""

import gc
import random
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from exitgate.boards.harness import (Error, Result, UartHarness, decode_frames, encode_image,
                                     encode_mode, encode_threshold)
from exitgate.boards.uart import decode_8n1, encode_8n1
from exitgate.errors import ExitgateError
from exitgate.hw.interface import accelerator_signature

sys.path.insert(0, str(Path(__file__).parent))
from boards_standin import SumAccelerator, sum_model  # noqa: E402

DIVISOR = 4
PIXELS = 16          # 4x4 samples
EXITS, CLASSES = 3, 10


def run_harness(harness, host_bytes, *, gap_bits=0, tail_cycles=0):
    """Send ``host_bytes`` into ``harness.rx`` (8N1, ``gap_bits`` idle bits between bytes) and
    return (bytes decoded from ``tx``, final overrun flag)."""
    levels = []
    for byte in host_bytes:
        levels += encode_8n1(bytes([byte])) + [1] * gap_bits
    sim = Simulator(harness)
    sim.add_clock(1e-6)
    tx = []

    async def drive(ctx):
        for level in [1] * 4 + levels:
            ctx.set(harness.rx, level)
            await ctx.tick().repeat(DIVISOR)

    async def monitor(ctx):
        async for _, _, line in ctx.tick().sample(harness.tx):
            tx.append(line)
    sim.add_testbench(drive)
    sim.add_process(monitor)
    sim.run_until(1e-6 * ((len(levels) + 4) * DIVISOR + tail_cycles))
    return decode_8n1(tx, DIVISOR), sim


def test_harness_results_match_model():
    rng = random.Random(7)
    images = [[rng.randrange(256) for _ in range(PIXELS)] for _ in range(6)]
    while sum(images[3]) % EXITS != 1:          # a sample after the threshold write uses exit 1
        images[3] = [rng.randrange(256) for _ in range(PIXELS)]
    events = [("image", images[0]), ("image", images[1]), ("image", images[2]),
              ("threshold", 1, 0x1ABCD), ("mode", 0, 2), ("image", images[3]),
              ("bad", ord("Z")), ("threshold", 5, 123), ("mode", 2, 3),
              ("image", images[4]), ("threshold", 2, 77), ("image", images[5])]
    host = b""
    for event in events:
        if event[0] == "image":
            host += encode_image(event[1])
        elif event[0] == "threshold":
            host += bytes([ord("T"), event[1]]) + event[2].to_bytes(3, "big")
        elif event[0] == "mode":
            host += bytes([ord("M"), event[1], event[2]])
        else:
            host += bytes([event[1]])
    valid_events = [e for e in events if not (e[0] == "threshold" and e[1] >= EXITS)]
    expected = [Result(*r) for r in sum_model(valid_events, exits=EXITS, classes=CLASSES)]

    harness = UartHarness(SumAccelerator(exits=EXITS, classes=CLASSES, pixels=PIXELS), PIXELS,
                          exits=EXITS, divisor=DIVISOR)
    out, _ = run_harness(harness, host, tail_cycles=12 * 10 * DIVISOR)
    frames, rest = decode_frames(out)
    assert rest == b""
    assert [f for f in frames if isinstance(f, Result)] == expected
    assert [f for f in frames if isinstance(f, Error)] == [Error(ord("Z")), Error(ord("T")),
                                                           Error(ord("M"))]
    assert expected[3].confidence == 0x1ABCD       # the threshold write took effect


def test_harness_mode_write_keeps_threshold():
    """'M' rewrites the exit's threshold with the harness's copy (last 'T', or `thresholds`)."""
    init = [1000, 2000, 3000]
    image = [0] * (PIXELS - 1) + [2]              # sum 2 -> exit 2
    host = encode_mode(2, 1) + encode_image(image) + encode_threshold(2, 4444) \
        + encode_mode(2, 0) + encode_image(image)
    harness = UartHarness(SumAccelerator(exits=EXITS, classes=CLASSES, pixels=PIXELS,
                                         thresholds=init), PIXELS, exits=EXITS, divisor=DIVISOR,
                          thresholds=init)
    out, _ = run_harness(harness, host, tail_cycles=8 * 10 * DIVISOR)
    frames, _ = decode_frames(out)
    assert [f.confidence for f in frames] == [3000, 4444]


@contextmanager
def rejected_elaboratables():
    """Components whose construction raised are never used: collect them without the warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        yield
        gc.collect()


def test_host_codec():
    assert encode_image([1, 2, 3]) == b"I\x01\x02\x03"
    assert encode_threshold(1, 0x1ABCD) == b"T\x01\x01\xab\xcd"
    assert encode_mode(0, 2) == b"M\x00\x02"
    frames, rest = decode_frames(b"R\x05\x01\x07\x01\x00\x00E\x5aR\x01")
    assert frames == [Result(5, 1, 7, 0x10000), Error(0x5A)]
    assert rest == b"R\x01"
    with pytest.raises(ExitgateError, match="unexpected byte 0x41 at offset 0"):
        decode_frames(b"A")
    with pytest.raises(ExitgateError, match=r"pixels must be in 0\.\.15, got \[16\]"):
        encode_image([16], input_bits=4)
    with pytest.raises(ExitgateError, match=r"threshold must be an integer in 0\.\.131071"):
        encode_threshold(0, 2 ** 17)
    with pytest.raises(ExitgateError, match=r"mode must be an integer in 0\.\.2, got 3"):
        encode_mode(0, 3)


def test_harness_parameter_errors():
    def make():
        return SumAccelerator(exits=EXITS, classes=CLASSES, pixels=PIXELS)
    with rejected_elaboratables():
        _check_parameter_errors(make)


def _check_parameter_errors(make):
    with pytest.raises(ExitgateError, match="needs `divisor` when elaborated without a platform"):
        UartHarness(make, PIXELS).elaborate(None)
    with pytest.raises(ExitgateError, match=r"exits must be an integer in 1\.\.4, got 5"):
        UartHarness(make, PIXELS, exits=5)
    with pytest.raises(ExitgateError, match=r"pixels_per_sample must be an integer >= 1"):
        UartHarness(make, 0)
    with pytest.raises(ExitgateError, match="divisor .* must be an integer >= 4, got 2"):
        UartHarness(make, PIXELS, divisor=2)
    with pytest.raises(ExitgateError, match=r"modes must be 3 values in 0\.\.2"):
        UartHarness(make, PIXELS, exits=3, modes=[0, 0, 3])
    with pytest.raises(ExitgateError, match="UART protocol carries input_bits <= 8"):
        UartHarness(SumAccelerator(input_bits=9), PIXELS)
    with pytest.raises(ExitgateError, match="must be an Amaranth Component"):
        UartHarness(42, PIXELS)


def test_harness_rejects_other_signatures():
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class NotAnAccelerator(wiring.Component):
        a: In(1)
        b: Out(1)

        def elaborate(self, platform):
            return Module()

    with rejected_elaboratables():
        with pytest.raises(ExitgateError, match="does not have the accelerator_signature"):
            UartHarness(NotAnAccelerator(), PIXELS)
        assert SumAccelerator().signature == accelerator_signature(8, 8, 3, 10)
