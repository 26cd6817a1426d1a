"""Feature maps <-> activation-stream beats, in the beat order of `exitgate.hw.stream` (pixels in
raster order, each pixel ``C / lanes`` beats of consecutive channel groups). Used by simulator
tests, cocotb benches and the compiler's checks; numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["map_to_lanes", "lanes_to_map", "beat_payloads", "pack_beat"]


def map_to_lanes(x, lanes: int) -> np.ndarray:
    """(N, C, H, W) -> (N * H * W * C/lanes, lanes) int64 beats, in stream order."""
    x = np.asarray(x, dtype=np.int64)
    n, c, h, w = x.shape
    if c % lanes:
        raise ValueError(f"lanes ({lanes}) must divide the channel count ({c})")
    return x.transpose(0, 2, 3, 1).reshape(-1, lanes)


def lanes_to_map(beats, shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of `map_to_lanes`: beats (any (B, lanes)) -> (N, C, H, W)."""
    c, h, w = shape
    return np.asarray(beats, dtype=np.int64).reshape(-1, h, w, c).transpose(0, 3, 1, 2)


def beat_payloads(x, lanes: int) -> list[dict]:
    """Payload dicts ``{"data": [...], "first": 0/1, "last": 0/1}`` for a batch (N, C, H, W)."""
    beats = map_to_lanes(x, lanes)
    per_sample = len(beats) // len(x)
    return [{"data": [int(v) for v in beat], "first": int(k % per_sample == 0),
             "last": int(k % per_sample == per_sample - 1)} for k, beat in enumerate(beats)]


def pack_beat(data, first: int, last: int, width: int) -> int:
    """One payload as an integer (lane 0 in the low bits, then ``first``, then ``last``), as on
    the Verilog port of an activation stream without id."""
    word = 0
    for lane, v in enumerate(data):
        word |= (int(v) & ((1 << width) - 1)) << (lane * width)
    bits = len(data) * width
    return word | (int(first) << bits) | (int(last) << (bits + 1))
