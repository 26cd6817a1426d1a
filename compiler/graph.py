"""The hardware graph: the IR lowered onto exitgate.hw stages.

`lower(ir, weights)` fuses each arithmetic node with the requantiser that follows it and gives
every stage a *level*: the number of exit decisions a sample has passed (and continued past)
before it reaches the stage. Level-0 stages see every sample; level-k stages see only the
samples that continued past exits 0..k-1. Between a level-k backbone stage and the level-(k+1)
stage it feeds, the accelerator holds the feature map in a conditional buffer until exit k's
decision arrives.

Stage kinds (their parameters are what the hw block's constructor takes):

    conv      Conv2dStage   (IR conv2d + requant)
    pool      MaxPool2x2    (IR maxpool)
    linear    LinearStage   (IR linear [+ requant]; raw logits when it is an exit's output)
    decision  ExitDecision  (one per exit)

`Stage.src` names the stage feeding this one (None: the pixel input). The flatten node
disappears: LinearStage reads the (C, H, W) stream and orders its weights accordingly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ExitgateError
from ..quant.ir import IR, exit_users

__all__ = ["Fold", "Stage", "HwGraph", "lower", "baseline"]


@dataclass(frozen=True)
class Fold:
    """Folding of a conv/linear stage: ``pe`` output lanes computed in parallel, ``simd`` inputs
    consumed per cycle, ``out_lanes`` values per output beat (divides pe; raw logits: 1);
    ``soft``: how many of the ``pe`` rows have their ``simd`` multipliers in logic (LUTs), not
    DSPs (0: none)."""

    pe: int = 1
    simd: int = 1
    out_lanes: int = 1
    soft: int = 0           # PE rows whose products are in logic, not DSPs (MVU ``soft``)

    def __str__(self):
        return f"PE{self.pe}xSIMD{self.simd}/{self.out_lanes}" + (
            f" soft{self.soft}" if self.soft else "")


@dataclass(frozen=True)
class Stage:
    name: str
    kind: str
    level: int
    src: str | None
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: dict = field(default_factory=dict, compare=False)
    fold: Fold = Fold()
    exit: int | None = None          # decision stages, and the linear stage producing the logits
    nodes: tuple[str, ...] = ()      # IR nodes it implements

    @property
    def macs(self) -> int:
        if self.kind == "conv":
            return int(np.prod(self.out_shape)) * self.in_shape[0] * 9
        if self.kind == "linear":
            return int(self.out_shape[0]) * int(np.prod(self.in_shape))
        return 0


@dataclass(frozen=True)
class HwGraph:
    stages: tuple[Stage, ...]
    exits: int
    input_bits: int
    input_shape: tuple[int, int, int]
    classes: int
    #: a SkidBuffer after every conv / linear / pool stage (codegen), so no ready path spans two
    #: stages (Fmax); compile drops them on a board they do not fit (area)
    skids: bool = True
    #: the MVUs' deep pipeline (`exitgate.hw.mvu.MatrixVectorUnit` ``deep``: an input skid
    #: buffer, a second operand register and an adder-tree register after every level), chosen
    #: per board by compile (`exitgate.boards.profiles.BoardProfile.deep_mvu`): more latency and
    #: flip-flops, shorter paths
    deep: bool = False
    #: iCE40UP5K SPRAM blocks the decision units may keep their logits in (`ExitDecision`
    #: ``store="ram"``; `exitgate.compiler.codegen.logit_ram`), from the board's budget: 0 where
    #: the device has none
    spram: int = 0
    #: a SkidBuffer after each decision unit even without the others (``skids=False``): its
    #: result payload is narrow, and its ``ready`` would otherwise run from the exit merge
    #: through the unit's divider enables into the next exit's (Fmax); compile sets it where
    #: the other skid buffers do not fit but these do
    decision_skids: bool = False

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def consumers(self, name: str | None) -> list[Stage]:
        return [s for s in self.stages if s.src == name]

    def buffer_before(self, stage: Stage) -> int | None:
        """k if a conditional buffer (holding samples until exit k decides) feeds `stage`: its
        input crosses from level k to level k+1. None otherwise."""
        if stage.kind == "decision" or stage.src is None:
            return None
        k = self.stage(stage.src).level
        return k if stage.level > k else None

    def skid_after(self, stage: Stage) -> bool:
        """Whether a SkidBuffer follows ``stage``'s output (codegen ``skid_<name>``): after every
        stage with ``skids``, and after a pool stage with one consumer always (with several,
        `fork_skids`). A pool's beat is narrow (a few flip-flops a buffer), and without one its
        consumers' ``ready`` ran through the pool's enables into its counters and on into the
        stage before (Fmax: on the iCE40UP5K, where the other skid buffers do not fit)."""
        return self.skids or (stage.kind == "pool" and len(self.consumers(stage.name)) == 1)

    def fork_skids(self, src: str | None) -> bool:
        """Whether each output of the fork after ``src`` (a source with several consumers; None:
        the pixel input) goes through a SkidBuffer (codegen ``skid_fork_<src>_<k>``): with
        ``skids``, and after a pool always (see `skid_after`: the fork's ``ready`` is then an
        AND of registers)."""
        return self.skids or (src is not None and self.stage(src).kind == "pool")

    def with_skids(self, skids: bool) -> "HwGraph":
        return replace(self, skids=bool(skids))

    def with_deep(self, deep: bool) -> "HwGraph":
        return replace(self, deep=bool(deep))

    def with_spram(self, blocks: int) -> "HwGraph":
        return replace(self, spram=int(blocks))

    def with_decision_skids(self, on: bool) -> "HwGraph":
        return replace(self, decision_skids=bool(on))

    def with_folds(self, folds: dict[str, Fold]) -> "HwGraph":
        return replace(self, stages=tuple(replace(s, fold=folds.get(s.name, s.fold))
                                          for s in self.stages))

    def table(self) -> str:
        rows = [f"{'stage':<10} {'kind':<8} {'level':>5} {'in':>12} {'out':>12} {'fold':>12}"]
        for s in self.stages:
            rows.append(f"{s.name:<10} {s.kind:<8} {s.level:>5} {str(s.in_shape):>12} "
                        f"{str(s.out_shape):>12} {str(s.fold):>12}")
        return "\n".join(rows)


def _unsupported(node, why) -> ExitgateError:
    return ExitgateError(f"cannot map IR node {node.name} ({node.op}, from {node.source or '?'}) "
                         f"to hardware: {why}")


def lower(ir: IR, weights: dict) -> HwGraph:
    """IR -> HwGraph (see module docstring). Raises ExitgateError for what hw cannot build."""
    users = exit_users(ir)
    consumers: dict[str, list] = {n.name: [] for n in ir.nodes}
    for n in ir.nodes:
        for i in n.inputs:
            consumers[i].append(n)
    exit_of = {e.node: e.index for e in ir.exits}
    inp = ir.input
    if len(inp.shape) != 3 or inp.shape[0] != 1:
        raise _unsupported(inp, f"the input must be one channel (1, H, W), got {inp.shape}")
    if inp.signed or inp.bits > 16:
        raise _unsupported(inp, "the input must be unsigned, at most 16 bits")
    stages: list[Stage] = []
    stage_of: dict[str, str] = {inp.name: None}   # IR node -> name of the stage producing it

    def level(node):
        return min(users[node.name]) if users[node.name] else None

    for node in ir.nodes[1:]:
        if not users[node.name]:
            continue  # feeds no exit: dead code
        src = stage_of.get(node.inputs[0], "missing")
        if src == "missing":
            raise _unsupported(node, "its input is not produced by a hardware stage")
        a = node.attrs
        prev = ir.node(node.inputs[0])
        if node.op == "flatten":
            stage_of[node.name] = src
            continue
        if node.op == "requant":
            if prev.op in ("conv2d", "linear") and len(consumers[prev.name]) == 1:
                continue  # fused into the stage of prev (below)
            raise _unsupported(node, "a requantiser must directly follow a conv2d or linear")
        name = f"s{sum(1 for s in stages if s.kind != 'decision')}"
        if node.op in ("conv2d", "linear"):
            if node.op == "conv2d" and (a["kernel"], a["padding"], a["stride"]) != (3, 1, 1):
                raise _unsupported(node, "only 3x3 convolutions with padding 1, stride 1")
            params = {"weight": a["weight"], "bias": a.get("bias"), "weight_bits": a["weight_bits"],
                      "in_bits": prev.bits, "in_signed": prev.signed, "acc_bits": node.bits}
            nxt = consumers[node.name]
            out, implemented = node, (node.name,)
            if len(nxt) == 1 and nxt[0].op == "requant":
                rq = nxt[0]
                params.update(shift=rq.attrs["shift"], relu=rq.attrs["relu"], out_bits=rq.bits,
                              out_signed=rq.signed)
                out, implemented = rq, (node.name, rq.name)
            elif node.name in exit_of:
                params.update(shift=None)
            else:
                raise _unsupported(node, "its accumulator must be requantised or be an exit's logits")
            in_shape = ir.node(prev.inputs[0]).shape if prev.op == "flatten" else prev.shape
            if len(in_shape) == 1:  # a vector (hidden layer output) streams as (F, 1, 1)
                in_shape = (in_shape[0], 1, 1)
            kind = "conv" if node.op == "conv2d" else "linear"
            st = Stage(name, kind, level(node), src, tuple(in_shape), tuple(out.shape), params,
                       exit=exit_of.get(out.name), nodes=implemented)
            stages.append(st)
            stage_of[out.name] = name
            stage_of[node.name] = name
            if out.name in exit_of:
                k = exit_of[out.name]
                stages.append(Stage(f"d{k}", "decision", level(out), name, out.shape, (1,),
                                    {"logit_bits": node.bits,
                                     "decision": ir.exits[k].decision.to_dict()},
                                    exit=k, nodes=()))
        elif node.op == "maxpool":
            st = Stage(name, "pool", level(node), src, prev.shape, node.shape,
                       {"bits": node.bits, "signed": node.signed}, nodes=(node.name,))
            stages.append(st)
            stage_of[node.name] = name
        else:
            raise _unsupported(node, f"op {node.op} has no hardware stage")
    decided = {s.exit for s in stages if s.kind == "decision"}
    missing = [e.index for e in ir.exits if e.index not in decided]
    if missing:
        raise ExitgateError(f"exit {missing[0]}: its logits must come from a linear layer "
                            "(QuantLinear without a requantiser after it)")
    return HwGraph(stages=tuple(stages), exits=len(ir.exits), input_bits=inp.bits,
                   input_shape=tuple(inp.shape), classes=ir.exits[0].decision.classes)


def baseline(graph: HwGraph) -> HwGraph:
    """The no-exit baseline: only the stages the final exit needs, all at level 0, one exit."""
    final = next(s for s in graph.stages if s.kind == "decision" and s.exit == graph.exits - 1)
    keep, name = set(), final.name
    while name is not None:
        keep.add(name)
        name = graph.stage(name).src
    stages = tuple(replace(s, level=0, exit=0 if s.exit == graph.exits - 1 else None)
                   for s in graph.stages if s.name in keep)
    return replace(graph, stages=stages, exits=1)
