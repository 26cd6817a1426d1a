"""export_ir: any Brevitas multi-exit model built from supported layers -> ir.json + weights.npz.

The graph is recovered by running the model once with forward hooks on its layers and joining
each layer's input to the layer whose output it is (tensor identity), so models need not come
from our zoo: any nn.Module whose forward returns one logits tensor per exit works, provided
every tensor between layers is produced by a supported layer (no functional calls such as
``torch.flatten`` or ``x.view`` in forward: use ``nn.Flatten``).

Supported layers: QuantIdentity, QuantConv2d, QuantReLU, MaxPool2d, Flatten, QuantLinear (and
nn.Identity as a pass-through). All quantisers must be per-tensor with power-of-two scales and
zero points of 0, rounding half to even (Brevitas' default ``RoundSte``).

Float32 exactness: Brevitas computes in float32 on dequantised values. Every value is an integer
times a power of two, so products and sums are exact while every partial sum stays below 2**24
in units of the accumulator's scale. The exporter computes that bound for every layer
(``bound`` in the IR; ``meta.float32_exact``); `brevitas_int_logits` runs in float64 when any
bound is larger, where the limit is 2**53.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from torch import nn

from ..errors import ExitgateError
from ..numerics import DecisionSpec, bits_for_range, int_range
from .ir import IR, Exit, Node, save_ir

__all__ = ["export_ir", "trace_ir", "brevitas_int_logits", "SUPPORTED_LAYERS"]

SUPPORTED_LAYERS = ("QuantIdentity", "QuantConv2d", "QuantReLU", "MaxPool2d", "Flatten",
                    "QuantLinear", "Identity")
_ATOMIC = (QuantIdentity, QuantConv2d, QuantReLU, QuantLinear, nn.MaxPool2d, nn.Flatten,
           nn.Identity)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
FLOAT32_LIMIT = 2**24


def _unsupported(name, module, why=""):
    return ExitgateError(
        f"layer {name!r} ({type(module).__name__}) is not supported{': ' + why if why else ''}; "
        f"supported layers: {', '.join(SUPPORTED_LAYERS)}")


def _exp_of(scale, what: str) -> int:
    s = torch.as_tensor(scale).detach().double().flatten()
    if s.numel() != 1:
        raise ExitgateError(f"{what}: per-channel scales are not supported; use a per-tensor "
                            "fixed-point quantiser (e.g. Int8WeightPerTensorFixedPoint)")
    e = math.log2(float(s[0]))
    if abs(e - round(e)) > 1e-9:
        raise ExitgateError(f"{what}: scale {float(s[0])!r} is not a power of two; use Brevitas "
                            "fixed-point quantisers (*FixedPoint)")
    return int(round(e))


def _qt_format(qt, what: str) -> tuple[int, bool, int]:
    if not hasattr(qt, "scale") or qt.scale is None:
        raise ExitgateError(f"{what}: output is not quantised (a QuantTensor is needed: set "
                            "return_quant_tensor=True and give the layer a quantiser)")
    if torch.any(torch.as_tensor(qt.zero_point) != 0):
        raise ExitgateError(f"{what}: non-zero zero point; only symmetric/unsigned quantisers "
                            "with zero point 0 are supported")
    return int(qt.bit_width), bool(qt.signed), _exp_of(qt.scale, what)


def _modules(model: nn.Module):
    """(name, module) for every atomic layer, plus unsupported leaves (to reject if called)."""
    out = []

    def walk(prefix, mod):
        for name, child in mod.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, _ATOMIC):
                out.append((full, child))
            elif isinstance(child, _CONTAINERS) or any(True for _ in child.children()):
                walk(full, child)
            else:
                out.append((full, child))
    walk("", model)
    return out


def _acc_node(name, module, call_in, in_node, out_qt, op, idx, weights):
    what = f"layer {name!r}"
    for proxy in ("input_quant", "output_quant"):
        p = getattr(module, proxy, None)
        if p is not None and p.is_quant_enabled:
            raise _unsupported(name, module, f"{proxy} inside the layer; quantise with a "
                                             "separate QuantIdentity/QuantReLU instead")
    if op == "conv2d":
        k, s, p = module.kernel_size, module.stride, module.padding
        if (module.groups != 1 or tuple(module.dilation) != (1, 1) or k[0] != k[1]
                or s[0] != s[1] or isinstance(p, str) or p[0] != p[1]
                or module.padding_mode != "zeros"):
            raise _unsupported(name, module, "only square kernels, equal strides, symmetric zero "
                                             "padding, groups=1 and dilation=1")
    qw = module.quant_weight()
    w_exp = _exp_of(qw.scale, f"{what} weights")
    w_int = torch.round(qw.value.detach().double() / float(qw.scale.detach())).long().numpy()
    w_bits = int(qw.bit_width)
    b_int = None
    if module.bias is not None:
        qb = module.bias_quant(module.bias, call_in, qw)
        b_exp = _exp_of(qb.scale, f"{what} bias")
        if b_exp != in_node.exp + w_exp:
            raise ExitgateError(f"{what}: bias scale 2^{b_exp} differs from the accumulator scale "
                                f"2^{in_node.exp + w_exp}; use an accumulator-scale bias "
                                "quantiser (Int16Bias, Int32Bias)")
        b_int = torch.round(qb.value.detach().double() / float(qb.scale.detach())).long().numpy()
    lo, hi = int_range(in_node.bits, in_node.signed)
    w2 = w_int.reshape(len(w_int), -1)
    top = np.maximum(w2 * lo, w2 * hi).sum(1)
    bot = np.minimum(w2 * lo, w2 * hi).sum(1)
    if b_int is not None:
        top, bot = top + b_int, bot + b_int
    bound = int(max(abs(int(bot.min())), abs(int(top.max()))))
    acc_exp = in_node.exp + w_exp
    out_exp = _exp_of(out_qt.scale, f"{what} output") if hasattr(out_qt, "scale") else acc_exp
    if out_exp != acc_exp:
        raise ExitgateError(f"{what}: output scale 2^{out_exp} is not the accumulator scale")
    attrs = {"weight": f"{idx}.weight", "weight_bits": w_bits, "weight_exp": w_exp,
             "bound": bound}
    weights[f"{idx}.weight"] = w_int
    if b_int is not None:
        attrs["bias"] = f"{idx}.bias"
        weights[f"{idx}.bias"] = b_int
    if op == "conv2d":
        attrs.update(kernel=int(module.kernel_size[0]), padding=int(module.padding[0]),
                     stride=int(module.stride[0]))
    shape = tuple(int(s) for s in _value(out_qt).shape[1:])
    return Node(name=idx, op=op, inputs=(in_node.name,), shape=shape,
                bits=bits_for_range(int(bot.min()), int(top.max())), signed=True, exp=acc_exp,
                attrs=attrs, source=name)


def _value(t):
    return t.value if hasattr(t, "value") else t


def trace_ir(model: nn.Module, example_input: torch.Tensor, decision: dict | None = None):
    """Build (IR, weights) from a Brevitas multi-exit model and one example batch."""
    model = model.eval()
    calls, entered, keep, handles = [], [], [], []
    for name, mod in _modules(model):
        def hook(m, args, out, name=name):
            calls.append((name, m, args[0] if args else None, out))
            keep.append((args, out))  # keep tensors alive so ids stay unique
        def pre_hook(m, args, name=name):
            entered.append((name, m, args[0] if args else None))
        handles.append(mod.register_forward_hook(hook))
        handles.append(mod.register_forward_pre_hook(pre_hook))
    failure = None
    try:
        with torch.no_grad():
            outputs = model(example_input)
    except Exception as e:  # report the first unsupported construct seen, else the failure
        failure, outputs = e, None
    finally:
        for h in handles:
            h.remove()
    for name, mod, x in entered:
        if not isinstance(mod, _ATOMIC):
            raise _unsupported(name, mod)
        if x is example_input and not isinstance(mod, QuantIdentity):
            raise ExitgateError(f"the input must first go through a QuantIdentity "
                                f"(found {type(mod).__name__} {name!r})")
    if failure is not None:
        raise ExitgateError(f"the model's forward failed during export "
                            f"({type(failure).__name__}: {failure})")
    if not isinstance(outputs, (list, tuple)) or len(outputs) < 1:
        raise ExitgateError("the model's forward must return a list or tuple with one logits "
                            "tensor per exit")
    nodes: list[Node] = []
    by_id: dict[int, Node] = {}
    weights: dict[str, np.ndarray] = {}
    for name, mod, x, out in calls:
        idx = f"n{len(nodes)}"
        what = f"layer {name!r}"
        if x is example_input:
            if not isinstance(mod, QuantIdentity) or nodes:
                raise ExitgateError(f"the input must first go through a QuantIdentity "
                                    f"(found {type(mod).__name__} {name!r})")
            bits, signed, exp = _qt_format(out, what)
            node = Node(idx, "input", (), tuple(int(s) for s in _value(out).shape[1:]), bits,
                        signed, exp, source=name)
        elif id(x) not in by_id:
            raise ExitgateError(f"the input of {what} ({type(mod).__name__}) does not come from a "
                                "supported layer: a functional call in forward (torch.flatten, "
                                "x.view, +) or an unsupported layer; use nn.Flatten and the "
                                f"supported layers ({', '.join(SUPPORTED_LAYERS)})")
        else:
            src = by_id[id(x)]
            if isinstance(mod, nn.Identity):
                by_id[id(out)] = src
                continue
            if isinstance(mod, (QuantIdentity, QuantReLU)):
                bits, signed, exp = _qt_format(out, what)
                node = Node(idx, "requant", (src.name,), src.shape, bits, signed, exp,
                            attrs={"shift": exp - src.exp,
                                   "relu": isinstance(mod, QuantReLU)}, source=name)
            elif isinstance(mod, QuantConv2d):
                node = _acc_node(name, mod, x, src, out, "conv2d", idx, weights)
            elif isinstance(mod, QuantLinear):
                if len(src.shape) != 1:
                    raise ExitgateError(f"{what}: QuantLinear needs a flattened input "
                                        "(put nn.Flatten before it)")
                node = _acc_node(name, mod, x, src, out, "linear", idx, weights)
            elif isinstance(mod, nn.MaxPool2d):
                k, s = mod.kernel_size, mod.stride
                if (k not in (2, (2, 2)) or s not in (2, (2, 2)) or mod.padding not in (0, (0, 0))
                        or mod.dilation not in (1, (1, 1)) or mod.ceil_mode):
                    raise _unsupported(name, mod, "only MaxPool2d(2) (kernel 2, stride 2)")
                node = Node(idx, "maxpool", (src.name,),
                            tuple(int(v) for v in _value(out).shape[1:]), src.bits, src.signed,
                            src.exp, attrs={"kernel": 2, "stride": 2}, source=name)
            else:  # nn.Flatten
                if mod.start_dim != 1 or mod.end_dim != -1:
                    raise _unsupported(name, mod, "only Flatten(start_dim=1)")
                node = Node(idx, "flatten", (src.name,), (int(np.prod(src.shape)),), src.bits,
                            src.signed, src.exp, source=name)
        nodes.append(node)
        by_id[id(out)] = node
    if not nodes or nodes[0].op != "input":
        raise ExitgateError("the model has no QuantIdentity on its input")
    exits = []
    for i, o in enumerate(outputs):
        if id(o) not in by_id:
            raise ExitgateError(f"exit {i}: the returned tensor does not come from a supported "
                                "layer (return the last QuantLinear's output)")
        node = by_id[id(o)]
        if len(node.shape) != 1:
            raise ExitgateError(f"exit {i}: logits must be a vector per sample, got {node.shape}")
        exits.append(Exit(i, node.name, DecisionSpec(classes=node.shape[0],
                                                     logit_frac_bits=-node.exp,
                                                     **(decision or {}))))
    bound = max([n.attrs.get("bound", 0) for n in nodes])
    meta = {"max_accumulator_bound": bound, "float32_exact": bound <= FLOAT32_LIMIT}
    return IR(nodes=tuple(nodes), exits=tuple(exits), meta=meta), weights


def export_ir(model: nn.Module, example_input: torch.Tensor, out_dir, decision: dict | None = None,
              meta: dict | None = None) -> IR:
    """Trace `model` on `example_input` and write ``out_dir/ir.json`` + ``out_dir/weights.npz``.

    `decision` overrides DecisionSpec defaults (lut_frac_bits, exp_bits, threshold_bits).
    """
    ir, weights = trace_ir(model, example_input, decision)
    if meta:
        ir = IR(ir.nodes, ir.exits, {**ir.meta, **meta})
    save_ir(ir, weights, Path(out_dir))
    return ir


def brevitas_int_logits(model: nn.Module, x: torch.Tensor, ir: IR, batch: int = 512):
    """The Brevitas model's logits per exit as integers (value / 2**exp), checked integral.

    Runs in float64 when the IR says float32 could round (see module docstring)."""
    model = model.eval()
    dtype = torch.float32 if ir.meta.get("float32_exact", True) else torch.float64
    model = model.to(dtype)
    outs = [[] for _ in ir.exits]
    with torch.no_grad():
        for i in range(0, len(x), batch):
            for k, o in enumerate(model(x[i:i + batch].to(dtype))):
                v = _value(o).double() * 2.0 ** -ir.node(ir.exits[k].node).exp
                r = torch.round(v)
                if torch.any((v - r).abs() > 1e-6):
                    raise AssertionError(f"exit {k}: Brevitas logits are not integers at the "
                                         "IR's scale")
                outs[k].append(r.long().numpy())
    model.to(torch.float32)
    return [np.concatenate(o) for o in outs]
