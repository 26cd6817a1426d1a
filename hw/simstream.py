"""Amaranth-simulator helpers for streams: a source with random idle cycles and a sink with
random back-pressure. Used by the unit tests of every block (one implementation, not one per test).

    sim = Simulator(dut); sim.add_clock(1e-6)
    sim.add_testbench(source(dut.i, payloads, rng, idle=0.3))
    got = []; sim.add_testbench(sink(dut.o, len(expected), got, rng, stall=0.3))
    sim.run()

Payloads are whatever ``ctx.set`` accepts for the stream's payload (ints, or dicts for a
`data.StructLayout`). The sink records the sampled payload (a `data.Const` for struct layouts)
and the cycle it was accepted in ``cycles``.
"""

from __future__ import annotations

import random

__all__ = ["source", "sink"]


def source(stream, payloads, rng: random.Random | None = None, idle: float = 0.0):
    """Testbench that drives ``payloads`` into ``stream`` in order, idling with probability ``idle``."""
    rng = rng or random.Random(0)

    async def bench(ctx):
        for payload in payloads:
            while idle and rng.random() < idle:
                ctx.set(stream.valid, 0)
                await ctx.tick()
            ctx.set(stream.payload, payload)
            ctx.set(stream.valid, 1)
            await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)

    return bench


def sink(stream, count: int, out: list, rng: random.Random | None = None, stall: float = 0.0,
         cycles: list | None = None, timeout: int = 1_000_000):
    """Testbench that accepts ``count`` beats from ``stream`` into ``out``, dropping ``ready`` with
    probability ``stall`` each cycle. Fails if ``timeout`` cycles pass without finishing."""
    rng = rng or random.Random(1)

    async def bench(ctx):
        cycle = 0
        while len(out) < count:
            ready = not (stall and rng.random() < stall)
            ctx.set(stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
            cycle += 1
            if ready and valid:
                out.append(payload)
                if cycles is not None:
                    cycles.append(cycle)
            if cycle > timeout:
                raise AssertionError(f"sink: only {len(out)} of {count} beats after {timeout} cycles")
        ctx.set(stream.ready, 0)

    return bench
