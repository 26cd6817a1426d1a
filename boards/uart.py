"""8N1 UART receiver and transmitter with byte streams, and their golden model.

Framing (8N1): the idle line is high; a byte is a start bit (0), eight data bits LSB first and a
stop bit (1), each ``divisor`` clock cycles long (``divisor = round(clk_hz / baud)``, see
`uart_divisor`).

    UartRx   rx       In(1)                 the line (synchronised inside with two flip-flops)
             o        Out(stream(8))        received bytes
             overrun  Out(1)                one-cycle pulse: a byte was dropped because ``o``
                                            still held the previous one (not yet accepted)
             error    Out(1)                one-cycle pulse: framing error (stop bit was 0);
                                            the byte is dropped

    UartTx   i        In(stream(8))         bytes to send; ``ready`` is high only while the
                                            transmitter is idle, so a producer simply waits
                                            (back-pressure: nothing is dropped)
             tx       Out(1, init=1)        the line

The receiver checks the start bit half a bit after the falling edge (a glitch shorter than that is
ignored) and samples each following bit in its middle; it returns to idle in the middle of the
stop bit, so it tolerates a sender up to ~4% faster or slower. ``o`` holds one byte: a consumer
must take it within one byte time (``10 * divisor`` cycles) or the next byte is lost (``overrun``).
The transmitter sends bytes back to back with one idle cycle between frames.

Golden model: `encode_8n1` (bytes -> line levels, one per bit) and `decode_8n1` (line levels,
``samples_per_bit`` per bit, e.g. one per clock cycle -> bytes).
"""


from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..errors import ExitgateError

__all__ = ["MIN_DIVISOR", "check_divisor", "uart_divisor", "UartRx", "UartTx", "encode_8n1", "decode_8n1"]

MIN_DIVISOR = 4        # clocks per bit: the receiver samples at half a bit
MAX_BAUD_ERROR = 0.02  # |actual - requested| / requested


def check_divisor(divisor) -> int:
    """``divisor`` if it is a valid clock-cycles-per-bit count, else ValueError (checked before a
    UART is constructed)."""
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor (clock cycles per bit) must be an integer >= {MIN_DIVISOR}, "
                         f"got {divisor!r}")
    return divisor


def uart_divisor(clk_hz: float, baud: float) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_hz``; ExitgateError if the clock is too slow for
    the baud rate or the rounding error exceeds 2%."""
    if not clk_hz > 0 or not baud > 0:
        raise ExitgateError(f"clock and baud rate must be positive, got clk_hz={clk_hz!r}, "
                            f"baud={baud!r}")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ExitgateError(f"baud rate {baud} is too high for a {clk_hz / 1e6:g} MHz clock: "
                            f"need at least {MIN_DIVISOR} clock cycles per bit "
                            f"(baud <= {clk_hz / MIN_DIVISOR:.0f})")
    error = abs(clk_hz / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ExitgateError(f"baud rate {baud} at {clk_hz / 1e6:g} MHz is off by {error:.1%} "
                            f"(divisor {divisor}); at most {MAX_BAUD_ERROR:.0%} works")
    return divisor


class UartRx(wiring.Component):
    """8N1 receiver (see module docstring). ``divisor``: clock cycles per bit (>= 4)."""

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    overrun: Out(1)
    error: Out(1)

    def __init__(self, divisor: int):
        self.divisor = check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(self.divisor))
        bit = Signal(range(9))
        shift = Signal(8)

        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("idle"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "start"
            with m.State("start"):
                with m.If(timer == 0):
                    with m.If(line):            # a glitch, not a start bit
                        m.next = "idle"
                    with m.Else():
                        m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                        m.next = "data"
            with m.State("data"):
                with m.If(timer == 0):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), timer.eq(self.divisor - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "stop"
            with m.State("stop"):
                with m.If(timer == 0):
                    with m.If(~line):
                        m.d.comb += self.error.eq(1)
                        m.next = "break"
                    with m.Elif(self.o.valid & ~self.o.ready):
                        m.d.comb += self.overrun.eq(1)
                        m.next = "idle"
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                        m.next = "idle"
            with m.State("break"):                # wait for the line to go idle again
                with m.If(line):
                    m.next = "idle"
        return m


class UartTx(wiring.Component):
    """8N1 transmitter (see module docstring). ``divisor``: clock cycles per bit (>= 4)."""

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        self.divisor = check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        bits = Signal(range(11))
        frame = Signal(10, init=0x3FF)     # LSB goes out first

        m.d.comb += [self.tx.eq(frame[0]), self.i.ready.eq(bits == 0)]
        with m.If(bits == 0):
            with m.If(self.i.valid):
                m.d.sync += [frame.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                             bits.eq(10), timer.eq(self.divisor - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [frame.eq(Cat(frame[1:], Const(1, 1))), bits.eq(bits - 1),
                         timer.eq(self.divisor - 1)]
        return m


def encode_8n1(data: bytes) -> list[int]:
    """Line levels, one per bit, of ``data`` sent back to back (10 bits per byte)."""
    levels = []
    for byte in bytes(data):
        levels += [0] + [(byte >> k) & 1 for k in range(8)] + [1]
    return levels


def decode_8n1(levels, samples_per_bit: int = 1, *, strict: bool = True) -> bytes:
    """Bytes on a line sampled ``samples_per_bit`` times per bit (1: one level per bit).

    Finds each start bit's falling edge and reads every bit in its middle. A frame whose stop
    bit is 0 raises ValueError if ``strict``, else is skipped; a frame cut off at the end of
    ``levels`` is ignored."""
    levels = list(levels)
    n = samples_per_bit
    mid = n // 2
    out = bytearray()
    pos = 0
    while pos < len(levels):
        if levels[pos]:
            pos += 1
            continue
        end = pos + mid + 9 * n
        if end >= len(levels):
            break
        bits = [levels[pos + mid + k * n] for k in range(10)]
        if bits[9] != 1:
            if strict:
                raise ValueError(f"framing error at sample {pos}: stop bit is 0")
            pos = end + 1
            while pos < len(levels) and not levels[pos]:
                pos += 1
            continue
        out.append(sum(b << k for k, b in enumerate(bits[1:9])))
        pos = end
    return bytes(out)
