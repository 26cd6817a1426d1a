"""A stand-in accelerator for the board tests and bench: a real Component with
`accelerator_signature`, small enough to simulate and synthesise in seconds.

Per sample it sums the pixels; the result is id = sample number (mod 2**id_width),
exit = sum % exits, cls = sum % classes, confidence = exit's threshold register at that moment.
It takes one pixel per cycle and holds ``pixels`` back for ~width+1 cycles after a sample's
last pixel (a serial divider) and while its result waits to leave.
(Imported by path: tests run with --import-mode=importlib; bench/boards_build.py loads it too.)
"""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import wiring

from exitgate.hw.interface import accelerator_signature


class SumAccelerator(wiring.Component):
    def __init__(self, input_bits=8, id_width=8, exits=3, classes=10, pixels=16, threshold_bits=16,
                 thresholds=None, modes=None):
        self.params = dict(input_bits=input_bits, id_width=id_width, exits=exits,
                           classes=classes, pixels=pixels, threshold_bits=threshold_bits)
        self.init_thresholds = thresholds or [2 ** threshold_bits] * exits
        self.init_modes = modes or [0] * exits
        super().__init__(accelerator_signature(input_bits, id_width, exits, classes,
                                               threshold_bits))

    def elaborate(self, platform):
        p = self.params
        m = Module()
        thresholds = Array(Signal(p["threshold_bits"] + 1, init=t, name=f"threshold{i}")
                           for i, t in enumerate(self.init_thresholds))
        modes = Array(Signal(2, init=mode, name=f"mode{i}") for i, mode in enumerate(self.init_modes))
        with m.If(self.ctrl.we):
            m.d.sync += [thresholds[self.ctrl.exit].eq(self.ctrl.threshold),
                         modes[self.ctrl.exit].eq(self.ctrl.mode)]

        width = p["input_bits"] + p["pixels"].bit_length()
        total = Signal(width)
        seq = Signal(p["id_width"])
        # sum % exits and sum % classes by restoring division, one quotient bit per cycle, so the
        # design meets timing like a real pipeline would (no combinational divider)
        residues = [(Signal(width, name=f"rem_{k}"), Signal(width + k.bit_length(), name=f"div_{k}"), k)
                    for k in (p["exits"], p["classes"])]
        steps = Signal(range(width + 1))
        busy = Signal()
        emit = Signal()
        out = self.results

        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        m.d.comb += self.pixels.ready.eq(~busy & ~emit & ~out.valid)
        with m.If(self.pixels.valid & self.pixels.ready):
            new_total = Mux(self.pixels.payload.first, 0, total) + self.pixels.payload.data[0]
            m.d.sync += total.eq(new_total)
            with m.If(self.pixels.payload.last):
                m.d.sync += [busy.eq(1), steps.eq(width)]
                m.d.sync += [rem.eq(new_total) for rem, _, _ in residues]
                m.d.sync += [div.eq(k << (width - 1)) for _, div, k in residues]
        with m.If(busy):
            for rem, div, _ in residues:
                with m.If(rem >= div):
                    m.d.sync += rem.eq(rem - div)
                m.d.sync += div.eq(div >> 1)
            m.d.sync += steps.eq(steps - 1)
            with m.If(steps == 1):
                m.d.sync += [busy.eq(0), emit.eq(1)]
        with m.If(emit):
            (rem_exit, _, _), (rem_cls, _, _) = residues
            m.d.sync += [emit.eq(0), out.valid.eq(1), out.payload.id.eq(seq), seq.eq(seq + 1),
                         out.payload.exit.eq(rem_exit), out.payload.cls.eq(rem_cls),
                         out.payload.confidence.eq(thresholds[rem_exit[:len(out.payload.exit)]])]
        return m


def sum_model(events, *, exits=3, classes=10, id_width=8, threshold_bits=16, thresholds=None):
    """Expected results of `SumAccelerator` for ``events``: ("image", pixels) or
    ("threshold", exit, value); a threshold write applies to the samples after it."""
    thresholds = list(thresholds or [2 ** threshold_bits] * exits)
    results = []
    for event in events:
        if event[0] == "threshold":
            thresholds[event[1]] = event[2]
        elif event[0] == "image":
            total = sum(event[1])
            results.append((len(results) % 2 ** id_width, total % exits, total % classes,
                            thresholds[total % exits]))
    return results
