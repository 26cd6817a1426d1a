"""Simple dual-port memories whose read data register synthesises into the block RAM itself, with
no collision logic in front of it.

A synchronous, non-transparent read port (``Memory.read_port(transparent_for=())``) promises the
old word when the same address is written on the same clock. An ECP5 DP16KD or iCE40
SB_RAM40_4K does not promise that across its two ports, so yosys builds it in logic: a copy of
the write data and address, a compare and a mux behind every read port (31 flip-flops and about
40 LUT4s for one 2048 x 9 memory), and that mux sat on the ECP5 design's critical path (block
RAM clock-to-out, 5.8 ns in nextpnr's model, then the mux, then the register).

The stores here (the conditional buffer, the window's line buffer, the double-buffered stores of
the linear and conv stages) never read a word on the cycle it is written *and use the data*: a
read of a word that is being written only happens on a cycle whose read data is thrown away (the
port is enabled whenever its data may move on, not only on a read). So `sdp_memory` marks the
memory ``no_rw_check`` (yosys: the read data of a collision is undefined, as the hardware has
it) and `read_register` builds the read as an asynchronous port plus a reset-less register with
an enable, which yosys' ``memory_dff`` merges back into a synchronous port, now without the
collision logic. It simulates exactly like ``read_port(transparent_for=())``.

That a collision's data is never used is a claim about each design, so it is tested: inside
``with poison_collisions():`` the register loads the *inverted* old word on a collision (while
the test elaborates the design), and every Amaranth-simulator test of those blocks runs that way
(tests/hw/conftest.py) against its golden model.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib.memory import Memory

__all__ = ["sdp_memory", "read_register", "poison_collisions"]

_POISON = ContextVar("exitgate_poison_collisions", default=False)


@contextmanager
def poison_collisions(on: bool = True):
    """Designs elaborated inside this block read the inverted old word on a read / write collision
    of a `read_register` (what no design may use; the hardware's data is undefined there)."""
    token = _POISON.set(bool(on))
    try:
        yield
    finally:
        _POISON.reset(token)


def sdp_memory(*, shape, depth: int) -> Memory:
    """A ``depth``-word memory of ``shape`` (an unsigned or signed shape) for one `read_register`
    and one write port, marked ``no_rw_check`` (see the module docstring)."""
    return Memory(shape=shape, depth=depth, init=[], attrs={"no_rw_check": 1})


class _ReadRegister:
    """``addr`` and ``en`` in, ``data`` out one cycle after an enabled cycle (held otherwise)."""

    def __init__(self, addr, en, data):
        self.addr, self.en, self.data = addr, en, data


def read_register(m: Module, mem: Memory, wr, *, name: str = "rd") -> _ReadRegister:
    """A synchronous read of ``mem`` (from `sdp_memory`; ``wr`` its write port): set ``addr``
    and ``en``; ``data`` is the word at ``addr`` as it was before the clock edge on which ``en``
    was high, then held, as ``mem.read_port(transparent_for=())`` has it. Built as an
    asynchronous port and a reset-less register that yosys merges into the block RAM."""
    port = mem.read_port(domain="comb")
    addr = Signal.like(port.addr, name=f"{name}_addr")
    en = Signal(name=f"{name}_en")
    data = Signal.like(port.data, name=f"{name}_data", reset_less=True)
    m.d.comb += port.addr.eq(addr)
    word = port.data
    if _POISON.get():
        word = Mux(wr.en & (wr.addr == addr), ~word, word)
    with m.If(en):
        m.d.sync += data.eq(word)
    return _ReadRegister(addr, en, data)
