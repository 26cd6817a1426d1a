"""Performance model of a folded accelerator: cycles per stage, throughput with exits, latency.

Every stage's cycles per sample come from its hw block (`cycles_per_sample` /
`initiation_interval`), so the model and the hardware share one formula. A level's *server
time* T_k is its slowest stage. With exit rates, level k sees only the fraction f_k of samples
that continued past exits 0..k-1, so the analytic throughput bound is

    samples/cycle = 1 / max_k (f_k * T_k)

`stream_throughput` refines it for a concrete exit sequence and conditional-buffer depth D: a
sample-by-sample recursion where level k starts sample i no earlier than its previous sample
plus T_k, no earlier than it finished level k-1, and only when buffer k has a free slot (a slot
is held from the sample's entry until its exit decision, or, if it continues, until level k+1
has read it out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hw.cond_buffer import cond_buffer_latency
from ..hw.plumbing import SKID_LATENCY
from ..hw.stream import beats_of
from .codegen import build_blocks, decision_unit, logit_ram
from .graph import HwGraph

__all__ = ["StageTiming", "stage_timings", "level_times", "analytic_throughput",
           "stream_schedule", "stream_throughput", "steady_rate", "steady_throughput",
           "level_holds", "path_latency", "level_fractions"]


@dataclass(frozen=True)
class StageTiming:
    name: str
    kind: str
    level: int
    cycles: int       # per sample, steady state
    latency: int      # the block's own latency figure (see each block)


#: `_decision_timing`'s results by (decision spec, logit width, producer pace)
_DECISION_TIMINGS: dict = {}


def _decision_timing(stage, logits_blk, ram: bool = False) -> tuple[int, int]:
    """(initiation interval, latency) of a decision stage's unit fed by ``logits_blk`` (``ram``:
    `exitgate.compiler.codegen.logit_ram` of the design). They depend only on the exit's
    decision spec, the logit width, the producer's pace and ``ram``, so they are memoised on
    those (the folding search asks thousands of times)."""
    key = (repr(stage.params["decision"]), logits_blk.acc_width, logits_blk.cycles_per_sample,
           ram)
    if key not in _DECISION_TIMINGS:
        d = decision_unit(stage, logits_blk, id_width=8, threshold=1, mode=0, ram=ram)
        d._MustUse__silence = True
        _DECISION_TIMINGS[key] = d.initiation_interval, d.latency
    return _DECISION_TIMINGS[key]


def stage_timings(graph: HwGraph, weights: dict) -> list[StageTiming]:
    """Cycles per sample and latency of every stage, plus the conditional buffers' output rate
    (one beat per cycle: a level-(k+1) input costs its beat count)."""
    blocks, fmt = build_blocks(graph, weights, analysis=True)
    out = []
    for st in graph.stages:
        if st.kind == "decision":
            ii, lat = _decision_timing(st, blocks[st.src], _logit_ram(graph, blocks))
            out.append(StageTiming(st.name, st.kind, st.level, ii, lat))
            continue
        blk = blocks[st.name]
        out.append(StageTiming(st.name, st.kind, st.level, int(np.ceil(blk.cycles_per_sample)),
                               int(blk.latency)))
        k = graph.buffer_before(st)
        if k is not None:
            lanes = fmt[st.src][0]
            beats = beats_of(graph.stage(st.src).out_shape, lanes)
            out.append(StageTiming(f"cbuf{k}", "cbuf", st.level, beats + 1,
                                   cond_buffer_latency(out_reg=graph.deep)))
    return out


def level_times(timings: list[StageTiming], levels: int) -> list[int]:
    """Server time T_k of each level: its slowest stage."""
    return [max([t.cycles for t in timings if t.level == k] or [1]) for k in range(levels)]


def level_fractions(exit_seq, levels: int) -> list[float]:
    """Fraction of samples reaching each level, from the exit index of every sample."""
    seq = np.asarray(exit_seq)
    return [float((seq >= k).mean()) for k in range(levels)]


def analytic_throughput(times: list[int], fractions: list[float]) -> float:
    return 1.0 / max(f * t for f, t in zip(fractions, times))


def stream_schedule(times: list[int], exits, depth: int, holds: list[int] | None = None
                    ) -> np.ndarray:
    """Cycle at which each sample of a concrete exit sequence (exit index per sample) leaves its
    exit's level, with buffer depth D (the recursion in the module docstring). holds[k]: cycles
    from level k starting a sample until it has read the sample's last beat out of the buffer
    before it (default: its whole server time T_k; see `level_holds`)."""
    holds = list(times) if holds is None else list(holds)
    levels = len(times)
    n = len(exits)
    start = np.zeros((levels, n))
    done = np.zeros((levels, n))
    free = [[] for _ in range(levels)]   # slot-free times of samples that entered buffer k
    last = [-np.inf] * levels
    for i, e in enumerate(exits):
        for k in range(int(e) + 1):
            t = 0.0 if k == 0 else done[k - 1, i]
            t = max(t, last[k] + times[k])
            if k < levels - 1 and len(free[k]) >= depth:
                t = max(t, free[k][-depth])
            start[k, i] = t
            done[k, i] = t + times[k]
            last[k] = t
        for k in range(min(int(e) + 1, levels - 1)):
            t = done[k, i] if k == e else start[k + 1, i] + holds[k + 1]
            # slots are a ring, freed in order: a slot is reusable once all earlier ones are
            free[k].append(max(t, free[k][-1]) if free[k] else t)
    return np.array([done[int(e), i] for i, e in enumerate(exits)])


def stream_throughput(times: list[int], exits, depth: int, holds: list[int] | None = None
                      ) -> float:
    """Samples per cycle for a concrete exit sequence (exit index per sample), buffer depth D:
    all samples over the cycles until the last one leaves."""
    return len(exits) / float(stream_schedule(times, exits, depth, holds).max())


def steady_rate(done) -> tuple[float, list[int]]:
    """Steady-state samples per cycle from completion cycles: the samples completed over the
    middle half of the run (by completion order) divided by the cycles between them, so that
    pipeline fill and drain do not count. The definition `exitgate.sim` measures with; returns
    the rate and the [lo, hi] completion ranks of the window."""
    done = np.sort(np.asarray(done, dtype=float))
    n = len(done)
    if n == 0:
        raise ValueError("no completions")
    lo, hi = n // 4, n - 1 - n // 4
    if hi > lo and done[hi] > done[lo]:
        return (hi - lo) / float(done[hi] - done[lo]), [lo, hi]
    return n / float(done[-1] + 1), [0, n - 1]


def steady_throughput(times: list[int], exits, depth: int, holds: list[int] | None = None
                      ) -> float:
    """`steady_rate` of the modelled schedule: what the model predicts `exitgate sim` measures as
    ``throughput.samples_per_cycle`` for the same exit sequence."""
    return steady_rate(stream_schedule(times, exits, depth, holds))[0]


def level_holds(graph: HwGraph, weights: dict, times: list[int]) -> list[int]:
    """Per level: how long after starting a sample its first stage has accepted the sample's
    last input beat (its block's ``sample_edges``), i.e. when the conditional buffer in front of
    it frees the sample's slot; never more than the level's server time. Level 0 reads no
    buffer."""
    blocks, _ = build_blocks(graph, weights, analysis=True)
    holds = list(times)
    for st in graph.stages:
        k = graph.buffer_before(st)
        if k is not None and st.kind in ("conv", "pool", "linear"):
            holds[st.level] = min(times[st.level], blocks[st.name].sample_edges[0])
    return holds


def path_latency(graph: HwGraph, weights: dict, exit_index: int) -> int:
    """Unloaded latency (first pixel in to result out, one sample in an idle pipeline) to an
    exit. Per stage on the path: its input ends no earlier than its source's output ends, nor
    before it can have accepted the whole sample; its output ends `tail` cycles after its
    input; a conditional buffer releases the sample when the previous exit has decided."""
    blocks, _ = build_blocks(graph, weights, analysis=True)
    d = next(s for s in graph.stages if s.kind == "decision" and s.exit == exit_index)
    path, name = [], d.src
    while name is not None:
        path.append(graph.stage(name))
        name = graph.stage(name).src
    path.reverse()
    pixels = int(np.prod(graph.input_shape))
    first, last = 0, pixels - 1          # of the stream feeding the next stage
    decided = {}
    skid = SKID_LATENCY if graph.skids else 0    # after forks, conditional buffers, taggers

    def fork_skid(st):      # and after each output of a fork (a source with several consumers)
        return SKID_LATENCY if len(graph.consumers(st.src)) > 1 and graph.fork_skids(st.src) \
            else 0

    for st in path:
        first, last = first + fork_skid(st), last + fork_skid(st)
        k = graph.buffer_before(st)
        if k is not None:
            if k not in decided:
                decided[k] = path_latency(graph, weights, k)
            # cut-through once the decision is known (deep boards: with the read-data
            # register), and the skid buffer after the buffer
            # (the decision reaches the buffer through a skid buffer of its own: + 1)
            cbuf = cond_buffer_latency(out_reg=graph.deep)
            last = max(last, decided[k] + SKID_LATENCY) + cbuf + skid
            first = max(first, decided[k] + SKID_LATENCY) + cbuf + skid
        blk = blocks[st.name]
        in_cycles, tail = blk.sample_edges
        last = max(last, first + in_cycles)
        after = SKID_LATENCY if graph.skid_after(st) else 0     # its skid buffer, if any
        first = first + int(blk.latency) + after
        last = last + tail + after
    # and the decision unit, with the skid buffers before (after the id tagger) and after it
    # (the one after it also where only the decision units have them: `HwGraph.decision_skids`)
    dskid = SKID_LATENCY if graph.skids or graph.decision_skids else 0
    return int(last + fork_skid(d) + skid
               + _decision_timing(d, blocks[d.src], _logit_ram(graph, blocks))[1] + dskid)


def _logit_ram(graph: HwGraph, blocks) -> bool:
    """`exitgate.compiler.codegen.logit_ram` of ``graph`` (its decision units' logit widths from
    their producers' ``blocks``)."""
    return logit_ram(graph, [blocks[s.src].acc_width for s in graph.stages
                             if s.kind == "decision"])
