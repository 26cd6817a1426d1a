"""The integer arithmetic every rung of exitgate shares: one rounding rule, one requantiser,
one early-exit decision rule.

The Brevitas model, the integer reference (`exitgate.quant.reference`), the hardware golden
models (`exitgate.hw`) and the RTL all implement exactly these functions; they are written once,
here, in numpy (no torch, no amaranth), so every rung imports the same definition.

Numbers. A tensor value is ``v = q * 2**exp`` with integer ``q`` and integer ``exp`` (Brevitas
fixed-point quantisers have power-of-two scales), so every rescale is an arithmetic shift.

Rounding. Brevitas quantises with ``torch.round``, which rounds half to even. ``shift_round``
is that rule on integers: ``shift_round(x, s) == round_half_even(x / 2**s)`` exactly.

Decision (ARCHITECTURE 2.5). For integer logits ``z`` (value ``z * 2**-f``) the top-1 softmax
confidence is ``1 / S`` with ``S = sum_j exp(z_j - z_max)``. In fixed point, without a divider:

    d_j   = z_max - z_j                       (>= 0, integer)
    k_j   = min(rshift_round_half_up(d_j, f - g), K - 1)      (LUT index, step 2**-g logits)
    e_j   = LUT[k_j] = round(exp(-k_j * 2**-g) * 2**E)        (e_max = LUT[0] = 2**E)
    S     = sum_j e_j
    exit  iff  t * S <= 2**(E + B)            where t = round(T * 2**B) is the threshold register

which is ``T * S/2**E <= 1``, i.e. ``softmax_max >= T``. Modes: threshold test, never exit,
always exit. The confidence reported beside the decision is ``floor(2**(E+B) / S)`` (B fraction
bits, so ``2**B`` means 1.0); it is informational and does not feed the decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ROUNDING",
    "shift_round",
    "requantise",
    "int_range",
    "bits_for_range",
    "DecisionSpec",
    "MODE_THRESHOLD",
    "MODE_NEVER",
    "MODE_ALWAYS",
    "decide",
    "float_confidence",
]

ROUNDING = "half_even"

MODE_THRESHOLD = 0
MODE_NEVER = 1
MODE_ALWAYS = 2


def shift_round(x, shift: int):
    """``round_half_even(x / 2**shift)`` on integers; ``shift <= 0`` is an exact left shift."""
    x = np.asarray(x, dtype=np.int64)
    shift = int(shift)
    if shift <= 0:
        return x << -shift
    q = x >> shift  # floor
    r = x - (q << shift)
    half = 1 << (shift - 1)
    up = (r > half) | ((r == half) & ((q & 1) == 1))
    return q + up.astype(np.int64)


def int_range(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    """Inclusive integer range of a ``bits``-wide (optionally narrow-range) integer."""
    if signed:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return (lo + 1 if narrow else lo), hi
    return 0, (1 << bits) - 1


def bits_for_range(lo: int, hi: int) -> int:
    """Smallest two's-complement width (signed if ``lo < 0``) that holds every value in [lo, hi]."""
    lo, hi = int(lo), int(hi)
    if lo < 0:
        return max(max(hi, 0).bit_length(), (-lo - 1).bit_length()) + 1
    return max(hi.bit_length(), 1)


def requantise(acc, shift: int, bits: int, signed: bool, relu: bool = False):
    """Accumulator -> activation: shift with the project's rounding, optional ReLU, clamp."""
    lo, hi = int_range(bits, signed)
    if relu:
        lo = max(lo, 0)
    return np.clip(shift_round(acc, shift), lo, hi)


def _lut(g: int, e: int) -> tuple[int, ...]:
    values = []
    k = 0
    while True:
        v = int(round(math.exp(-k * 2.0 ** -g) * 2**e))
        values.append(v)
        if v == 0:
            return tuple(values)
        k += 1


@dataclass(frozen=True)
class DecisionSpec:
    """Parameters of the fixed-point early-exit decision (see module docstring).

    classes: number of logits. logit_frac_bits (f): logits are ``z * 2**-f``.
    lut_frac_bits (g): LUT step is ``2**-g`` logits. exp_bits (E): ``e_max = 2**E``.
    threshold_bits (B): the threshold register holds ``t = round(T * 2**B)``, ``1 <= t <= 2**B``.
    """

    classes: int
    logit_frac_bits: int
    lut_frac_bits: int = 4
    exp_bits: int = 12
    threshold_bits: int = 16
    lut: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.classes < 2:
            raise ValueError(f"DecisionSpec: classes must be >= 2, got {self.classes}")
        if not 1 <= self.lut_frac_bits <= 8:
            raise ValueError(f"DecisionSpec: lut_frac_bits must be in 1..8, got {self.lut_frac_bits}")
        if not 4 <= self.exp_bits <= 20:
            raise ValueError(f"DecisionSpec: exp_bits must be in 4..20, got {self.exp_bits}")
        if not 4 <= self.threshold_bits <= 24:
            raise ValueError(
                f"DecisionSpec: threshold_bits must be in 4..24, got {self.threshold_bits}")
        object.__setattr__(self, "lut", _lut(self.lut_frac_bits, self.exp_bits))

    @property
    def lut_size(self) -> int:
        return len(self.lut)

    @property
    def sum_bits(self) -> int:
        """Width of S (unsigned)."""
        return (self.classes * (1 << self.exp_bits)).bit_length()

    @property
    def index_shift(self) -> int:
        """Right shift (round half up) from a logit difference to a LUT index; < 0 is a left shift."""
        return self.logit_frac_bits - self.lut_frac_bits

    def threshold_register(self, threshold: float) -> int:
        """The register value t for a threshold T in (0, 1]."""
        if not (isinstance(threshold, (int, float)) and 0.0 < float(threshold) <= 1.0):
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        return max(1, min(1 << self.threshold_bits, int(round(threshold * 2**self.threshold_bits))))

    def to_dict(self) -> dict:
        return {
            "classes": self.classes,
            "logit_frac_bits": self.logit_frac_bits,
            "lut_frac_bits": self.lut_frac_bits,
            "exp_bits": self.exp_bits,
            "threshold_bits": self.threshold_bits,
            "lut_size": self.lut_size,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "DecisionSpec":
        return cls(
            classes=int(d["classes"]),
            logit_frac_bits=int(d["logit_frac_bits"]),
            lut_frac_bits=int(d.get("lut_frac_bits", 4)),
            exp_bits=int(d.get("exp_bits", 12)),
            threshold_bits=int(d.get("threshold_bits", 16)),
        )


@dataclass(frozen=True)
class Decision:
    """Per-sample outputs of the decision rule (arrays over the batch)."""

    cls: np.ndarray  # argmax, lowest index on ties
    exit: np.ndarray  # bool
    sum_exp: np.ndarray  # S
    confidence: np.ndarray  # floor(2**(E+B) / S): 2**B is 1.0


def lut_index(spec: DecisionSpec, diff):
    """LUT index for non-negative logit differences ``z_max - z_j``."""
    d = np.asarray(diff, dtype=np.int64)
    s = spec.index_shift
    k = ((d + (1 << (s - 1))) >> s) if s > 0 else (d << -s)
    return np.minimum(k, spec.lut_size - 1)


def decide(spec: DecisionSpec, logits, threshold_reg: int, mode: int = MODE_THRESHOLD) -> Decision:
    """The bit-exact decision rule over a batch of integer logits, shape (N, classes)."""
    z = np.asarray(logits, dtype=np.int64)
    if z.ndim != 2 or z.shape[1] != spec.classes:
        raise ValueError(f"decide: logits must have shape (N, {spec.classes}), got {z.shape}")
    lut = np.asarray(spec.lut, dtype=np.int64)
    zmax = z.max(axis=1, keepdims=True)
    s = lut[lut_index(spec, zmax - z)].sum(axis=1)
    full = 1 << (spec.exp_bits + spec.threshold_bits)
    if mode == MODE_THRESHOLD:
        ex = int(threshold_reg) * s <= full
    elif mode == MODE_NEVER:
        ex = np.zeros(len(z), dtype=bool)
    elif mode == MODE_ALWAYS:
        ex = np.ones(len(z), dtype=bool)
    else:
        raise ValueError(f"decide: mode must be 0 (threshold), 1 (never) or 2 (always), got {mode}")
    return Decision(cls=z.argmax(axis=1), exit=ex, sum_exp=s, confidence=full // s)


def float_confidence(logits, frac_bits: int) -> np.ndarray:
    """Top-1 softmax probability computed in float64 (what the fixed-point rule approximates)."""
    z = np.asarray(logits, dtype=np.float64) * 2.0**-frac_bits
    z = z - z.max(axis=1, keepdims=True)
    return 1.0 / np.exp(z).sum(axis=1)
