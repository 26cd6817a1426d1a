"""The one stream definition every exitgate block uses.

An activation stream carries ``lanes`` integers of ``width`` bits per beat (channels of one pixel,
or a slice of them), with ``first``/``last`` markers for the first and last beat of a sample and,
where the block needs it, the sample's ``id``. It is an `amaranth.lib.stream.Signature`
(valid/ready handshake: a beat moves on a cycle where both are high; a producer holds its payload
and ``valid`` until it is accepted).

Payload layout (a `data.StructLayout`, field order = bit order, LSB first):

    data   ArrayLayout(signed(width) | unsigned(width), lanes)   lane 0 in the low bits
    first  1   first beat of a sample
    last   1   last beat of a sample
    id     id_width (only when id_width > 0)

Beat order of a feature map (C, H, W) streamed with ``lanes`` lanes: raster order over pixels
(row-major: h, then w), and within a pixel ``C // lanes`` beats of consecutive channel groups
(beat b carries channels ``b*lanes .. b*lanes+lanes-1``). ``lanes`` must divide C.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, stream

__all__ = ["activation_layout", "activation_signature", "beats_of"]


def _check(name, value, lo, hi=None):
    if not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        allowed = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")


def activation_layout(lanes: int, width: int, *, signed_data: bool = False,
                      id_width: int = 0) -> data.StructLayout:
    """Payload layout of an activation stream (see module docstring)."""
    _check("lanes", lanes, 1)
    _check("width", width, 1, 64)
    _check("id_width", id_width, 0, 32)
    elem = signed(width) if signed_data else unsigned(width)
    fields = {"data": data.ArrayLayout(elem, lanes), "first": 1, "last": 1}
    if id_width:
        fields["id"] = id_width
    return data.StructLayout(fields)


def activation_signature(lanes: int, width: int, *, signed_data: bool = False,
                         id_width: int = 0) -> stream.Signature:
    """`stream.Signature` of an activation stream: ``lanes`` x ``width``-bit integers per beat."""
    return stream.Signature(activation_layout(lanes, width, signed_data=signed_data,
                                              id_width=id_width))


def beats_of(shape: tuple[int, int, int], lanes: int) -> int:
    """Number of beats a (C, H, W) feature map takes on a ``lanes``-lane stream."""
    c, h, w = shape
    if c % lanes:
        raise ValueError(f"lanes ({lanes}) must divide the channel count ({c})")
    return h * w * (c // lanes)
