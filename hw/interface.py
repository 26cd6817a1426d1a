"""The accelerator's top-level interface: what the compiler generates and what board harnesses,
cocotb benches and users drive.

    pixels   In   stream of input pixels, one per beat (activation_signature(1, input_bits)),
                  raster order, `first`/`last` on a sample's first/last pixel
    results  Out  stream of one result per sample: {id, exit, cls, confidence}
                  id: the sample's sequence number (mod 2**id_width), assigned at the input in
                  arrival order; exit: index of the exit taken; cls: the class;
                  confidence: floor(2**(E+B) / S) (2**B means 1.0; see exitgate.numerics)
    ctrl     In   threshold/mode register writes: on a cycle with `we` high, exit `exit`'s
                  threshold register takes `threshold` (t = round(T * 2**B), 1..2**B) and its
                  mode register takes `mode` (0 threshold test, 1 never exit, 2 always exit)

Results leave in order of completion (not necessarily input order): match them by `id`.
"""

from __future__ import annotations

from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .stream import activation_signature

__all__ = ["CONFIDENCE_WIDTH", "result_layout", "result_signature", "ctrl_layout",
           "accelerator_signature"]

CONFIDENCE_WIDTH = 17  # floor(2**(E+B)/S) <= 2**B with B = 16


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def result_layout(id_width: int, exits: int, classes: int,
                  confidence_width: int = CONFIDENCE_WIDTH) -> data.StructLayout:
    return data.StructLayout({"id": id_width, "exit": _bits(exits), "cls": _bits(classes),
                              "confidence": confidence_width})


def result_signature(id_width: int, exits: int, classes: int,
                     confidence_width: int = CONFIDENCE_WIDTH) -> stream.Signature:
    return stream.Signature(result_layout(id_width, exits, classes, confidence_width))


def ctrl_layout(exits: int, threshold_bits: int = 16) -> data.StructLayout:
    return data.StructLayout({"we": 1, "exit": _bits(exits), "threshold": threshold_bits + 1,
                              "mode": 2})


def accelerator_signature(input_bits: int, id_width: int, exits: int, classes: int,
                          threshold_bits: int = 16) -> wiring.Signature:
    """Signature of a generated accelerator (see module docstring)."""
    return wiring.Signature({
        "pixels": In(activation_signature(1, input_bits)),
        "results": Out(result_signature(id_width, exits, classes)),
        "ctrl": In(ctrl_layout(exits, threshold_bits)),
    })
