"""The integer IR: the contract between quant/ and compiler/ (numpy only, no torch).

``ir.json`` (format "exitgate-ir", versioned) is a graph of nodes in topological order. Every node
describes its output tensor: ``shape`` (C, H, W) or (F,), and the integer format ``bits``,
``signed`` and ``exp`` (value = integer * 2**exp). Ops and their attributes:

    input     (no inputs)  the quantised input; the pixel stream carries these integers
    conv2d    weight, bias (names in weights.npz), kernel, padding, stride, weight_bits,
              weight_exp; output is the accumulator (exp = input exp + weight_exp), whose `bits`
              follow from the bound sum|w|*max|x| + |b| so it cannot overflow
    linear    as conv2d, over a flattened input (PyTorch order: c*H*W + h*W + w)
    requant   shift (right shift with the rounding rule; <= 0 is a left shift), relu;
              output = clamp(shift_round(x, shift)) to bits/signed
    maxpool   kernel, stride (2, 2)
    flatten

``exits`` lists, per exit in order, the node whose integer output is that exit's logits and the
fixed-point decision parameters (`exitgate.numerics.DecisionSpec`). ``weights.npz`` holds int64
arrays: weights (O, I, K, K) or (O, I), biases (O,).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ExitgateError
from ..numerics import ROUNDING, DecisionSpec

__all__ = ["IR_FORMAT", "IR_VERSION", "OPS", "Node", "Exit", "IR", "load_ir", "save_ir",
           "exit_users", "macs_of"]

IR_FORMAT = "exitgate-ir"
IR_VERSION = 1
OPS = ("input", "conv2d", "linear", "requant", "maxpool", "flatten")
_COMMON = ("name", "op", "inputs", "shape", "bits", "signed", "exp", "source")


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    bits: int
    signed: bool
    exp: int
    attrs: dict = field(default_factory=dict)
    source: str = ""   # the module it came from, for messages

    def to_dict(self) -> dict:
        d = {"name": self.name, "op": self.op, "inputs": list(self.inputs),
             "shape": list(self.shape), "bits": self.bits, "signed": self.signed,
             "exp": self.exp, "source": self.source}
        d.update(self.attrs)
        return d


@dataclass(frozen=True)
class Exit:
    index: int
    node: str
    decision: DecisionSpec


@dataclass(frozen=True)
class IR:
    nodes: tuple[Node, ...]
    exits: tuple[Exit, ...]
    meta: dict = field(default_factory=dict)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def input(self) -> Node:
        return self.nodes[0]

    def to_dict(self) -> dict:
        return {"format": IR_FORMAT, "version": IR_VERSION, "rounding": ROUNDING,
                "meta": self.meta, "nodes": [n.to_dict() for n in self.nodes],
                "exits": [{"index": e.index, "node": e.node, "decision": e.decision.to_dict()}
                          for e in self.exits]}


def _bad(path, msg) -> ExitgateError:
    return ExitgateError(f"{path}: {msg}")


def ir_from_dict(d: dict, path="ir.json") -> IR:
    """Validate and build an IR; every problem is an ExitgateError naming the file and the field."""
    if not isinstance(d, dict) or d.get("format") != IR_FORMAT:
        raise _bad(path, f"not an exitgate IR (format must be {IR_FORMAT!r})")
    version = d.get("version")
    if not isinstance(version, int) or version > IR_VERSION or version < 1:
        raise _bad(path, f"IR version {version!r} is not supported; this exitgate reads version "
                         f"{IR_VERSION} (upgrade exitgate, or re-export the model)")
    if d.get("rounding") != ROUNDING:
        raise _bad(path, f"rounding {d.get('rounding')!r} is not supported; only {ROUNDING!r}")
    try:
        nodes, seen = [], set()
        for i, nd in enumerate(d["nodes"]):
            if nd["op"] not in OPS:
                raise _bad(path, f"nodes[{i}]: unknown op {nd['op']!r}; known: {', '.join(OPS)}")
            missing = [x for x in nd["inputs"] if x not in seen]
            if missing:
                raise _bad(path, f"nodes[{i}] ({nd['name']}): input {missing[0]!r} is not an "
                                 "earlier node")
            if (nd["op"] == "input") != (i == 0):
                raise _bad(path, "the first node, and only it, must be the input")
            nodes.append(Node(name=str(nd["name"]), op=nd["op"], inputs=tuple(nd["inputs"]),
                              shape=tuple(int(s) for s in nd["shape"]), bits=int(nd["bits"]),
                              signed=bool(nd["signed"]), exp=int(nd["exp"]),
                              source=str(nd.get("source", "")),
                              attrs={k: v for k, v in nd.items() if k not in _COMMON}))
            seen.add(nd["name"])
        exits = []
        for i, e in enumerate(d["exits"]):
            if e["node"] not in seen:
                raise _bad(path, f"exits[{i}]: node {e['node']!r} does not exist")
            exits.append(Exit(index=int(e["index"]), node=e["node"],
                              decision=DecisionSpec.from_dict(e["decision"])))
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, ExitgateError):
            raise
        raise _bad(path, f"malformed IR ({type(err).__name__}: {err})") from None
    if len(exits) < 1:
        raise _bad(path, "the IR has no exits")
    return IR(nodes=tuple(nodes), exits=tuple(exits), meta=dict(d.get("meta", {})))


def save_ir(ir: IR, weights: dict[str, np.ndarray], out_dir: Path) -> None:
    """Write ``ir.json`` and ``weights.npz`` atomically (temp file, then rename)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "ir.json.tmp"
    tmp.write_text(json.dumps(ir.to_dict(), indent=1))
    tmp_w = out_dir / "weights.tmp.npz"
    np.savez(tmp_w, **{k: np.asarray(v, dtype=np.int64) for k, v in weights.items()})
    tmp_w.replace(out_dir / "weights.npz")
    tmp.replace(out_dir / "ir.json")


def load_ir(run_dir: Path) -> tuple[IR, dict[str, np.ndarray]]:
    """Read RUN/ir.json and RUN/weights.npz, checking that every named array is there."""
    run_dir = Path(run_dir)
    path, wpath = run_dir / "ir.json", run_dir / "weights.npz"
    for p in (path, wpath):
        if not p.is_file():
            raise ExitgateError(f"{p} is missing: run `exitgate train --out {run_dir}` "
                                "(or export_ir) first")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _bad(path, f"is not valid JSON ({e}); re-run `exitgate train`") from None
    ir = ir_from_dict(d, path)
    try:
        with np.load(wpath) as z:
            weights = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile/pickle/OS errors of a corrupt file
        raise _bad(wpath, f"is corrupt or truncated ({type(e).__name__}); re-run `exitgate train`"
                   ) from None
    for n in ir.nodes:
        for key in ("weight", "bias"):
            name = n.attrs.get(key)
            if name is not None and name not in weights:
                raise _bad(wpath, f"array {name!r} needed by node {n.name} is missing")
    return ir, weights


def exit_users(ir: IR) -> dict[str, frozenset[int]]:
    """For every node, the exits whose logits depend on it."""
    users = {n.name: set() for n in ir.nodes}
    for e in ir.exits:
        stack = [e.node]
        while stack:
            name = stack.pop()
            if e.index not in users[name]:
                users[name].add(e.index)
                stack.extend(ir.node(name).inputs)
    return {k: frozenset(v) for k, v in users.items()}


def macs_of(node: Node, ir: IR) -> int:
    """Multiply-accumulates one sample costs at this node (0 for non-arithmetic ops)."""
    if node.op == "conv2d":
        cin = ir.node(node.inputs[0]).shape[0]
        k = node.attrs["kernel"]
        return int(np.prod(node.shape)) * cin * k * k
    if node.op == "linear":
        return int(node.shape[0]) * int(np.prod(ir.node(node.inputs[0]).shape))
    return 0
