"""UART receiver/transmitter against the 8N1 golden model, in the Amaranth simulator."""

import random

import pytest
from amaranth.sim import Simulator

from exitgate.boards.uart import UartRx, UartTx, check_divisor, decode_8n1, encode_8n1, uart_divisor
from exitgate.errors import ExitgateError
from exitgate.hw.simstream import sink, source


def drive_line(line, levels, divisor, *, idle_before=3):
    """Testbench: drive ``levels`` (one per bit) onto ``line``, ``divisor`` cycles each."""
    async def bench(ctx):
        ctx.set(line, 1)
        await ctx.tick().repeat(idle_before)
        for level in levels:
            ctx.set(line, level)
            await ctx.tick().repeat(divisor)
        ctx.set(line, 1)
    return bench


def test_golden_model_roundtrip():
    data = bytes(random.Random(0).randrange(256) for _ in range(50))
    levels = encode_8n1(data)
    assert len(levels) == 10 * len(data)
    assert levels[:10] == [0, *[(data[0] >> k) & 1 for k in range(8)], 1]
    assert decode_8n1(levels) == data
    oversampled = [1] * 5 + [lv for lv in levels for _ in range(7)] + [1] * 3
    assert decode_8n1(oversampled, 7) == data


def test_golden_model_framing_error():
    levels = encode_8n1(b"\x55")
    levels[9] = 0
    with pytest.raises(ValueError, match="stop bit is 0"):
        decode_8n1(levels)
    assert decode_8n1(levels + [1] + encode_8n1(b"A"), strict=False) == b"A"


@pytest.mark.parametrize("divisor", [4, 7])
def test_rx_random_bytes_with_backpressure(divisor):
    rng = random.Random(divisor)
    data = bytes(rng.randrange(256) for _ in range(40))
    dut = UartRx(divisor)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(drive_line(dut.rx, encode_8n1(data), divisor))
    got = []
    # stall probability high, but each byte waits far less than a byte time (10 * divisor)
    sim.add_testbench(sink(dut.o, len(data), got, rng, stall=0.5, timeout=20 * divisor * len(data)))
    flags = []

    async def monitor(ctx):
        async for _, _, overrun, error in ctx.tick().sample(dut.overrun, dut.error):
            flags.append((overrun, error))
    sim.add_process(monitor)
    sim.run()
    assert bytes(got) == data
    assert not any(o or e for o, e in flags)


def test_rx_overrun_drops_new_byte():
    divisor = 4
    dut = UartRx(divisor)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(drive_line(dut.rx, encode_8n1(b"\x12\x34\x56"), divisor))
    pulses = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        for _ in range(40 * divisor):
            _, _, overrun = await ctx.tick().sample(dut.overrun)
            pulses.append(overrun)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 0x12  # first byte kept
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        ctx.set(dut.o.ready, 0)
        await ctx.tick()
        assert not ctx.get(dut.o.valid)                                 # 0x34, 0x56 were lost
    sim.add_testbench(bench)
    sim.run()
    assert sum(pulses) == 2


def test_rx_framing_error_and_glitch():
    divisor = 8
    bad = encode_8n1(b"\xa5")
    bad[9] = 0
    levels = bad + [1, 1] + encode_8n1(b"\x3c")
    dut = UartRx(divisor)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    errors = []
    got = []

    async def glitch_then_frames(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3)
        ctx.set(dut.rx, 0)                 # a 2-cycle glitch (< half a bit) is not a start bit
        await ctx.tick().repeat(2)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * divisor)
        for level in levels:
            ctx.set(dut.rx, level)
            await ctx.tick().repeat(divisor)

    async def monitor(ctx):
        ctx.set(dut.o.ready, 1)
        async for _, _, error, valid, payload in ctx.tick().sample(dut.error, dut.o.valid,
                                                                    dut.o.payload):
            errors.append(error)
            if valid:
                got.append(payload)
    sim.add_testbench(glitch_then_frames)
    sim.add_process(monitor)
    sim.run_until(1e-6 * (len(levels) + 8) * divisor)
    assert sum(errors) == 1
    assert bytes(got) == b"\x3c"


@pytest.mark.parametrize("divisor", [4, 5])
def test_tx_random_bytes_with_idle_source(divisor):
    rng = random.Random(divisor)
    data = bytes(rng.randrange(256) for _ in range(30))
    dut = UartTx(divisor)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source(dut.i, list(data), rng, idle=0.3))
    levels = []

    async def monitor(ctx):
        async for _, _, tx in ctx.tick().sample(dut.tx):
            levels.append(tx)
    sim.add_process(monitor)
    sim.run_until(1e-6 * (len(data) * (10 * divisor + 8) + 50))
    assert decode_8n1(levels, divisor) == data


def test_tx_backpressure_holds_producer():
    divisor = 4
    dut = UartTx(divisor)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    accepted = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        for byte in (0x81, 0x42):
            ctx.set(dut.i.payload, byte)
            cycles = 0
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                cycles += 1
                if ready:
                    break
            accepted.append(cycles)
        ctx.set(dut.i.valid, 0)
    sim.add_testbench(bench)
    sim.run_until(1e-6 * 200)
    assert accepted[0] == 1
    assert accepted[1] == 10 * divisor + 1     # whole frame plus one idle cycle


def test_divisor_validation():
    assert uart_divisor(12e6, 115200) == 104
    assert uart_divisor(25e6, 115200) == 217
    with pytest.raises(ExitgateError, match="too high for a 1 MHz clock"):
        uart_divisor(1e6, 500_000)
    with pytest.raises(ExitgateError, match="off by"):
        uart_divisor(1e6, 230_400)          # 4.34 -> 4: 8.5% off
    with pytest.raises(ValueError, match=r"divisor \(clock cycles per bit\) must be an integer >= 4, got 3"):
        check_divisor(3)
    with pytest.raises(ValueError, match="got 4.5"):
        check_divisor(4.5)
