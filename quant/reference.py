"""The bit-exact integer reference: executes an IR on integer inputs with numpy int64.

This is the golden model of the whole accelerator. Its arithmetic is `exitgate.numerics`
(rounding, requantisation, the exit decision); the hardware golden models in `exitgate.hw`
compute the same per-layer functions and are tested equal to these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..numerics import MODE_THRESHOLD, Decision, decide, int_range, requantise
from .ir import IR

__all__ = ["run_ir", "exit_logits", "quantise_input", "cascade", "Cascade", "conv2d_int",
           "linear_int", "maxpool_int"]


def conv2d_int(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, padding: int,
               stride: int = 1) -> np.ndarray:
    """Integer convolution (N, C, H, W) * (O, C, K, K) + b -> (N, O, H', W'), exact in int64."""
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - k) // stride + 1
    wo = (wd + 2 * padding - k) // stride + 1
    cols = np.empty((n, c, k, k, ho, wo), dtype=np.int64)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]
    out = np.einsum("nckluv,ockl->nouv", cols, w.astype(np.int64), optimize=True)
    if b is not None:
        out += b.astype(np.int64)[None, :, None, None]
    return out


def linear_int(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """Integer fully-connected layer (N, F) x (O, F)^T + b, exact in int64."""
    out = x.astype(np.int64) @ w.astype(np.int64).T
    return out + b.astype(np.int64) if b is not None else out


def maxpool_int(x: np.ndarray, kernel: int = 2, stride: int = 2) -> np.ndarray:
    """Max pooling with floor of odd sizes (as torch.nn.MaxPool2d)."""
    n, c, h, w = x.shape
    ho, wo = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    out = None
    for i in range(kernel):
        for j in range(kernel):
            v = x[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]
            out = v if out is None else np.maximum(out, v)
    return out


def run_ir(ir: IR, weights: dict, x_int: np.ndarray) -> dict[str, np.ndarray]:
    """Every node's integer output for a batch of integer inputs (N, *input shape)."""
    x_int = np.asarray(x_int, dtype=np.int64)
    lo, hi = int_range(ir.input.bits, ir.input.signed)
    if x_int.shape[1:] != ir.input.shape:
        raise ValueError(f"input shape {x_int.shape[1:]} does not match the IR's {ir.input.shape}")
    if x_int.size and (x_int.min() < lo or x_int.max() > hi):
        raise ValueError(f"input integers must be in [{lo}, {hi}]")
    vals: dict[str, np.ndarray] = {}
    for node in ir.nodes:
        a = node.attrs
        src = vals[node.inputs[0]] if node.inputs else x_int
        if node.op == "input":
            out = x_int
        elif node.op == "conv2d":
            out = conv2d_int(src, weights[a["weight"]], weights.get(a.get("bias")),
                             a["padding"], a["stride"])
        elif node.op == "linear":
            out = linear_int(src, weights[a["weight"]], weights.get(a.get("bias")))
        elif node.op == "requant":
            out = requantise(src, a["shift"], node.bits, node.signed, a["relu"])
        elif node.op == "maxpool":
            out = maxpool_int(src, a["kernel"], a["stride"])
        elif node.op == "flatten":
            out = src.reshape(len(src), -1)
        else:  # pragma: no cover - ir_from_dict rejects unknown ops
            raise ValueError(f"unknown op {node.op}")
        vals[node.name] = out
    return vals


def exit_logits(ir: IR, weights: dict, x_int: np.ndarray) -> list[np.ndarray]:
    """Integer logits (N, classes) of every exit, in exit order."""
    vals = run_ir(ir, weights, x_int)
    return [vals[e.node] for e in ir.exits]


def quantise_input(ir: IR, x_float: np.ndarray) -> np.ndarray:
    """Float inputs -> the integers the input quantiser produces (round half even, clamp)."""
    inp = ir.input
    scaled = np.asarray(x_float, dtype=np.float64) * 2.0 ** -inp.exp
    lo, hi = int_range(inp.bits, inp.signed)
    return np.clip(np.round(scaled), lo, hi).astype(np.int64)


@dataclass(frozen=True)
class Cascade:
    """What the early-exit network does per sample: the exit taken and the class it gave."""

    exit: np.ndarray        # exit index taken, (N,)
    cls: np.ndarray         # class predicted at that exit, (N,)
    decisions: list[Decision]   # per exit, over all samples (for analysis)


def cascade(ir: IR, logits: list[np.ndarray], thresholds, modes=None) -> Cascade:
    """Apply the fixed-point decision at each non-final exit (threshold T_k, float in (0, 1]);
    the final exit takes every sample that reaches it."""
    n = len(logits[0])
    taken = np.full(n, len(logits) - 1)
    cls = np.zeros(n, dtype=np.int64)
    pending = np.ones(n, dtype=bool)
    decisions = []
    for k, (ex, z) in enumerate(zip(ir.exits, logits)):
        spec = ex.decision
        final = k == len(logits) - 1
        mode = MODE_THRESHOLD if modes is None else modes[k]
        t = spec.threshold_register(thresholds[k]) if not final else 1
        d = decide(spec, z, t, mode)
        decisions.append(d)
        leave = pending & (d.exit | final)
        taken[leave] = k
        cls[leave] = d.cls[leave]
        pending &= ~leave
    return Cascade(exit=taken, cls=cls, decisions=decisions)

