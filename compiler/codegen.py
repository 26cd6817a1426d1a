"""Codegen: an HwGraph (with folds) + integer weights -> the accelerator, an Amaranth Component
with `exitgate.hw.interface.accelerator_signature`, and its Verilog.

Wiring (per exit k, level k = samples that continued past exits 0..k-1):

    pixels -> level-0 stages -> ... -> branch stage (output of segment k)
    (every conv / linear / pool stage's, every fork output's, every id tagger's, every decision
    unit's and every conditional buffer's output passes a SkidBuffer, so no ready path spans two
    stages; unless the graph says ``skids=False``, for a board they do not fit)
                                          |-> fork -> exit-k head stages -> IdTagger -> ExitDecision_k
                                          |-> fork -> ConditionalBuffer_k -> level-(k+1) stages
    ExitDecision_k -> DecisionRouter_k -> ConditionalBuffer_k.decision  (exit / continue)
                                       -> ExitMerge input k            (if the sample exits)
                                       -> id FIFO -> IdTagger_{k+1}    (if it continues)

With ``taps=True`` the accelerator also counts its own activity (`activity_units`): per stage,
per conditional buffer and per decision unit, the handshakes on its input and output streams,
its MAC-active cycles and weight-ROM read enables, and the cycles it was active, in 40-bit
counters on the observation-only output port ``activity`` (Verilog ports
``activity__<unit>__<counter>``). The synthesised design (``taps=False``) has none of it.

Sample ids come from a counter at exit 0 (every sample reaches it, in order) and travel to later
exits through the id FIFOs. The final exit's decision unit runs in always-exit mode; `ctrl`
writes to the final exit are ignored (a sample must always leave somewhere).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.lib.fifo import SyncFIFOBuffered

from ..hw.cond_buffer import ConditionalBuffer
from ..hw.conv import Conv2dStage
from ..hw.conv_frame import FrameConv2dStage
from ..hw.decision import ExitDecision, spram_blocks
from ..hw.interface import accelerator_signature
from ..hw.linear import LinearStage
from ..hw.merge import ExitMerge
from ..hw.plumbing import DecisionRouter, IdCounter, IdTagger, SkidBuffer, StreamFork
from ..hw.pool import MaxPool2x2
from ..hw.stream import activation_layout, activation_signature, beats_of
from ..numerics import MODE_ALWAYS, MODE_THRESHOLD, DecisionSpec
from .graph import HwGraph, Stage

__all__ = ["Accelerator", "analysis_block", "build_block", "build_blocks", "emit_verilog",
           "activity_units", "ACTIVITY_WIDTH", "conv_impl", "decision_store", "decision_unit",
           "logit_ram",
           "FRAME_MAX_BITS"]

#: largest double-buffered input frame (2 x C*H*W x in_bits) a SIMD-1 conv keeps in memory
#: (`conv_impl`): 16 kbit, four iCE40 block RAMs or one ECP5 DP16KD
FRAME_MAX_BITS = 16384

#: bits of each activity counter (taps only): 2**40 cycles is > 12 hours at 25 MHz
ACTIVITY_WIDTH = 40


def conv_impl(stage: Stage, in_lanes: int, in_bits: int) -> str:
    """Which block implements a conv stage: ``"frame"`` (`FrameConv2dStage`: the input frame in
    one memory, the MVU reading its operands from it) when the stage takes one value a cycle
    (SIMD 1, one input lane) and its double-buffered frame fits in `FRAME_MAX_BITS`, else
    ``"window"`` (`Conv2dStage`: line buffer, sliding window and window buffer). Same results
    and cycles per sample; the frame needs none of the window's (K-1) x C column registers, the
    bulk of a small conv's flip-flops."""
    c, h, w = stage.in_shape
    small = 2 * c * h * w * in_bits <= FRAME_MAX_BITS
    return "frame" if stage.fold.simd == 1 and in_lanes == 1 and small else "window"


@lru_cache(maxsize=1024)
def decision_store(spec: DecisionSpec, producer_cycles: float, ram: bool = False) -> str:
    """The decision unit's logit store (`ExitDecision` ``store``): with ``ram`` (`logit_ram`),
    ``"ram"`` (the logits in the board's SPRAM, no logit flip-flops) when its initiation
    interval keeps up with the stage that produces the logits (``producer_cycles`` per sample);
    else ``"single"`` (one copy of the logits in flip-flops, smaller) when that one keeps up;
    else ``"double"``. (Memoised: the folding search asks thousands of times.)"""
    for store in ("ram", "single") if ram else ("single",):
        unit = ExitDecision(spec, logit_width=2, id_width=1, threshold=1, store=store)
        unit._MustUse__silence = True
        if unit.initiation_interval <= producer_cycles:
            return store
    return "double"


def logit_ram(graph: HwGraph, logit_widths) -> bool:
    """Whether the decision units may keep their logits in SPRAM (``store="ram"``): the board
    has SPRAM (`HwGraph.spram` blocks) and it holds every unit's store (`spram_blocks` of each
    of ``logit_widths``, the units' logit widths), so that no unit's choice depends on
    another's."""
    return 0 < sum(spram_blocks(w) for w in logit_widths) <= graph.spram


def decision_unit(stage: Stage, logits_blk, *, id_width: int, threshold: int,
                  mode: int, deep: bool = False, ram: bool = False) -> ExitDecision:
    """The `ExitDecision` of a decision stage fed by ``logits_blk`` (its store by
    `decision_store`, ``ram`` from `logit_ram`; on deep boards, `HwGraph.deep`, with its
    saturation bound register)."""
    spec = DecisionSpec.from_dict(stage.params["decision"])
    return ExitDecision(spec, logit_width=logits_blk.acc_width, id_width=id_width,
                        threshold=threshold, mode=mode,
                        store=decision_store(spec, logits_blk.cycles_per_sample, ram),
                        bound=deep)


def build_block(stage: Stage, weights: dict, in_lanes: int, in_bits: int, in_signed: bool,
                deep: bool = False):
    """The hw block implementing one stage (not decision stages); ``deep``: the MVU's deep
    pipeline (`HwGraph.deep`). Raises ValueError (from the block's constructor) for a folding
    the block cannot take."""
    p, f = stage.params, stage.fold
    if stage.kind in ("conv", "linear"):
        cls = LinearStage if stage.kind == "linear" else (
            FrameConv2dStage if conv_impl(stage, in_lanes, in_bits) == "frame" else Conv2dStage)
        kw = dict(in_width=in_bits, in_signed=in_signed, weight_bits=p["weight_bits"],
                  pe=f.pe, simd=f.simd, in_lanes=in_lanes, deep=deep, soft=f.soft)
        if p.get("shift") is None:
            kw.update(shift=None)
        else:
            kw.update(shift=p["shift"], out_bits=p["out_bits"], out_signed=p["out_signed"],
                      relu=p["relu"], out_lanes=f.out_lanes)
        bias = weights[p["bias"]] if p.get("bias") else np.zeros(stage.out_shape[0], np.int64)
        return cls(weights[p["weight"]], bias, stage.in_shape, **kw)
    if stage.kind == "pool":
        return MaxPool2x2(stage.in_shape, lanes=in_lanes, width=in_bits, signed_data=in_signed)
    raise ValueError(f"no block for stage kind {stage.kind}")


def activity_units(graph: HwGraph) -> dict[str, tuple[str, ...]]:
    """The activity counters of an accelerator built with ``taps=True``: {unit: counters}.

    Units: every conv/linear/pool stage (``in``, ``out``: beats accepted / sent; ``active``:
    cycles with an input or output handshake or a MAC step; conv/linear also ``mac``: cycles in
    which the MVU performs PE x SIMD multiply-accumulates, and ``wrom_en``: cycles the weight ROM
    is read-enabled), every decision unit ``d<k>`` (``in``: logits accepted, ``out``: decisions
    made), every conditional buffer ``cbuf<k>`` (``in``: beats written, ``out``: beats read out
    for the next segment, ``active``) and ``all`` (``cycles`` since reset)."""
    units = {}
    for st in graph.stages:
        if st.kind == "decision":
            units[st.name] = ("in", "out")
            continue
        units[st.name] = ("in", "out", "active") + (("mac", "wrom_en") if st.kind in (
            "conv", "linear") else ())
        k = graph.buffer_before(st)
        if k is not None:
            units[f"cbuf{k}"] = ("in", "out", "active")
    units["all"] = ("cycles",)
    return units


def output_format(stage: Stage, in_fmt: tuple, acc_width: int | None) -> tuple:
    """(lanes, bits, signed) of a conv / linear / pool stage's output stream, given its input's
    and its accumulator width: a pool passes its input on, a logits stage sends one signed
    accumulator a beat, the rest their fold's ``out_lanes`` requantised values. The one rule
    codegen and the resource estimate (`exitgate.compiler.resources.design_blocks`) share."""
    if stage.kind == "pool":
        return in_fmt
    if stage.params.get("shift") is None:
        return (1, acc_width, True)
    return (stage.fold.out_lanes, stage.params["out_bits"], stage.params["out_signed"])


#: `analysis_block`'s memo: the weights dict it holds blocks for, and its blocks (or the
#: ValueError a folding raised) by stage and input format
_ANALYSIS: dict = {"weights": None, "blocks": {}}


def analysis_block(stage: Stage, weights: dict, in_lanes: int, in_bits: int, in_signed: bool,
                   deep: bool = False):
    """`build_block`'s block, for inspection only (cycles, latency, widths: never elaborated),
    shared by every call with the same stage, folding, input format and weight arrays. The
    folding search asks for the same few hundred blocks thousands of times, and building an
    Amaranth block (its signatures) was three quarters of `exitgate compile`'s time. The memo
    holds the blocks of one weights dict, the last one asked for; the IR's arrays are not
    changed in place. An entry keeps the arrays its key names by id, so no other array can
    take one of those ids while the entry is there."""
    if _ANALYSIS["weights"] is not weights:
        _ANALYSIS.update(weights=weights, blocks={})
    p = stage.params
    arrays = tuple(weights[p[k]] for k in ("weight", "bias") if p.get(k))
    key = (stage.kind, stage.in_shape, stage.out_shape, stage.fold, repr(p), in_lanes, in_bits,
           in_signed, deep, tuple(map(id, arrays)))
    hit = _ANALYSIS["blocks"].get(key)
    if hit is None:
        try:
            blk = build_block(stage, weights, in_lanes, in_bits, in_signed, deep)
            blk._MustUse__silence = True
        except ValueError as exc:
            blk = exc
        hit = _ANALYSIS["blocks"][key] = (arrays, blk)
    if isinstance(hit[1], ValueError):
        raise ValueError(*hit[1].args)
    return hit[1]


def build_blocks(graph: HwGraph, weights: dict, analysis: bool = False):
    """Every non-decision stage's hw block, and each stage's output format (lanes, bits, signed).
    The stream format of a stage's input is its source's output format (pixels: 1 lane).
    ``analysis=True``: the blocks are only inspected (timings, checks), never elaborated, and
    come from `analysis_block`'s memo."""
    blocks, fmt = {}, {None: (1, graph.input_bits, False)}
    for st in graph.stages:
        if st.kind == "decision":
            continue
        lanes, bits, sgn = fmt[st.src]
        make = analysis_block if analysis else build_block
        blk = blocks[st.name] = make(st, weights, lanes, bits, sgn, graph.deep)
        fmt[st.name] = output_format(st, fmt[st.src], getattr(blk, "acc_width", None))
    return blocks, fmt


class Accelerator(wiring.Component):
    """The generated early-exit accelerator (ports: see exitgate.hw.interface).

    graph: lowered and folded HwGraph. weights: the IR's integer arrays. thresholds: initial
    threshold register values t per non-final exit. buffer_depth: samples each conditional
    buffer holds. id_width: bits of the sample id. taps: also add, per exit k, an
    observation-only output port ``logits{k}`` (``valid``, ``ready``, ``payload``, all outputs)
    mirroring the logits stream entering ExitDecision k (payload {data: 1 signed logit, first,
    last, id}; a logit moves on a cycle where valid and ready are both high), and the activity
    counters of `activity_units` on an output port ``activity`` ({unit: {counter:
    ACTIVITY_WIDTH}}), for benches.
    """

    def __init__(self, graph: HwGraph, weights: dict, thresholds: list[int], *,
                 buffer_depth: int = 4, id_width: int = 8, taps: bool = False):
        if len(thresholds) != graph.exits - 1:
            raise ValueError(f"need {graph.exits - 1} threshold register values, got {thresholds}")
        self.graph, self.weights = graph, weights
        self.thresholds, self.buffer_depth, self.id_width = list(thresholds), buffer_depth, id_width
        self.blocks, self.formats = build_blocks(graph, weights)
        self.taps = taps
        sig = accelerator_signature(graph.input_bits, id_width, graph.exits, graph.classes)
        if taps:
            members = dict(sig.members.items())
            for st in graph.stages:
                if st.kind == "decision":
                    layout = activation_layout(1, self.blocks[st.src].acc_width,
                                               signed_data=True, id_width=id_width)
                    members[f"logits{st.exit}"] = Out(wiring.Signature({
                        "valid": Out(1), "ready": Out(1), "payload": Out(layout)}))
            members["activity"] = Out(wiring.Signature({
                unit: Out(wiring.Signature({c: Out(ACTIVITY_WIDTH) for c in counters}))
                for unit, counters in activity_units(graph).items()}))
            sig = wiring.Signature(members)
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        g = self.graph
        outputs = {None: wiring.flipped(self.pixels)}  # stage name -> its output stream
        stage_out = {}
        for name, blk in self.blocks.items():
            m.submodules[name] = blk
            stage_out[name] = self._skid(m, f"skid_{name}", blk.o, g.skid_after(g.stage(name)))
        # forks where a stage feeds several consumers
        taps: dict[tuple, object] = {}
        for src in [None] + [s.name for s in g.stages]:
            users = g.consumers(src)
            if src is not None and g.stage(src).kind == "decision":
                continue
            stream_out = outputs[src] if src is None else stage_out[src]
            if len(users) == 1:
                taps[(src, users[0].name)] = stream_out
            elif len(users) > 1:
                fork = StreamFork(stream_out.signature.flip() if src is None
                                  else stream_out.signature, len(users))
                m.submodules[f"fork_{src}"] = fork
                wiring.connect(m, stream_out, fork.i)
                # and each copy through a skid buffer: the fork's ready is then an AND of
                # registers, so one consumer's ready (the exit head's) does not run through the
                # fork into the other's write side (the conditional buffer's counters)
                for k, u in enumerate(users):
                    taps[(src, u.name)] = self._skid(m, f"skid_fork_{src}_{k}",
                                                     getattr(fork, f"o{k}"), g.fork_skids(src))
        events: dict[tuple[str, str], object] = {}  # (unit, counter) -> 1-bit event

        def fire(s):
            return s.valid & s.ready

        routers, merge_inputs = {}, {}
        id_sources = {0: None}
        ram = logit_ram(g, [self.blocks[st.src].acc_width for st in g.stages
                            if st.kind == "decision"])
        for st in g.stages:
            if st.kind != "decision":
                continue
            k = st.exit
            spec = DecisionSpec.from_dict(st.params["decision"])
            final = k == g.exits - 1
            logits_blk = self.blocks[st.src]
            dec = decision_unit(st, logits_blk, id_width=self.id_width, deep=g.deep, ram=ram,
                                threshold=1 << spec.threshold_bits if final else self.thresholds[k],
                                mode=MODE_ALWAYS if final else MODE_THRESHOLD)
            m.submodules[f"decision{k}"] = dec
            tag = IdTagger(stage_out[st.src].signature,
                           activation_signature(1, logits_blk.acc_width, signed_data=True,
                                                id_width=self.id_width), self.id_width)
            m.submodules[f"tag{k}"] = tag
            wiring.connect(m, taps[(st.src, st.name)], tag.i)
            # the tagged logits reach the decision unit through a skid buffer: its collect
            # stage's enables (a running max, compared as each logit arrives) start at a
            # register, not at the id queue's and the logit stage's valid
            wiring.connect(m, self._skid(m, f"skid_tag{k}", tag.o), dec.i)
            events[(st.name, "in")], events[(st.name, "out")] = fire(tag.o), fire(dec.o)
            if self.taps:
                tap = getattr(self, f"logits{k}")
                m.d.comb += [tap.valid.eq(tag.o.valid), tap.ready.eq(tag.o.ready),
                             tap.payload.eq(tag.o.payload)]
            if k == 0:
                m.submodules.ids0 = cnt = IdCounter(self.id_width)
                wiring.connect(m, cnt.o, tag.ids)
            else:
                id_sources[k] = tag.ids
            router = DecisionRouter(dec.o.payload.shape(), self.id_width, final=final)
            m.submodules[f"router{k}"] = router
            # the decision's ready path stops here (router, merge, buffers)
            wiring.connect(m, self._skid(m, f"skid_d{k}", dec.o, g.decision_skids), router.i)
            routers[k] = router
            merge_inputs[k] = router.result
            if not final:
                ctrl_hit = self.ctrl.we & (self.ctrl.exit == k)
                m.d.comb += [dec.threshold.eq(self.ctrl.threshold), dec.mode.eq(self.ctrl.mode),
                             dec.threshold_we.eq(ctrl_hit), dec.mode_we.eq(ctrl_hit)]
        # id FIFOs between consecutive exits
        for k in range(1, g.exits):
            fifo = SyncFIFOBuffered(width=self.id_width, depth=self.buffer_depth + 8)
            m.submodules[f"idq{k}"] = fifo
            wiring.connect(m, routers[k - 1].ids, fifo.w_stream)
            m.d.comb += [id_sources[k].payload.eq(fifo.r_data), id_sources[k].valid.eq(fifo.r_rdy),
                         fifo.r_en.eq(id_sources[k].ready)]
        # conditional buffers on edges that cross a level, then stage inputs
        for st in g.stages:
            if st.kind == "decision":
                continue
            src_stream = taps[(st.src, st.name)]
            k = g.buffer_before(st)
            if k is not None:
                lanes, bits, sgn = self.formats[st.src]
                sig = activation_signature(lanes, bits, signed_data=sgn)
                shape = g.stage(st.src).out_shape
                # deep boards (ECP5): the buffer's block-RAM read data into a register first
                cb = ConditionalBuffer(sig, beats_per_sample=beats_of(shape, lanes),
                                       depth=self.buffer_depth, out_reg=g.deep)
                m.submodules[f"cbuf{k}"] = cb
                wiring.connect(m, src_stream, cb.i)
                # the decision through a skid buffer of its own (one bit: the router's done
                # flags and the decision's valid do not reach the buffer's slot enables; Fmax)
                wiring.connect(m, self._skid(m, f"skid_dec{k}", routers[k].buffer, True),
                               cb.decision)
                # and out through a skid buffer: the level's first stage's ready does not run
                # into the buffer's read side (slot, address and beat counters)
                src_stream = self._skid(m, f"skid_cbuf{k}", cb.o)
                events[(f"cbuf{k}", "in")], events[(f"cbuf{k}", "out")] = fire(cb.i), fire(cb.o)
                events[(f"cbuf{k}", "active")] = fire(cb.i) | fire(cb.o)
            wiring.connect(m, src_stream, self.blocks[st.name].i)
            blk = self.blocks[st.name]
            events[(st.name, "in")], events[(st.name, "out")] = fire(blk.i), fire(blk.o)
            active = fire(blk.i) | fire(blk.o)
            if st.kind in ("conv", "linear"):
                events[(st.name, "mac")] = blk.mac_active
                events[(st.name, "wrom_en")] = blk.weight_read_en
                active = active | blk.mac_active
            events[(st.name, "active")] = active
        if self.taps:
            self._count_activity(m, events)
        res = self.results
        if g.exits == 1:  # a no-exit baseline: the final exit's results are the output
            src = routers[0].result
            m.d.comb += [res.valid.eq(src.valid), src.ready.eq(res.ready),
                         res.payload.id.eq(src.payload.id), res.payload.exit.eq(0),
                         res.payload.cls.eq(src.payload.cls),
                         res.payload.confidence.eq(src.payload.confidence)]
            return m
        # merge all exits' results into the result stream
        layout = routers[0].result.payload.shape()
        merge = ExitMerge(g.exits, id_width=self.id_width, cls_width=layout["cls"].width,
                          confidence_width=layout["confidence"].width)
        m.submodules.merge = merge
        for k in range(g.exits):
            src, dst = routers[k].result, merge.i[k]
            m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready),
                         dst.payload.id.eq(src.payload.id), dst.payload.cls.eq(src.payload.cls),
                         dst.payload.confidence.eq(src.payload.confidence)]
        m.d.comb += [res.valid.eq(merge.o.valid), merge.o.ready.eq(res.ready),
                     res.payload.id.eq(merge.o.payload.id),
                     res.payload.exit.eq(merge.o.payload.exit_index),
                     res.payload.cls.eq(merge.o.payload.cls),
                     res.payload.confidence.eq(merge.o.payload.confidence)]
        return m

    def _skid(self, m, name: str, stream_out, always: bool = False):
        """``stream_out`` through a SkidBuffer named ``name`` (its output), or as it is when the
        graph has no skid buffers (and not ``always``: `HwGraph.decision_skids`)."""
        if not (self.graph.skids or always):
            return stream_out
        m.submodules[name] = skid = SkidBuffer(stream_out.signature)
        wiring.connect(m, stream_out, skid.i)
        return skid.o

    def _count_activity(self, m, events) -> None:
        events[("all", "cycles")] = 1
        for unit, counters in activity_units(self.graph).items():
            port = getattr(self.activity, unit)
            for c in counters:
                event = Signal(name=f"act_{unit}_{c}")
                m.d.comb += event.eq(events[(unit, c)])
                reg = getattr(port, c)
                m.d.sync += reg.eq(reg + event)


def emit_verilog(accel: Accelerator, name: str = "exitgate_top", platform=None) -> str:
    """Verilog for the accelerator; ports are named after the interface members. ``platform``
    None (the simulators' and ``RUN/hw/top.v``'s Verilog) or the platform a board build
    elaborates for, whose primitives some blocks use (the MVU's ECP5 MULT18X18Ds)."""
    return verilog.convert(accel, name=name, emit_src=False, platform=platform)
