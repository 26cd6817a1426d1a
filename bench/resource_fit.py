"""Fit and check the resource model (`exitgate.compiler.resources`) against yosys synthesis.

    .venv/bin/python bench/resource_fit.py            # table: estimate vs synthesis per config
    .venv/bin/python bench/resource_fit.py --fit      # synthesise, refit, rewrite the JSON model
    .venv/bin/python bench/resource_fit.py --fit-kind decision   # refit one kind's constants only
    .venv/bin/python bench/resource_fit.py --fit-feature soft_mul_bits   # refit one coefficient
    .venv/bin/python bench/resource_fit.py --design RUN_DIR   # also whole accelerators of a run

Each configuration in `CONFIGS` is one block (kind + parameters); ``held_out`` ones are not
used by the fit. Synthesis (``synth_ice40 -dsp`` / ``synth_ecp5``, as the board builds run it:
`exitgate.boards.synth.synth_commands`) goes through `exitgate.boards.synth`, two processes at a time; results are cached in
``bench/out/resource_synth.json`` keyed by the configuration. The fit is a non-negative least
squares on *relative* error (each row divided by its synthesised value), per family, of LUT and
FF on the features of `resources.block_features`; DSP and BRAM are structural, not fitted.
``--fit-kind KIND`` refits only that kind's ``const_KIND`` terms (same weighting, the shared
coefficients held), for a change to one block that leaves the others' fit as it is;
``--fit-feature NAME`` refits one LUT feature's coefficient the same way (a feature new to the
model, e.g. ``soft_mul_bits``, the products in logic).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Module, Value
from scipy.optimize import nnls

from exitgate.boards.profiles import BOARDS
from exitgate.boards.synth import synth_commands, synthesise
from exitgate.errors import ExitgateError
from exitgate.compiler import resources as rm

OUT = Path(__file__).with_name("out")
CACHE = OUT / "resource_synth.json"
FAMILIES = ("ice40", "ecp5")
#: the families whose boards use the MVU's deep pipeline (`BoardProfile.deep_mvu`): the deep
#: configurations are synthesised and fitted for these only
DEEP_FAMILIES = tuple(f for f in FAMILIES if any(b.deep_mvu for b in BOARDS.values()
                                                 if b.family == f))


def _families(cfg) -> list[str]:
    """The families a configuration is synthesised and fitted for."""
    return [f for f in FAMILIES if not cfg.get("deep") or f in DEEP_FAMILIES]
LUT_FEATURES = ["mul_bits", "soft_mul_bits", "soft_const_mul_bits", "add_bits", "requant_bits", "rom_bits", "ram_bits", "mux_bits",
                "counter_bits", "cmp_bits", "fork_bits", "bram_port_bits", "arbiter_terms",
                "dist_read_bits"]
FF_FEATURES = ["regs", "bram_port_bits"]


def _c(kind, held_out=False, **p):
    return {"kind": kind, "held_out": held_out, **p}


CONFIGS = [
    # conv: shape, cout, in_bits, weight_bits, in_lanes, pe, simd
    _c("conv", shape=(1, 8, 8), cout=8, in_bits=8, weight_bits=4, in_lanes=1, pe=1, simd=1),
    _c("conv", shape=(1, 8, 8), cout=8, in_bits=8, weight_bits=4, in_lanes=1, pe=2, simd=9),
    _c("conv", shape=(4, 8, 8), cout=8, in_bits=8, weight_bits=4, in_lanes=2, pe=2, simd=4),
    _c("conv", shape=(8, 4, 4), cout=8, in_bits=6, weight_bits=3, in_lanes=1, pe=1, simd=8),
    _c("conv", shape=(2, 6, 6), cout=4, in_bits=8, weight_bits=6, in_lanes=1, pe=4, simd=2),
    _c("conv", shape=(4, 4, 4), cout=16, in_bits=4, weight_bits=4, in_lanes=4, pe=4, simd=4),
    _c("conv", shape=(2, 4, 4), cout=8, in_bits=8, weight_bits=8, in_lanes=1, pe=2, simd=3),
    _c("conv", True, shape=(8, 8, 8), cout=16, in_bits=8, weight_bits=4, in_lanes=4, pe=2,
       simd=8),
    _c("conv", True, shape=(3, 8, 8), cout=6, in_bits=8, weight_bits=4, in_lanes=1, pe=3, simd=3),
    # the digits model's convolutions at the smallest folding (one value a word), and a word of
    # four window beats
    _c("conv", shape=(16, 4, 4), cout=32, in_bits=8, weight_bits=8, in_lanes=1, pe=1, simd=1),
    _c("conv", True, shape=(1, 8, 8), cout=16, in_bits=5, weight_bits=8, in_lanes=1, pe=1,
       simd=1),
    _c("conv", True, shape=(4, 4, 4), cout=8, in_bits=8, weight_bits=4, in_lanes=1, pe=2,
       simd=36),
    # frame conv (SIMD 1, one input lane): the digits model's convolutions at the smallest
    # folding, and others
    _c("conv_frame", shape=(16, 4, 4), cout=32, in_bits=8, weight_bits=8, in_lanes=1, pe=1,
       simd=1),
    _c("conv_frame", shape=(1, 8, 8), cout=16, in_bits=5, weight_bits=8, in_lanes=1, pe=1,
       simd=1),
    _c("conv_frame", shape=(4, 8, 8), cout=8, in_bits=8, weight_bits=4, in_lanes=1, pe=2,
       simd=1),
    _c("conv_frame", shape=(8, 6, 6), cout=16, in_bits=6, weight_bits=3, in_lanes=1, pe=4,
       simd=1),
    _c("conv_frame", True, shape=(2, 8, 6), cout=6, in_bits=8, weight_bits=8, in_lanes=1, pe=3,
       simd=1),
    # the MVU's deep pipeline (ECP5 boards: `HwGraph.deep`)
    _c("conv", shape=(4, 8, 8), cout=8, in_bits=8, weight_bits=4, in_lanes=2, pe=2, simd=4,
       deep=True),
    _c("conv", shape=(1, 8, 8), cout=16, in_bits=5, weight_bits=8, in_lanes=1, pe=8, simd=9,
       deep=True),
    _c("conv_frame", shape=(4, 8, 8), cout=8, in_bits=8, weight_bits=4, in_lanes=1, pe=2,
       simd=1, deep=True),
    _c("linear", shape=(16, 4, 4), cout=32, in_bits=8, weight_bits=4, in_lanes=4, pe=2,
       simd=16, deep=True),
    _c("conv", True, shape=(16, 4, 4), cout=32, in_bits=8, weight_bits=8, in_lanes=1, pe=2,
       simd=24, deep=True),
    _c("linear", True, shape=(8, 4, 4), cout=16, in_bits=8, weight_bits=4, in_lanes=2, pe=2,
       simd=8, deep=True),
    # products in logic (`Fold.soft`: the DSE's choice where a board's DSPs are spent)
    _c("linear", shape=(8, 4, 4), cout=16, in_bits=8, weight_bits=4, in_lanes=2, pe=2, simd=8,
       soft=True),
    _c("conv", shape=(2, 4, 4), cout=8, in_bits=8, weight_bits=8, in_lanes=1, pe=2, simd=3,
       soft=True),
    _c("conv", shape=(1, 8, 8), cout=16, in_bits=5, weight_bits=8, in_lanes=1, pe=8, simd=9,
       deep=True, soft=True),
    _c("conv", shape=(1, 8, 8), cout=16, in_bits=5, weight_bits=8, in_lanes=1, pe=16, simd=9,
       deep=True, soft=True),
    _c("linear", shape=(16, 4, 4), cout=32, in_bits=8, weight_bits=8, in_lanes=4, pe=2,
       simd=16, deep=True, soft=True),
    _c("conv", True, shape=(16, 4, 4), cout=32, in_bits=8, weight_bits=8, in_lanes=1, pe=2,
       simd=24, deep=True, soft=True),
    _c("linear", True, shape=(8, 2, 2), cout=10, in_bits=8, weight_bits=8, in_lanes=1, pe=1,
       simd=4, logits=True, soft=True),
    # linear
    _c("linear", shape=(16, 2, 2), cout=10, in_bits=8, weight_bits=4, in_lanes=1, pe=1, simd=4,
       logits=True),
    _c("linear", shape=(8, 4, 4), cout=16, in_bits=8, weight_bits=4, in_lanes=2, pe=2, simd=8),
    _c("linear", shape=(16, 4, 4), cout=32, in_bits=8, weight_bits=4, in_lanes=4, pe=2,
       simd=16),
    _c("linear", shape=(4, 3, 3), cout=10, in_bits=8, weight_bits=4, in_lanes=2, pe=2, simd=6,
       logits=True),
    _c("linear", shape=(8, 2, 2), cout=10, in_bits=8, weight_bits=8, in_lanes=1, pe=1, simd=4,
       logits=True),
    _c("linear", True, shape=(16, 4, 4), cout=10, in_bits=8, weight_bits=4, in_lanes=4, pe=1,
       simd=16, logits=True),
    _c("linear", True, shape=(8, 2, 2), cout=12, in_bits=8, weight_bits=4, in_lanes=1, pe=3,
       simd=4),
    # pool
    _c("pool", shape=(8, 8, 8), lanes=1, bits=8),
    _c("pool", shape=(16, 8, 8), lanes=4, bits=8),
    _c("pool", shape=(4, 16, 16), lanes=2, bits=6),
    _c("pool", True, shape=(6, 6, 6), lanes=2, bits=8),
    _c("pool", True, shape=(16, 4, 4), lanes=16, bits=8),
    # decision: classes, logit_width, threshold_bits
    _c("decision", classes=10, logit_width=16, threshold_bits=8),
    _c("decision", classes=10, logit_width=20, threshold_bits=8),
    _c("decision", classes=4, logit_width=12, threshold_bits=6),
    _c("decision", True, classes=10, logit_width=18, threshold_bits=6),
    _c("decision", classes=10, logit_width=24, threshold_bits=8, store="single"),
    _c("decision", classes=4, logit_width=12, threshold_bits=6, store="single"),
    _c("decision", True, classes=10, logit_width=18, threshold_bits=6, store="single"),
    # conditional buffer: payload width, beats per sample, depth
    _c("cond_buffer", width=34, beats_per_sample=64, depth=4),
    _c("cond_buffer", width=10, beats_per_sample=16, depth=2),
    _c("cond_buffer", width=14, beats_per_sample=144, depth=4),
    _c("cond_buffer", True, width=66, beats_per_sample=16, depth=4),
    _c("cond_buffer", True, width=10, beats_per_sample=256, depth=4),
    # plumbing
    _c("fork", n=2, width=10),
    _c("fork", n=3, width=34),
    _c("fork", True, n=2, width=66),
    _c("id_fifo", width=8, depth=12),
    _c("id_fifo", width=8, depth=20),
    _c("id_fifo", True, width=6, depth=9),
    _c("merge", n=2, width=21),
    _c("merge", n=3, width=21),
    _c("merge", True, n=4, width=17),
    _c("skid", width=10),
    _c("skid", width=34),
    _c("skid", width=19),
    _c("skid", True, width=66),
]


def _key(cfg) -> str:
    return json.dumps({k: v for k, v in cfg.items() if k != "held_out"}, sort_keys=True)


def _params(cfg) -> dict:
    blk, params = build(cfg)
    blk._MustUse__silence = True
    return params


def build(cfg):
    """(component, estimate_block parameters) of a configuration."""
    from amaranth.lib.fifo import SyncFIFOBuffered
    from exitgate.hw.cond_buffer import ConditionalBuffer
    from exitgate.hw.conv import Conv2dStage
    from exitgate.hw.conv_frame import FrameConv2dStage
    from exitgate.hw.decision import ExitDecision
    from exitgate.hw.linear import LinearStage
    from exitgate.hw.merge import ExitMerge
    from exitgate.hw.plumbing import SkidBuffer, StreamFork
    from exitgate.hw.pool import MaxPool2x2
    from exitgate.hw.stream import activation_signature
    from exitgate.numerics import DecisionSpec
    from amaranth.lib import stream
    rng = np.random.default_rng(0)
    kind = cfg["kind"]
    if kind in ("conv", "conv_frame", "linear"):
        c, h, w = cfg["shape"]
        wb, cout = cfg["weight_bits"], cfg["cout"]
        wmax = (1 << (wb - 1)) - 1
        shape_w = (cout, c * h * w) if kind == "linear" else (cout, c, 3, 3)
        weights = rng.integers(-wmax, wmax + 1, shape_w)
        bias = rng.integers(-500, 500, cout)
        logits = cfg.get("logits", False)
        kw = dict(in_width=cfg["in_bits"], weight_bits=wb, pe=cfg["pe"], simd=cfg["simd"],
                  in_lanes=cfg["in_lanes"], deep=cfg.get("deep", False),
                  soft=cfg.get("soft", False))
        kw.update(shift=None) if logits else kw.update(shift=6, out_bits=8, relu=True,
                                                       out_lanes=1)
        cls = {"conv": Conv2dStage, "conv_frame": FrameConv2dStage, "linear": LinearStage}[kind]
        blk = cls(weights, bias, (c, h, w), **kw)
        params = {k: cfg[k] for k in ("shape", "cout", "in_bits", "weight_bits", "in_lanes",
                                      "pe", "simd")}
        params["shape"] = tuple(params["shape"])
        params.update(acc_width=blk.acc_width, bias_width=rm._bias_width(bias),
                      out_bits=blk.acc_width if logits else 8, out_lanes=1,
                      deep=cfg.get("deep", False), soft=cfg.get("soft", False))
        return blk, params
    if kind == "pool":
        shape = tuple(cfg["shape"])
        return (MaxPool2x2(shape, lanes=cfg["lanes"], width=cfg["bits"]),
                {"shape": shape, "lanes": cfg["lanes"], "bits": cfg["bits"]})
    if kind == "decision":
        spec = DecisionSpec(classes=cfg["classes"], logit_frac_bits=4,
                            threshold_bits=cfg["threshold_bits"])
        store = cfg.get("store", "double")
        return (ExitDecision(spec, logit_width=cfg["logit_width"], id_width=8,
                              threshold=1 << (spec.threshold_bits - 1), store=store),
                {"spec": spec, "logit_width": cfg["logit_width"], "id_width": 8, "store": store})
    if kind == "cond_buffer":
        lanes = (cfg["width"] - 2) // 8 if (cfg["width"] - 2) % 8 == 0 else 1
        bits = (cfg["width"] - 2) // lanes
        sig = activation_signature(lanes, bits)
        return (ConditionalBuffer(sig, beats_per_sample=cfg["beats_per_sample"],
                                  depth=cfg["depth"]),
                {k: cfg[k] for k in ("width", "beats_per_sample", "depth")})
    if kind == "fork":
        return (StreamFork(stream.Signature(cfg["width"]), cfg["n"]), {"n": cfg["n"]})
    if kind == "skid":
        return SkidBuffer(stream.Signature(cfg["width"])), {"width": cfg["width"]}
    if kind == "id_fifo":
        return (SyncFIFOBuffered(width=cfg["width"], depth=cfg["depth"]),
                {"width": cfg["width"], "depth": cfg["depth"]})
    if kind == "merge":
        idw, clsw = 8, 4
        conf = cfg["width"] - idw - clsw
        return (ExitMerge(cfg["n"], id_width=idw, cls_width=clsw, confidence_width=conf),
                {"n": cfg["n"], "width": cfg["width"]})
    raise ValueError(kind)


def _platform(family: str):
    """The platform a board build of ``family`` elaborates for (blocks may depend on it: the
    MVU's ECP5 products are registered MULT18X18Ds): the first board of that family with an
    open flow."""
    return next(b for b in BOARDS.values() if b.family == family and b.open_flow).make_platform()


def _verilog(blk, family: str | None = None) -> str:
    """Verilog of a block as a ``family`` board build elaborates it (SyncFIFOBuffered is not a
    wiring.Component: name its ports). ECP5: in a reset-less ``sync`` domain, as the board
    builds have it (amaranth's LatticePlatform initialises the flip-flops by GSR), so that the
    synthesis (`exitgate.boards.synth.synth_plan`, synchronous resets in logic) sees only the
    design's own resets, as on the board."""
    ports = None
    if not hasattr(blk, "signature"):
        ports = [blk.w_data, blk.w_en, blk.w_rdy, blk.r_data, blk.r_en, blk.r_rdy]
    platform = _platform(family) if family else None
    if family != "ecp5":
        return verilog.convert(blk, name="top", emit_src=False, ports=ports, platform=platform)
    if ports is None:
        ports = [Value.cast(value) for _, _, value in blk.signature.flatten(blk)]
    m = Module()
    m.domains.sync = sync = ClockDomain("sync", reset_less=True)
    m.submodules.blk = blk
    return verilog.convert(m, name="top", emit_src=False, ports=[sync.clk, *ports],
                           platform=platform)


def _options(family: str) -> str:
    """What a cached synthesis result was made with: the family's yosys commands."""
    # ECP5: `synthesise` counts the read registers it moves into block RAMs (bram_outreg)
    return "; ".join(synth_commands(family) + ["absorb_output_registers"] * (family == "ecp5"))


def _synth_job(args):
    key, family, text = args
    options = _options(family)
    try:
        r = synthesise(text, family)
    except ExitgateError as e:   # e.g. yowasp's ABC9 crashing on some ECP5 netlists
        return key, family, {"failed": str(e).strip().splitlines()[-1][-300:],
                             "options": options, "verilog_sha": _digest(text)}
    return key, family, {**{k: r[k] for k in ("lut", "ff", "dsp", "bram")}, "options": options,
                         "verilog_sha": _digest(text)}


def _synthesised(cache: dict, key: str, family: str) -> dict | None:
    """The cached synthesis result, None if yosys failed on it (recorded, not retried)."""
    r = cache[key][family]
    return None if "failed" in r else r


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def synth_all(configs, cache: dict, workers: int = 2) -> dict:
    jobs = []
    for cfg in configs:
        key = _key(cfg)
        texts = {fam: _verilog(build(cfg)[0], fam) for fam in _families(cfg)}
        jobs += _missing(cache, key, texts)
    _synthesise(jobs, cache, workers, "block/family pairs")
    return cache


def _missing(cache, key, texts: dict) -> list:
    """(key, family, verilog) of every family not yet synthesised from that family's Verilog
    with the family's current synth options (entries without options were plain
    synth_<family>). Each family's result records the digest of the Verilog it was synthesised
    from; results from before that was kept per family take the entry's digest, and results
    from before any digest was kept are taken as current (``--refresh KIND`` clears them)."""
    entry = cache.setdefault(key, {})
    jobs = []
    for fam, text in texts.items():
        sha = _digest(text)
        res = entry.get(fam)
        done = (res is not None and res.get("options", "") == _options(fam)
                and res.get("verilog_sha", entry.get("verilog_sha", sha)) == sha)
        if not done:
            jobs.append((key, fam, text))
    return jobs


def _synthesise(jobs, cache, workers, what) -> None:
    """Run the synthesis jobs, storing each result in the cache file as it arrives."""
    if not jobs:
        return
    print(f"synthesising {len(jobs)} {what} ...", file=sys.stderr, flush=True)
    with ProcessPoolExecutor(workers) as pool:
        for key, fam, res in pool.map(_synth_job, jobs):
            cache.setdefault(key, {})[fam] = res
            OUT.mkdir(exist_ok=True)
            CACHE.write_text(json.dumps(cache, indent=1))


def _fit_rows(configs, cache, fam):
    """(kind, features, synthesised) of every non-held-out configuration of ``fam`` that
    synthesised."""
    rows = []
    for cfg in configs:
        if cfg["held_out"] or fam not in _families(cfg):
            continue
        syn = _synthesised(cache, _key(cfg), fam)
        if syn is not None:
            rows.append((cfg["kind"], rm.block_features(cfg["kind"], fam, **_params(cfg)), syn))
    return rows


def fit(configs, cache) -> dict:
    families = {}
    for fam in FAMILIES:
        rows = _fit_rows(configs, cache, fam)
        consts = sorted({f"const_{k}" for k, _, _ in rows})
        coefs = {}
        for target, names in (("lut", LUT_FEATURES), ("ff", FF_FEATURES)):
            names = names + consts
            a = np.array([[x.f.get(n, 0.0) for n in names] for _, x, _ in rows])
            # the features count the registers a build moves into block RAMs; the estimate
            # takes them off after the fit (`estimate_block`)
            y = np.array([s[target] - (2 * x.dist if target == "lut" and fam == "ecp5" else 0)
                          + (x.absorbed if target == "ff" else 0)
                          for _, x, s in rows], dtype=float)
            wgt = 1.0 / np.maximum(np.array([s[target] for _, _, s in rows], float), 1.0)
            sol, _ = nnls(a * wgt[:, None], y * wgt)
            coefs[target] = {n: round(float(v), 5) for n, v in zip(names, sol) if v > 0}
        families[fam] = coefs
    return families


def fit_kind(kind, configs, cache, model) -> dict:
    """The model's coefficients with only ``const_<kind>`` (LUT and FF, per family) refitted on
    that kind's non-held-out configurations; every shared coefficient is kept."""
    name = f"const_{kind}"
    families = json.loads(json.dumps(model["families"]))
    for fam in FAMILIES:
        rows = []
        for cfg in configs:
            syn = _synthesised(cache, _key(cfg), fam)
            if (cfg["kind"] == kind and not cfg["held_out"] and syn is not None
                    and fam in _families(cfg)):
                rows.append((rm.block_features(kind, fam, **_params(cfg)), syn))
        if not rows:
            raise ValueError(f"no fitted configuration of kind {kind!r}")
        for target in ("lut", "ff"):
            coefs = families[fam][target]
            coefs.pop(name, None)
            y = np.array([s[target] for _, s in rows], float)
            rest = np.array([rm._linear(coefs, x.f) + (2 * x.dist if target == "lut"
                                                        and fam == "ecp5" else 0)
                             - (x.absorbed if target == "ff" else 0)
                             for x, _ in rows])
            wgt = 1.0 / np.maximum(y, 1.0) ** 2
            c = max(0.0, float(((y - rest) * wgt).sum() / wgt.sum()))
            if c > 0:
                coefs[name] = round(c, 5)
    return families


def fit_feature(name, configs, cache, model) -> dict:
    """The model's coefficients with only feature ``name``'s LUT coefficient (per family)
    refitted on the non-held-out configurations that have the feature, every other coefficient
    kept (the same relative-error weighting as `fit`): for a feature new to the model."""
    families = json.loads(json.dumps(model["families"]))
    for fam in FAMILIES:
        rows = [(x, syn) for _, x, syn in _fit_rows(configs, cache, fam) if x.f.get(name)]
        if not rows:
            continue
        coefs = families[fam]["lut"]
        coefs.pop(name, None)
        y = np.array([s["lut"] for _, s in rows], float)
        rest = np.array([rm._linear(coefs, x.f) + (2 * x.dist if fam == "ecp5" else 0)
                         for x, _ in rows])
        f = np.array([x.f[name] for x, _ in rows])
        wgt = 1.0 / np.maximum(y, 1.0) ** 2
        c = max(0.0, float(((y - rest) * f * wgt).sum() / (f * f * wgt).sum()))
        if c > 0:
            coefs[name] = round(c, 5)
    return families


def _err(est, ref):
    return 0.0 if est == ref == 0 else 100.0 * (est - ref) / max(ref, 1)


def table(configs, cache, model) -> dict:
    print(f"{'kind':<12} {'set':<5} {'family':<6} {'configuration':<58} "
          f"{'LUT est/syn':>12} {'err%':>6} {'FF est/syn':>11} {'err%':>6} "
          f"{'DSP':>5} {'BRAM':>5}")
    errs, failed = {}, []
    for cfg in configs:
        for fam in _families(cfg):
            params = _params(cfg)
            est = rm.estimate_block(cfg["kind"], fam, model=model, **params)
            syn = _synthesised(cache, _key(cfg), fam)
            desc = ", ".join(f"{k}={v}" for k, v in cfg.items() if k not in ("kind", "held_out"))
            if syn is None:
                print(f"{cfg['kind']:<12} {'-':<5} {fam:<6} {desc[:58]:<58} synthesis failed: "
                      f"{cache[_key(cfg)][fam]['failed'][:60]}")
                failed.append(f"{fam} {cfg['kind']} {desc}")
                continue
            el, ef = _err(est.lut, syn["lut"]), _err(est.ff, syn["ff"])
            part = "held" if cfg["held_out"] else "fit"
            errs.setdefault(f"{fam}/{part}", []).append((abs(el), abs(ef),
                                                         est.dsp == syn["dsp"],
                                                         est.bram == syn["bram"]))
            print(f"{cfg['kind']:<12} {part:<5} {fam:<6} {desc[:58]:<58} "
                  f"{est.lut:>5}/{syn['lut']:<6} {el:>6.1f} {est.ff:>4}/{syn['ff']:<6} {ef:>6.1f} "
                  f"{est.dsp:>2}/{syn['dsp']:<2} {est.bram:>2}/{syn['bram']:<2}")
    summary = {}
    for k, v in sorted(errs.items()):
        a = np.array(v, dtype=float)
        summary[k] = {"n": len(v), "lut_mean_abs_err_pct": round(float(a[:, 0].mean()), 1),
                      "lut_max_abs_err_pct": round(float(a[:, 0].max()), 1),
                      "ff_mean_abs_err_pct": round(float(a[:, 1].mean()), 1),
                      "ff_max_abs_err_pct": round(float(a[:, 1].max()), 1),
                      "dsp_exact": int(a[:, 2].sum()), "bram_exact": int(a[:, 3].sum())}
        print(f"{k:<12} {summary[k]}")
    if failed:
        summary["synthesis_failed"] = failed
        print(f"synthesis failed (left out of the fit and the errors): {failed}")
    return summary


def design_check(run_dir: Path, fold_sets: dict, cache: dict, model: dict,
                 workers: int = 2) -> list:
    """Whole accelerators of a trained run: estimate vs synthesis at each folding."""
    from exitgate.compiler.codegen import Accelerator
    from exitgate.compiler.graph import Fold, lower
    from exitgate.quant.ir import load_ir
    ir, weights = load_ir(run_dir)
    graph = lower(ir, weights)
    rows = []
    jobs = []
    for name, folds in fold_sets.items():
        g = graph.with_folds({k: Fold(*v) for k, v in folds.items()})
        key = f"design:{run_dir.name}:{name}:{json.dumps(folds, sort_keys=True)}"
        # as `_verilog` has a block: on ECP5 in a reset-less sync domain, as the board builds
        texts = {fam: _verilog(Accelerator(g, weights, [100] * (g.exits - 1), buffer_depth=4),
                               fam) for fam in FAMILIES}
        jobs += _missing(cache, key, texts)
        rows.append((name, key, g))
    _synthesise(jobs, cache, workers, "designs")
    out = []
    print(f"\n{'design':<10} {'family':<6} {'folds':<44} {'LUT est/syn err%':>22} "
          f"{'FF est/syn err%':>20} {'DSP':>7} {'BRAM':>7}")
    for name, key, g in rows:
        for fam in FAMILIES:
            est = rm.estimate_design(g, weights, fam, buffer_depth=4)
            syn = _synthesised(cache, key, fam)
            if syn is None:
                print(f"{name:<10} {fam:<6} synthesis failed: {cache[key][fam]['failed'][:60]}")
                continue
            e = {k: round(_err(getattr(est, k), syn[k]), 1) for k in ("lut", "ff", "dsp", "bram")}
            folds = " ".join(f"{s.name}:{s.fold}" for s in g.stages if s.kind in ("conv",
                                                                                   "linear"))
            print(f"{name:<10} {fam:<6} {folds:<44} {est.lut:>6}/{syn['lut']:<6} {e['lut']:>6.1f}"
                  f" {est.ff:>5}/{syn['ff']:<5} {e['ff']:>6.1f} {est.dsp:>3}/{syn['dsp']:<3} "
                  f"{est.bram:>3}/{syn['bram']:<3}")
            out.append({"design": name, "family": fam, "folds": folds, "estimate": est.as_dict(),
                        "synth": syn, "err_pct": e})
    return out


DESIGN_FOLDS = {
    "minimal": {},
    "medium": {"s0": (2, 9), "s2": (1, 8), "s3": (2, 8), "s5": (1, 8)},
    "wide": {"s0": (4, 9), "s2": (2, 8), "s3": (4, 8), "s5": (2, 8)},
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="refit and rewrite resource_model.json")
    ap.add_argument("--fit-kind", choices=rm.KINDS, metavar="KIND",
                    help="refit only this kind's constant terms and rewrite resource_model.json")
    ap.add_argument("--fit-feature", choices=LUT_FEATURES, metavar="FEATURE",
                    help="refit only this LUT feature's coefficient (the rest held) and rewrite "
                    "resource_model.json")
    ap.add_argument("--design", type=Path, help="a trained run directory: check whole designs")
    ap.add_argument("--refresh", choices=rm.KINDS + ("design",), action="append", default=[],
                    metavar="KIND", help="drop this kind's cached synthesis results first "
                    "(repeatable; for results cached before Verilog digests were kept)")
    ap.add_argument("--workers", type=int, default=2, help="synthesis processes (default 2)")
    args = ap.parse_args(argv)
    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    for key in [k for k in cache if any(
            k.startswith("design:") if kind == "design" else f'"kind": "{kind}"' in k
            for kind in args.refresh)]:
        del cache[key]
    cache = synth_all(CONFIGS, cache, args.workers)
    model = rm.load_model() if rm.MODEL_PATH.exists() and not args.fit else None
    if args.fit_kind and model is not None:
        model = {**model, "families": fit_kind(args.fit_kind, CONFIGS, cache, model)}
        rm.MODEL_PATH.write_text(json.dumps(model, indent=1))
        rm._load.cache_clear()
    if args.fit_feature and model is not None:
        model = {**model, "families": fit_feature(args.fit_feature, CONFIGS, cache, model)}
        rm.MODEL_PATH.write_text(json.dumps(model, indent=1))
        rm._load.cache_clear()
    if model is None:
        model = {"how": (
            "bench/resource_fit.py --fit: yosys (yowasp) synth_ice40 -dsp / synth_ecp5 of each "
            "configuration's block (random weights in [-(2**(wb-1)-1), 2**(wb-1)-1], bias in "
            "[-500, 500)); non-negative least squares on relative error of LUT and FF over the "
            "non-held-out configurations, per family; LUT features and FF features from "
            "exitgate.compiler.resources.block_features. DSP and BRAM are structural (not "
            "fitted). xc7 is not fitted: extrapolated from ecp5 (see resources.py)."),
            "lut_definition": {"ice40": "SB_LUT4", "ecp5": "LUT4 + 2*CCU2C + 2*TRELLIS_DPR16X4"},
            "families": fit(CONFIGS, cache), "configs": CONFIGS}
        model["errors"] = {}
        rm.MODEL_PATH.write_text(json.dumps(model, indent=1))
        rm._load.cache_clear()
    model["errors"] = table(CONFIGS, cache, model)
    if args.design:
        model["design_check"] = design_check(args.design, DESIGN_FOLDS, cache, model,
                                             args.workers)
    if args.fit or args.fit_kind or args.fit_feature or args.design:
        rm.MODEL_PATH.write_text(json.dumps(model, indent=1))


if __name__ == "__main__":
    main()
