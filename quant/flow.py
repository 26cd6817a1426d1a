"""`exitgate train`: QAT + float baseline, IR export, agreement check, calibration, train.json."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import ExitgateError
from ..runs import atomic_write, prepare_step, write_json
from .calibrate import DEFAULT_GRID, calibrate, plot_calibration, summarise
from .config import Config, dump_config
from .datasets import Dataset
from .export import brevitas_int_logits, export_ir
from .ir import load_ir
from .reference import exit_logits

__all__ = ["run_train", "float_cascade_accuracy", "format_train_table"]


def float_cascade_accuracy(logits: list[np.ndarray], labels, thresholds) -> float:
    """Accuracy of the float model with the float softmax test at the given thresholds."""
    n = len(labels)
    pending = np.ones(n, dtype=bool)
    cls = np.zeros(n, dtype=np.int64)
    for k, z in enumerate(logits):
        p = np.exp(z - z.max(1, keepdims=True))
        conf = 1.0 / p.sum(1)
        leave = pending & ((conf >= thresholds[k]) if k < len(logits) - 1 else True)
        cls[leave] = z.argmax(1)[leave]
        pending &= ~leave
    return float((cls == labels).mean())


def _logit_mismatches(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """Per sample: does any logit of any exit differ?"""
    return np.any([(x != y).any(1) for x, y in zip(a, b)], axis=0)


def run_train(cfg: Config, ds: Dataset, out: Path, *, force: bool = False, mode: str | None = None,
              progress: bool = True, float_baseline: bool = True, log=print) -> dict:
    """Train, export, verify and calibrate into RUN directory `out`; returns train.json's dict."""
    from .train import float_logits, to_input, train_model  # torch-only imports

    out = Path(out)
    removed = prepare_step(out, "train", force)
    if removed:
        log(f"--force: removed earlier results {', '.join(removed)}")
    if mode:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, mode=mode))
    if ds.max_pixel >= 2 ** cfg.model.input_bits:
        raise ExitgateError(f"dataset {ds.name} has pixels up to {ds.max_pixel}, which do not fit "
                            f"model.input_bits = {cfg.model.input_bits}; use input_bits >= "
                            f"{int(ds.max_pixel).bit_length()}")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    atomic_write(out / "config.toml", dump_config(cfg))
    t0 = time.perf_counter()
    model, info = train_model(cfg, ds, quantise=True, progress=progress)
    secs = {"train_qat": info["seconds"]}
    x_test, x_val = to_input(cfg, ds.x_test), to_input(cfg, ds.x_val)
    t1 = time.perf_counter()
    ir = export_ir(model, x_test[:2], out, meta={"dataset": ds.name, "model": cfg.model.name,
                                                 "input_frac_bits": cfg.model.input_frac_bits})
    ir, weights = load_ir(out)  # what later steps will read
    torch.save({"state_dict": model.state_dict(), "config": dump_config(cfg),
                "input_shape": list(ds.input_shape)}, out / "model.pt.tmp")
    (out / "model.pt.tmp").replace(out / "model.pt")
    ref_test = exit_logits(ir, weights, ds.x_test)
    ref_val = exit_logits(ir, weights, ds.x_val)
    brev = brevitas_int_logits(model, x_test, ir)
    brev_val = brevitas_int_logits(model, x_val, ir)
    mismatch = _logit_mismatches(brev, ref_test)
    mismatch_val = _logit_mismatches(brev_val, ref_val)
    secs["export_verify"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    calib = calibrate(ir, ref_val, ds.y_val, cfg.calibration.max_drop_pp,
                      cfg.calibration.thresholds or DEFAULT_GRID, cfg.calibration.margin_samples)
    calib["split"] = "val"
    thresholds = calib["thresholds"] + [1.0]
    test = summarise(ir, ref_test, ds.y_test, thresholds)
    calib["test"] = test
    write_json(out / "calibration.json", calib)
    plot_calibration(calib, out / "calibration.png",
                     f"{cfg.model.name} on {ds.name}: calibration split (val, {len(ds.y_val)})")
    secs["calibrate"] = time.perf_counter() - t2

    result = {
        "dataset": ds.name,
        "model": cfg.model.name,
        "mode": cfg.train.mode,
        "splits": {"train": len(ds.y_train), "val": len(ds.y_val), "test": len(ds.y_test)},
        "accuracy": {
            "quantised": test["accuracy"],
            "quantised_final_only": float((ref_test[-1].argmax(1) == ds.y_test).mean()),
            "quantised_per_exit": [float((z.argmax(1) == ds.y_test).mean()) for z in ref_test],
        },
        "agreement": {"samples": int(len(x_test)), "logit_mismatches": int(mismatch.sum()),
                      "val_samples": int(len(x_val)),
                      "val_logit_mismatches": int(mismatch_val.sum()),
                      "compared": "Brevitas model vs integer reference, every logit of every exit"},
        "exits": [{**e, "threshold": thresholds[e["index"]]} for e in test["exits"]],
        "expected_macs": test["expected_macs"],
        "macs_fraction": test["macs_fraction"],
        "float_disagreement": calib["float_disagreement"],
        "float32_exact": bool(ir.meta.get("float32_exact", False)),
        "seconds": secs,
    }
    if float_baseline:
        t3 = time.perf_counter()
        fmodel, finfo = train_model(cfg, ds, quantise=False, progress=progress)
        flog = float_logits(fmodel, x_test)
        result["accuracy"]["float"] = float_cascade_accuracy(flog, ds.y_test, thresholds)
        result["accuracy"]["float_final_only"] = float((flog[-1].argmax(1) == ds.y_test).mean())
        secs["train_float"] = time.perf_counter() - t3
    secs["total"] = time.perf_counter() - t0
    write_json(out / "train.json", result)  # written last: the step's completion marker
    return result


def format_train_table(r: dict) -> str:
    lines = [f"{'exit':>4} {'threshold':>9} {'rate %':>7} {'acc %':>7} {'MACs':>8}"]
    for e in r["exits"]:
        th = "final" if e["index"] == len(r["exits"]) - 1 else f"{e['threshold']:.3f}"
        acc = "-" if e["accuracy"] is None else f"{100 * e['accuracy']:.2f}"
        lines.append(f"{e['index']:>4} {th:>9} {100 * e['rate']:>7.2f} {acc:>7} {e['macs']:>8}")
    a = r["accuracy"]
    lines.append(f"expected MACs/sample {r['expected_macs']:.0f} "
                 f"({100 * r['macs_fraction']:.1f}% of the final exit's)")
    if "float" in a:
        lines.append(f"accuracy (test, {r['splits']['test']}): float {100 * a['float']:.2f}%  "
                     f"quantised {100 * a['quantised']:.2f}%  "
                     f"quantised final-only {100 * a['quantised_final_only']:.2f}%")
    else:
        lines.append(f"accuracy (test): quantised {100 * a['quantised']:.2f}%  final-only "
                     f"{100 * a['quantised_final_only']:.2f}%")
    g = r["agreement"]
    lines.append(f"Brevitas vs integer reference: {g['samples'] - g['logit_mismatches']}/"
                 f"{g['samples']} test samples bit-exact (val: "
                 f"{g['val_samples'] - g['val_logit_mismatches']}/{g['val_samples']})")
    return "\n".join(lines)
