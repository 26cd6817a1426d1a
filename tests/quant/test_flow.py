"""The train step end to end on digits: artefacts, bit-exactness over the whole test split."""

import json

import numpy as np
import torch

from exitgate.quant.ir import load_ir
from exitgate.quant.reference import exit_logits


def test_train_writes_every_artefact(trained_run):
    out, result = trained_run
    for name in ("config.toml", "model.pt", "ir.json", "weights.npz", "calibration.json",
                 "calibration.png", "train.json"):
        assert (out / name).is_file(), name
    t = json.loads((out / "train.json").read_text())
    assert t == json.loads(json.dumps(result))
    for key in ("float", "quantised", "quantised_final_only"):
        assert 0.5 < t["accuracy"][key] <= 1.0
    for e in t["exits"]:
        assert {"index", "threshold", "rate", "accuracy"} <= set(e)
    assert abs(sum(e["rate"] for e in t["exits"]) - 1) < 1e-9
    assert (out / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_brevitas_and_reference_agree_on_every_test_sample(trained_run, digits):
    out, result = trained_run
    g = result["agreement"]
    assert g["samples"] == len(digits.y_test) >= 300
    assert g["logit_mismatches"] == 0 and g["val_logit_mismatches"] == 0
    # and independently of train.json: reload model.pt and compare again
    from exitgate.quant.config import parse_config
    from exitgate.quant.export import brevitas_int_logits
    from exitgate.quant.model import build_model
    import tomllib
    saved = torch.load(out / "model.pt", weights_only=False)
    cfg = parse_config(tomllib.loads(saved["config"]))
    model = build_model(cfg.model, saved["input_shape"])
    model.load_state_dict(saved["state_dict"])
    ir, weights = load_ir(out)
    x = torch.tensor(digits.x_test, dtype=torch.float32) * 2.0 ** -cfg.model.input_frac_bits
    for b, r in zip(brevitas_int_logits(model, x, ir), exit_logits(ir, weights, digits.x_test)):
        np.testing.assert_array_equal(b, r)


def test_training_is_repeatable_and_ic_only_freezes_backbone(digits, small_config):
    import dataclasses
    from exitgate.quant.train import train_model
    cfg = dataclasses.replace(small_config, train=dataclasses.replace(
        small_config.train, epochs=1, mode="ic-only", head_epochs=1))
    before, _ = train_model(dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, mode="e2e")), digits, progress=False)
    a, _ = train_model(cfg, digits, progress=False)
    b, _ = train_model(cfg, digits, progress=False)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), ka
    # ic-only: phase 2 trains only early heads, so the final head matches a backbone-only run
    backbone_only = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, exit_weights=(0.0, 1.0), mode="e2e"))
    c, _ = train_model(backbone_only, digits, progress=False)
    for (k, va), (_, vc) in zip(a.state_dict().items(), c.state_dict().items()):
        if k.startswith("heads.0"):
            continue
        assert torch.equal(va, vc), k
