"""A UART harness around an accelerator, and the host side of its byte protocol.

`UartHarness` connects a board's ``uart`` resource to an accelerator with the
`exitgate.hw.interface.accelerator_signature` interface (``pixels`` in, ``results`` out, ``ctrl``
register writes). Elaborated without a platform (simulation), the UART lines are its ports:

    rx       In(1, init=1)   serial line into the board (host -> board)
    tx       Out(1, init=1)  serial line out of the board (board -> host)
    overrun  Out(1)          sticky: a received byte was lost (the receive FIFO was full)

Protocol (8N1, default 115200 baud; all multi-byte numbers big-endian):

    host -> board
      'I' p0 p1 ... p(N-1)   one sample: N = pixels_per_sample bytes, one pixel each, raster order
                             (only the low input_bits bits are used); they enter ``pixels`` with
                             ``first`` on p0 and ``last`` on p(N-1)
      'T' exit t2 t1 t0      threshold write: exit's threshold register takes t2:t1:t0 (the low
                             threshold_bits + 1 = 17 bits are used); its mode is rewritten with the
                             harness's copy (the last 'M' value, or ``modes``)
      'M' exit mode          mode write (0 threshold test, 1 never exit, 2 always exit); the
                             threshold is rewritten with the harness's copy (the last 'T' value,
                             or ``thresholds``)
    board -> host
      'R' id exit cls c2 c1 c0   one result per sample, in completion order; c2:c1:c0 is the
                                 17-bit confidence (2**16 means 1.0)
      'E' byte                   error: ``byte`` is an unknown command byte (it is skipped and the
                                 next byte is read as a command), or 'T'/'M' whose exit index
                                 (>= exits) or mode (> 2) was out of range (nothing is written)

The accelerator's ``ctrl`` port writes threshold and mode together and cannot be read, so the
harness keeps a copy of both per exit: pass the accelerator's reset values as ``thresholds`` /
``modes`` (defaults: 2**threshold_bits, i.e. 1.0, and mode 0) so that a 'T' does not change the
mode and an 'M' does not change the threshold.

Flow control: received bytes wait in a ``fifo_depth``-byte FIFO while the accelerator holds
``pixels`` back; beyond that bytes are lost and ``overrun`` is set. Result frames wait for the
transmitter (the accelerator sees back-pressure on ``results``). A sample of N >= 6 pixels takes at
least as long to receive as its 7-byte result takes to send, so a host may stream samples back to
back if the accelerator accepts a pixel per byte time.

`encode_image`, `encode_threshold`, `encode_mode` and `decode_frames` are the host side.
"""

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..errors import ExitgateError
from ..hw.interface import accelerator_signature
from ..hw.plumbing import SkidBuffer
from .uart import UartRx, UartTx, check_divisor, uart_divisor

__all__ = ["CMD_IMAGE", "CMD_THRESHOLD", "CMD_MODE", "FRAME_RESULT", "FRAME_ERROR",
           "DEFAULT_BAUD", "UartHarness", "Result", "Error", "encode_image", "encode_threshold",
           "encode_mode", "decode_frames"]

CMD_IMAGE = ord("I")
CMD_THRESHOLD = ord("T")
CMD_MODE = ord("M")
FRAME_RESULT = ord("R")
FRAME_ERROR = ord("E")
DEFAULT_BAUD = 115200
_RESULT_BYTES = 7
_MODES = 3


def _pad(value, width):
    return Cat(value, Const(0, width - len(value)))


def _geometry(accelerator) -> dict:
    """input_bits, id_width, exit/cls widths and threshold_bits from the accelerator's signature."""
    try:
        members = accelerator.signature.members
        pixel_data = members["pixels"].signature.members["payload"].shape["data"].shape
        result = members["results"].signature.members["payload"].shape
        ctrl = members["ctrl"].shape
        geometry = {
            "input_bits": pixel_data.elem_shape.width,
            "id_width": result["id"].width,
            "exit_width": result["exit"].width,
            "cls_width": result["cls"].width,
            "confidence_width": result["confidence"].width,
            "threshold_bits": ctrl["threshold"].width - 1,
        }
        expected = accelerator_signature(geometry["input_bits"], geometry["id_width"],
                                         2 ** geometry["exit_width"], 2 ** geometry["cls_width"],
                                         geometry["threshold_bits"])
    except (AttributeError, KeyError, TypeError, ValueError, wiring.SignatureError) as exc:
        raise ExitgateError(f"the accelerator does not have the accelerator_signature interface "
                            f"(pixels, results, ctrl): {exc}") from None
    if accelerator.signature != expected:
        raise ExitgateError(f"the accelerator's signature {accelerator.signature!r} is not an "
                            f"accelerator_signature(...)")
    return geometry


class UartHarness(wiring.Component):
    """The accelerator behind a UART (see module docstring for ports and protocol).

    ``accelerator``: a `wiring.Component` with `accelerator_signature(...)`, or a callable that
    makes one. ``pixels_per_sample``: H*W. ``exits``: number of exits (default: all values of the
    ``exit`` field). The bit period is ``divisor`` clock cycles, or (default) the platform's
    clock / ``baud`` (``divisor`` is required without a platform)."""

    rx: In(1, init=1)
    tx: Out(1, init=1)
    overrun: Out(1)

    def __init__(self, accelerator, pixels_per_sample: int, *, exits: int | None = None,
                 baud: int = DEFAULT_BAUD, divisor: int | None = None,
                 thresholds=None, modes=None, fifo_depth: int = 32):
        if not isinstance(accelerator, wiring.Component) and callable(accelerator):
            accelerator = accelerator()
        if not isinstance(accelerator, wiring.Component):
            raise ExitgateError(f"accelerator must be an Amaranth Component (or a callable that "
                                f"returns one), got {accelerator!r}")
        g = _geometry(accelerator)
        for key, limit in (("input_bits", 8), ("id_width", 8), ("exit_width", 8),
                           ("cls_width", 8), ("confidence_width", 24)):
            if g[key] > limit:
                raise ExitgateError(f"the UART protocol carries {key} <= {limit}, "
                                    f"the accelerator has {g[key]}")
        if g["threshold_bits"] + 1 > 24:
            raise ExitgateError(f"the UART protocol carries thresholds of <= 24 bits, the "
                                f"accelerator has {g['threshold_bits'] + 1}")
        _check_int("pixels_per_sample", pixels_per_sample, 1)
        max_exits = 2 ** g["exit_width"]
        exits = max_exits if exits is None else exits
        _check_int("exits", exits, 1, max_exits)
        _check_int("fifo_depth", fifo_depth, 2)
        if divisor is not None:
            try:
                check_divisor(divisor)
            except ValueError as exc:
                raise ExitgateError(str(exc)) from None
        threshold_width = g["threshold_bits"] + 1
        thresholds = ([2 ** g["threshold_bits"]] * exits if thresholds is None
                      else list(thresholds))
        modes = [0] * exits if modes is None else list(modes)
        if len(thresholds) != exits or not all(
                isinstance(t, int) and 0 <= t < 2 ** threshold_width for t in thresholds):
            raise ExitgateError(f"thresholds must be {exits} integers in "
                                f"0..{2 ** threshold_width - 1}, got {thresholds!r}")
        if len(modes) != exits or not all(mode in range(_MODES) for mode in modes):
            raise ExitgateError(f"modes must be {exits} values in 0..2, got {modes!r}")

        self.accelerator = accelerator
        self.geometry = g
        self.pixels_per_sample = pixels_per_sample
        self.exits = exits
        self.baud = baud
        self.divisor = divisor
        self.thresholds = thresholds
        self.modes = modes
        self.fifo_depth = fifo_depth
        super().__init__()

    def _bit_period(self, platform) -> int:
        if self.divisor is not None:
            return self.divisor
        if platform is None:
            raise ExitgateError("UartHarness needs `divisor` when elaborated without a platform")
        return uart_divisor(platform.default_clk_frequency, self.baud)

    def elaborate(self, platform):
        m = Module()
        divisor = self._bit_period(platform)
        m.submodules.accelerator = acc = self.accelerator
        m.submodules.uart_rx = urx = UartRx(divisor)
        m.submodules.uart_tx = utx = UartTx(divisor)
        m.submodules.rx_fifo = fifo = SyncFIFOBuffered(width=8, depth=self.fifo_depth)

        if platform is None:
            m.d.comb += urx.rx.eq(self.rx)
        else:
            uart = platform.request("uart", 0, dir="-")
            m.submodules.uart_rx_buffer = rx_buffer = io.Buffer("i", uart.rx)
            m.submodules.uart_tx_buffer = tx_buffer = io.Buffer("o", uart.tx)
            m.d.comb += [urx.rx.eq(rx_buffer.i), tx_buffer.o.eq(utx.tx)]
        m.d.comb += self.tx.eq(utx.tx)

        wiring.connect(m, urx.o, fifo.w_stream)
        with m.If(urx.overrun):
            m.d.sync += self.overrun.eq(1)

        # pixels reach the accelerator through a skid buffer: its first stage's ready does not
        # run into the command parser (Fmax)
        m.submodules.pixel_skid = pixel_skid = SkidBuffer(
            acc.signature.members["pixels"].signature.flip())
        wiring.connect(m, pixel_skid.o, acc.pixels)

        # and results leave through one: the framer's ready does not run into the exit merge
        # and the decision units (on a board without the accelerator's own skid buffers)
        m.submodules.result_skid = result_skid = SkidBuffer(
            acc.signature.members["results"].signature)
        wiring.connect(m, acc.results, result_skid.i)

        err_pending = Signal()
        err_byte = Signal(8)
        self._parser(m, fifo, acc, pixel_skid.i, err_pending, err_byte)
        self._sender(m, utx, result_skid.o, err_pending, err_byte)
        return m

    def _parser(self, m, fifo, acc, pixels, err_pending, err_byte):
        g = self.geometry
        threshold_width = g["threshold_bits"] + 1
        byte = fifo.r_data
        cmd = Signal(8)
        count = Signal(range(self.pixels_per_sample))
        args = Signal(32)
        left = Signal(range(5))
        thresholds = Array(Signal(threshold_width, init=t, name=f"threshold{i}")
                           for i, t in enumerate(self.thresholds))
        modes = Array(Signal(2, init=mode, name=f"mode{i}") for i, mode in enumerate(self.modes))

        is_mode = cmd == CMD_MODE
        exit_index = Signal(8)
        new_threshold = args[:threshold_width]
        new_mode = args[:8]
        m.d.comb += exit_index.eq(args[24:32])
        with m.If(is_mode):
            m.d.comb += exit_index.eq(args[8:16])
        ok_r, is_mode_r, exit_r, sel_r = Signal(), Signal(), Signal(8), Signal(self.exits)
        # the accelerator's ctrl port is driven from registers: a write reaches it the cycle
        # after the "write" state, which follows the "decode" and "check" states after the last
        # argument byte (still before any pixel of a following image can), so the command
        # decoding and the decision units' register enables are not one path (Fmax)
        we, w_exit = Signal(), Signal(8)
        w_threshold, w_mode = Signal(threshold_width), Signal(2)
        m.d.sync += we.eq(0)
        m.d.comb += [acc.ctrl.we.eq(we), acc.ctrl.exit.eq(w_exit),
                     acc.ctrl.threshold.eq(w_threshold), acc.ctrl.mode.eq(w_mode)]

        err_seen = Signal()
        m.d.sync += err_seen.eq(err_pending)
        with m.FSM():
            with m.State("command"):
                # the command byte into a register, then ("dispatch") its decoding (Fmax: the
                # FIFO's block-RAM read data, the byte's compares and the state's next value
                # were one path)
                m.d.comb += fifo.r_en.eq(1)
                with m.If(fifo.r_rdy):
                    m.d.sync += cmd.eq(byte)
                    m.next = "dispatch"
            with m.State("dispatch"):
                with m.Switch(cmd):
                    with m.Case(CMD_IMAGE):
                        m.next = "pixels"
                    with m.Case(CMD_THRESHOLD):
                        m.d.sync += left.eq(4)
                        m.next = "arguments"
                    with m.Case(CMD_MODE):
                        m.d.sync += left.eq(2)
                        m.next = "arguments"
                    with m.Default():
                        m.next = "error"
            with m.State("pixels"):
                last = count == self.pixels_per_sample - 1
                m.d.comb += [
                    pixels.valid.eq(fifo.r_rdy),
                    pixels.payload.data[0].eq(byte[:g["input_bits"]]),
                    pixels.payload.first.eq(count == 0),
                    pixels.payload.last.eq(last),
                    fifo.r_en.eq(pixels.ready),
                ]
                with m.If(fifo.r_rdy & pixels.ready):
                    m.d.sync += count.eq(count + 1)
                    with m.If(last):
                        m.d.sync += count.eq(0)
                        m.next = "command"
            with m.State("arguments"):
                m.d.comb += fifo.r_en.eq(1)
                with m.If(fifo.r_rdy):
                    m.d.sync += [args.eq(Cat(byte, args[:24])), left.eq(left - 1)]
                    with m.If(left == 1):
                        m.next = "decode"
            with m.State("decode"):
                # the command's target into registers, then ("check") its checks (Fmax: the
                # "write" state has no compare in front of the register enables it drives, and
                # the checks none in front of them)
                m.d.sync += [is_mode_r.eq(is_mode), exit_r.eq(exit_index)]
                m.next = "check"
            with m.State("check"):
                # (and the target exit one-hot: the copies' enables are a register and the
                # state, not an exit-index compare)
                m.d.sync += [ok_r.eq((exit_r < self.exits) & (~is_mode_r | (new_mode < _MODES))),
                             sel_r.eq(Cat(exit_r == k for k in range(self.exits)))]
                m.next = "write"
            with m.State("write"):
                with m.If(ok_r):
                    threshold = Signal(threshold_width)
                    mode = Signal(2)
                    m.d.comb += [threshold.eq(thresholds[exit_r]), mode.eq(modes[exit_r])]
                    with m.If(is_mode_r):
                        m.d.comb += mode.eq(new_mode)
                        for k in range(self.exits):
                            with m.If(sel_r[k]):
                                m.d.sync += modes[k].eq(new_mode)
                    with m.Else():
                        m.d.comb += threshold.eq(new_threshold)
                        for k in range(self.exits):
                            with m.If(sel_r[k]):
                                m.d.sync += thresholds[k].eq(new_threshold)
                    m.d.sync += [we.eq(1), w_exit.eq(exit_r),
                                 w_threshold.eq(threshold), w_mode.eq(mode)]
                    m.next = "command"
                with m.Else():
                    m.next = "error"
            with m.State("error"):
                # err_pending as a register of the parser's own (the sender, which clears it,
                # sits by the transmitter: Fmax). A cycle late is safe: the parser sets it
                # here and comes back here at the earliest two cycles later (one command byte)
                with m.If(~err_seen):
                    m.d.sync += [err_pending.eq(1), err_byte.eq(cmd)]
                    m.next = "command"

    def _sender(self, m, utx, results, err_pending, err_byte):
        frame = Signal(8 * _RESULT_BYTES)
        left = Signal(range(_RESULT_BYTES + 1))
        result = results.payload
        m.d.comb += [utx.i.payload.eq(frame[-8:]), utx.i.valid.eq(left != 0)]
        with m.If(left != 0):
            with m.If(utx.i.ready):
                m.d.sync += [frame.eq(frame << 8), left.eq(left - 1)]
        with m.Elif(err_pending):
            m.d.sync += [frame.eq(Cat(Const(0, 40), err_byte, Const(FRAME_ERROR, 8))),
                         left.eq(2), err_pending.eq(0)]
        with m.Elif(results.valid):
            m.d.comb += results.ready.eq(1)
            m.d.sync += [frame.eq(Cat(_pad(result.confidence, 24), _pad(result.cls, 8),
                                      _pad(result.exit, 8), _pad(result.id, 8),
                                      Const(FRAME_RESULT, 8))),
                         left.eq(_RESULT_BYTES)]


def _check_int(name, value, lo, hi=None):
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (
            hi is not None and value > hi):
        allowed = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ExitgateError(f"{name} must be an integer {allowed}, got {value!r}")


# --- host side -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    """A decoded 'R' frame."""
    id: int
    exit: int
    cls: int
    confidence: int


@dataclass(frozen=True)
class Error:
    """A decoded 'E' frame: the offending command byte."""
    byte: int


def encode_image(pixels, input_bits: int = 8) -> bytes:
    """'I' followed by one byte per pixel (raster order); pixels must fit in ``input_bits``."""
    pixels = [int(p) for p in pixels]
    bad = [p for p in pixels if not 0 <= p < 2 ** input_bits]
    if bad:
        raise ExitgateError(f"pixels must be in 0..{2 ** input_bits - 1}, got {bad[:5]}")
    return bytes([CMD_IMAGE, *pixels])


def encode_threshold(exit: int, threshold: int) -> bytes:
    """'T' exit t2 t1 t0 (threshold in 0..2**17-1, e.g. round(T * 2**16))."""
    _check_int("exit", exit, 0, 255)
    _check_int("threshold", threshold, 0, 2 ** 17 - 1)
    return bytes([CMD_THRESHOLD, exit]) + threshold.to_bytes(3, "big")


def encode_mode(exit: int, mode: int) -> bytes:
    """'M' exit mode (0 threshold test, 1 never exit, 2 always exit)."""
    _check_int("exit", exit, 0, 255)
    _check_int("mode", mode, 0, _MODES - 1)
    return bytes([CMD_MODE, exit, mode])


def decode_frames(data: bytes) -> tuple[list, bytes]:
    """The complete frames at the start of ``data`` (`Result` / `Error`) and the bytes left over
    (an incomplete frame). ExitgateError on a byte that starts no frame."""
    data = bytes(data)
    frames = []
    pos = 0
    while pos < len(data):
        kind = data[pos]
        if kind == FRAME_RESULT:
            if pos + _RESULT_BYTES > len(data):
                break
            id_, exit_, cls = data[pos + 1:pos + 4]
            frames.append(Result(id_, exit_, cls,
                                 int.from_bytes(data[pos + 4:pos + 7], "big")))
            pos += _RESULT_BYTES
        elif kind == FRAME_ERROR:
            if pos + 2 > len(data):
                break
            frames.append(Error(data[pos + 1]))
            pos += 2
        else:
            raise ExitgateError(f"unexpected byte 0x{kind:02x} at offset {pos} from the board: "
                                f"frames start with 'R' or 'E'")
    return frames, data[pos:]
